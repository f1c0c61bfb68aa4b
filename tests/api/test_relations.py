"""Relations to the seed and publication types, end to end: a built index over invented papers
(a seed review, a paper it cites, papers citing it, a similar article), asked through the
engine, the CLI and the HTTP API with relation and publication type filters; the citations
carry both. The widget's side is in ``test_widget_browser.py``."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from carqa.api.app import create_app
from carqa.index.corpus.pipeline import build
from carqa.qa.types import EVIDENCE_KINDS, Filters, evidence_label
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from carqa.cli import app
from carqa.settings import Settings

REPO = Path(__file__).resolve().parents[2]
NEIGHBOURS = REPO / "tests" / "fixtures" / "neighbour_papers.jsonl"
QUESTION = "Why does relapse happen after engineered killer cells?"
RELATION_OF = {
    "91000001": "seed",
    "91000002": "cited",
    "91000003": "citing",
    "91000004": "similar",
    "91000005": "citing",
}


@pytest.fixture(scope="module")
def neighbour_index(tmp_path_factory: pytest.TempPathFactory) -> Path:
    index_dir = tmp_path_factory.mktemp("neighbours")
    build(Settings.load(index_dir=index_dir), sources=[NEIGHBOURS])
    return index_dir


@pytest.fixture(scope="module")
def engine(neighbour_index: Path) -> Any:
    from carqa.qa.engine import Engine

    return Engine.open(Settings(index_dir=neighbour_index))


@pytest.fixture(scope="module")
def api(
    engine: Any, neighbour_index: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[TestClient]:
    from carqa.api.services import open_chat

    settings = Settings(index_dir=neighbour_index)
    chat = open_chat(engine, Settings(index_dir=tmp_path_factory.mktemp("sessions")))
    with TestClient(create_app(settings, engine=engine, chat=chat)) as client:
        yield client


def _cited(body: dict[str, Any]) -> set[str]:
    return {citation["pmid"] for citation in body["citations"]}


def test_citations_carry_relation_and_publication_types(api: TestClient) -> None:
    body = api.post("/api/query", json={"question": QUESTION}).json()
    assert not body["abstained"], body
    assert len({c["relation"] for c in body["citations"]}) > 1
    for citation in body["citations"]:
        assert citation["relation"] == RELATION_OF[citation["pmid"]]
        paper = api.get(f"/api/papers/{citation['pmid']}").json()
        assert citation["publication_types"] == paper["publication_types"]
        assert paper["relation"] == citation["relation"]


def test_stats_count_papers_per_relation(api: TestClient) -> None:
    relations = api.get("/api/stats").json()["relations"]
    assert relations == {"seed": 1, "cited": 1, "citing": 2, "similar": 1}


def test_the_langchain_retriever_filters_and_tells_the_relation(engine: Any) -> None:
    from carqa.qa.retriever import CarqaRetriever

    retriever = CarqaRetriever(engine=engine, k=5)
    docs = retriever.invoke(QUESTION, filters={"publication_types": ["Review", "Case Reports"]})
    assert {doc.metadata["pmid"] for doc in docs} == {"91000001", "91000005"}
    assert {doc.metadata["relation"] for doc in docs} == {"seed", "citing"}


def test_api_relation_filter(api: TestClient) -> None:
    body = api.post(
        "/api/query", json={"question": QUESTION, "filters": {"relations": ["citing"]}}
    ).json()
    assert body["citations"] and _cited(body) <= {"91000003", "91000005"}
    assert {c["relation"] for c in body["citations"]} == {"citing"}


def test_api_publication_type_filter(api: TestClient) -> None:
    body = api.post(
        "/api/query",
        json={
            "question": QUESTION,
            "filters": {"publication_types": ["randomized controlled trial"]},
        },
    ).json()
    assert _cited(body) == {"91000004"}


def test_chat_stream_filters_and_carries_relations(api: TestClient) -> None:
    response = api.post(
        "/api/chat",
        json={"message": QUESTION, "filters": {"relations": ["similar", "cited"]}},
    )
    body = response.json()
    assert body["citations"] and _cited(body) <= {"91000002", "91000004"}
    assert all(c["relation"] in ("similar", "cited") for c in body["citations"])


def test_api_refuses_an_unknown_relation(api: TestClient) -> None:
    response = api.post(
        "/api/query", json={"question": QUESTION, "filters": {"relations": ["cites"]}}
    )
    assert response.status_code == 422
    assert "citing" in response.text  # the allowed values are named


def test_cli_relation_and_type_filters(neighbour_index: Path) -> None:
    runner = CliRunner()
    base = ["ask", QUESTION, "--json", "--index-dir", str(neighbour_index)]
    result = runner.invoke(app, [*base, "--relation", "citing"])
    assert result.exit_code == 0, result.output
    body = json.loads(result.output)
    assert body["citations"] and _cited(body) <= {"91000003", "91000005"}
    assert body["citations"][0]["relation"] == "citing"

    result = runner.invoke(app, [*base, "--type", "Case Reports"])
    assert _cited(json.loads(result.output)) == {"91000005"}

    result = runner.invoke(app, [*base, "--relation", "cites"])
    assert result.exit_code == 2
    assert "Unknown relation" in result.output and "Traceback" not in result.output

    people = runner.invoke(
        app,
        [
            "ask",
            QUESTION,
            "--index-dir",
            str(neighbour_index),
            "--type",
            "Clinical Trial, Phase II",
        ],
    )
    assert "phase II trial · cites the review" in people.output


def test_filters_check_their_values() -> None:
    assert Filters(relations=["Citing "]).relations == ["citing"]
    assert not Filters(publication_types=[]).is_empty()
    with pytest.raises(Exception, match="relations must be a list"):
        Filters(relations="citing")  # type: ignore[arg-type]


def test_evidence_label() -> None:
    kinds = ["Journal Article", "Clinical Trial", "Clinical Trial, Phase II"]
    assert evidence_label(kinds, "citing", 2021) == "phase II trial · cites the review · 2021"
    assert evidence_label([], "file", None) == ""
    assert evidence_label(["Review"], "seed", 2019) == "review · the review · 2019"


def test_the_widget_names_evidence_like_the_server() -> None:
    """The widget keeps its own copy of EVIDENCE_KINDS: they must not drift apart."""
    script = (REPO / "api" / "static" / "widget.js").read_text()
    table = re.search(r"var EVIDENCE_KINDS = \[(.*?)\];", script, re.S)
    assert table is not None
    pairs = re.findall(r'\["([^"]+)", "([^"]+)"\]', table.group(1))
    assert tuple(pairs) == EVIDENCE_KINDS
