"""``carqa.api.schemas`` on its own: what a request body may hold, checked by the models
themselves (the routes only see what passes here)."""

from __future__ import annotations

from typing import Any

import pytest
from carqa.api.schemas import (
    MAX_K,
    ChatRequest,
    FiltersModel,
    PaperResponse,
    QueryRequest,
    StatsResponse,
)
from pydantic import ValidationError


def test_a_question_with_defaults() -> None:
    request = QueryRequest.model_validate({"question": "Why do patients relapse?"})
    assert (request.k, request.filters) == (5, None)


@pytest.mark.parametrize(
    "body",
    [
        {"question": ""},
        {"question": "   \u200b\u2060 "},  # only whitespace and invisible characters
        {"question": "ok\ud800"},  # a lone surrogate, which JSON allows
        {"question": "ok", "k": 0},
        {"question": "ok", "k": MAX_K + 1},
        {"question": "ok", "k": True},  # not 1
        {"question": "ok", "k": "5"},  # not 5
        {"question": "ok", "filter": {}},  # a typo of "filters" is an error, not ignored
        {},
    ],
)
def test_questions_that_do_not_fit_are_refused(body: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        QueryRequest.model_validate(body)


def test_k_may_be_a_whole_float_as_json_schema_allows() -> None:
    assert QueryRequest.model_validate({"question": "ok", "k": 5.0}).k == 5


def test_filters_accept_what_the_answering_layer_filters_by() -> None:
    filters = FiltersModel.model_validate(
        {
            "year_from": 2015,
            "year_to": 2015,
            "pmids": ["31844332"],
            "exclude_pmids": ["1"],
            "cited_only": True,
            "include_seed": False,
        }
    )
    assert (filters.year_from, filters.pmids, filters.include_seed) == (2015, ["31844332"], False)


@pytest.mark.parametrize(
    ("filters", "message"),
    [
        ({"year_from": 2020, "year_to": 2019}, r"year_from \(2020\) is after year_to \(2019\)"),
        ({"year_from": 1700}, "greater than or equal to 1800"),
        ({"pmids": ["PMID123"]}, "String should match pattern"),
        ({"pmids": ["1"] * 1001}, "at most 1000 items"),
        ({"cited_only": "yes"}, "valid boolean"),
        ({"years": [2019]}, "Extra inputs are not permitted"),
    ],
)
def test_filters_that_do_not_fit_are_refused(filters: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        FiltersModel.model_validate(filters)


def test_a_chat_turn_takes_a_session_id_of_safe_characters_only() -> None:
    turn = ChatRequest.model_validate({"message": "And in adults?", "session_id": "a-B_9"})
    assert (turn.session_id, turn.stream) == ("a-B_9", False)
    for session_id in ("", "../x", "a" * 129, "a b"):
        with pytest.raises(ValidationError):
            ChatRequest.model_validate({"message": "And in adults?", "session_id": session_id})


def test_responses_pass_through_keys_the_answering_layer_adds() -> None:
    stats = StatsResponse.model_validate({"papers": 3, "query_encoder": "onnx-int8"})
    assert stats.model_dump()["query_encoder"] == "onnx-int8"
    paper = PaperResponse.model_validate(
        {"pmid": "1", "url": "https://pubmed.ncbi.nlm.nih.gov/1/", "has_abstract": True}
    )
    assert paper.model_dump()["has_abstract"] is True
