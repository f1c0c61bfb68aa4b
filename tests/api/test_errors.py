"""Every error is JSON ``{"error": {"code", "message"}}`` with the right status; bad input is
never a 500."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.api.assertions import JSON, assert_error
from tests.api.conftest import MakeClient


@pytest.mark.parametrize(
    "body",
    [
        {"question": ""},
        {"question": "   \n\t "},
        {},
        {"question": None},
        {"question": 42},
        {"question": ["cd19"]},
        {"question": {"text": "cd19"}},
        {"question": "cd19", "k": 0},
        {"question": "cd19", "k": 10_000},
        {"question": "cd19", "k": "five"},
        {"question": "cd19", "k": 2.5},
        # The document says integer: pydantic's lax int took true as 1 and "5" as 5.
        {"question": "cd19", "k": True},
        {"question": "cd19", "k": "5"},
        {"question": "cd19", "filters": {"year_from": "2020"}},
        {"question": "cd19", "filters": {"year_to": True}},
        {"question": "cd19", "filters": {"year_from": "soon"}},
        {"question": "cd19", "filters": {"pmids": ["not-a-pmid"]}},
        {"question": "cd19", "filters": {"exclude_pmids": ["not-a-pmid"]}},
        {"question": "cd19", "filters": {"exclude_pmids": ["1"] * 1001}},
        {"question": "cd19", "filters": {"unknown": 1}},
        {"question": "cd19", "filters": []},
        {"question": "cd19", "typo": True},
        [],
        "cd19",
        None,
        12,
    ],
)
def test_invalid_query_bodies_are_422(client: TestClient, body: Any) -> None:
    response = client.post("/api/query", content=json.dumps(body), headers=JSON)
    assert_error(response, 422, "invalid_request")


def test_a_whole_number_written_as_a_float_is_an_integer(client: TestClient) -> None:
    """JSON Schema counts 5.0 as an integer, so a client (or a fuzzer) may send it."""
    body = {"question": "cd19", "k": 2.0, "filters": {"year_from": 2015.0}}
    response = client.post("/api/query", content=json.dumps(body), headers=JSON)
    assert response.status_code == 200, response.text


@pytest.mark.parametrize(
    "raw",
    [
        b"{garbage",
        b'{"question": "cd19"',
        b"\xff\xfe\x00not utf-8",
        b"\xff",
        b'{"question": "caf\xe9"}',
        b'{"question": "\\ud800"}',
        b"",
        b"null",
        b'{"question": "cd19"}{"question": "x"}',
    ],
)
def test_malformed_json_is_422(client: TestClient, raw: bytes) -> None:
    response = client.post("/api/query", content=raw, headers=JSON)
    assert_error(response, 422)


@pytest.mark.parametrize(
    ("content_type", "body"),
    [
        ("text/plain", b"question=cd19"),
        ("application/x-www-form-urlencoded", b'{"question": "cd19"}'),  # plain `curl -d`
    ],
)
def test_non_json_content_type_is_422_and_names_the_header(
    client: TestClient, content_type: str, body: bytes
) -> None:
    response = client.post("/api/query", content=body, headers={"content-type": content_type})
    error = assert_error(response, 422, "invalid_request")
    assert "Content-Type: application/json" in error["message"]
    assert "Content-Type" in error["hint"]


def test_json_nested_too_deeply_is_422_not_called_bad_utf8(client: TestClient) -> None:
    raw = b'{"question": "cd19", "filters": ' + b"[" * 5000 + b"]" * 5000 + b"}"
    error = assert_error(client.post("/api/query", content=raw, headers=JSON), 422)
    assert "nested too deeply" in error["message"]


@pytest.mark.parametrize("path", ["/api/query", "/api/chat"])
def test_reversed_years_are_422_naming_both(client: TestClient, path: str) -> None:
    field = "question" if path == "/api/query" else "message"
    filters = {"year_from": 2020, "year_to": 2010}
    error = assert_error(
        client.post(path, json={field: "cd19", "filters": filters}), 422, "invalid_request"
    )
    assert error["message"] == "filters: Value error, year_from (2020) is after year_to (2010)"
    assert error["details"][0]["loc"] == ["body", "filters"]


def test_one_year_range_is_accepted(client: TestClient) -> None:
    filters = {"year_from": 2019, "year_to": 2019}
    assert (
        client.post("/api/query", json={"question": "cd19", "filters": filters}).status_code == 200
    )


def test_over_long_question_is_422_and_limit_is_configurable(make_client: MakeClient) -> None:
    client = make_client(max_question_chars=50)
    assert client.post("/api/query", json={"question": "cd19 " * 10}).status_code == 200
    error = assert_error(
        client.post("/api/query", json={"question": "cd19 " * 10 + "x"}), 422, "question_too_long"
    )
    assert "50" in error["message"]
    assert_error(client.post("/api/chat", json={"message": "x" * 51}), 422, "question_too_long")


def test_default_question_limit_is_1000(client: TestClient) -> None:
    assert client.post("/api/query", json={"question": "y" * 1000}).status_code == 200
    assert_error(client.post("/api/query", json={"question": "y" * 1001}), 422)


@pytest.mark.parametrize("pmid", ["abc", "1" * 11, "12a", "-1", "%00", "..%2F..%2Fetc"])
def test_bad_pmid_is_422_or_404_never_500(client: TestClient, pmid: str) -> None:
    response = client.get(f"/api/papers/{pmid}")
    assert response.status_code in (404, 422)
    assert "error" in response.json()


def test_unknown_route_and_wrong_method(client: TestClient) -> None:
    assert_error(client.get("/api/nothing"), 404, "not_found")
    assert_error(client.get("/api/query"), 405, "method_not_allowed")


@pytest.mark.parametrize(
    "body",
    [
        {"message": ""},
        {"message": "hi", "session_id": "../../etc/passwd"},
        {"message": "hi", "session_id": ""},
        {"message": "hi", "session_id": 7},
        {"message": "hi", "stream": "maybe"},
        {"session_id": "abc"},
    ],
)
def test_invalid_chat_bodies_are_422(client: TestClient, body: Any) -> None:
    assert_error(client.post("/api/chat", json=body), 422, "invalid_request")


def test_invalid_chat_body_is_json_422_even_when_streaming_is_asked(client: TestClient) -> None:
    response = client.post(
        "/api/chat", json={"message": " "}, headers={"accept": "text/event-stream"}
    )
    assert_error(response, 422)


def test_blank_means_the_same_to_the_server_and_its_documented_pattern(client: TestClient) -> None:
    """The OpenAPI pattern of questions and messages and the server's own check agree on every
    character (carqa.qa.blank: whitespace and invisible characters are blank), and on text mixing
    them with visible characters, in and outside the BMP."""
    from carqa.api.schemas import ChatRequest, QueryRequest
    from carqa.qa.blank import NOT_BLANK_PATTERN
    from pydantic import ValidationError

    schemas = client.get("/openapi.json").json()["components"]["schemas"]
    documented = {
        schemas["QueryRequest"]["properties"]["question"]["pattern"],
        schemas["ChatRequest"]["properties"]["message"]["pattern"],
    }
    assert documented == {NOT_BLANK_PATTERN}
    pattern = re.compile(NOT_BLANK_PATTERN)

    def accepted(text: str) -> bool:
        try:
            QueryRequest(question=text)
        except ValidationError:
            with pytest.raises(ValidationError):
                ChatRequest(message=text)
            return False
        ChatRequest(message=text)
        return True

    texts = [chr(code) for code in range(0x10000) if not 0xD800 <= code <= 0xDFFF]
    texts += ["\u200b" * 3, " \u2060\u00ad\n", "\u200bx", "\U0001f9ec", "\U000e0041", "a\u200b"]
    for text in texts:
        assert accepted(text) == (pattern.search(text) is not None), ascii(text)


@pytest.mark.parametrize(
    "text",
    [
        "\x1c",
        "\x85\x85",
        "\ufeff",
        " \u3000\t",
        "\u200b",  # zero-width space
        "\u200c\u200d",  # zero-width non-joiner and joiner
        "\u2060",  # word joiner
        "\u00ad",  # soft hyphen
        "\u200e\u200f",  # bidi marks
        "\x00\x1b \x7f",  # controls
        "\u3164",  # Hangul filler
    ],
)
def test_blank_text_is_422_whitespace_or_invisible(client: TestClient, text: str) -> None:
    """Refused exactly as a question of spaces is (same status, code and message)."""
    for path, field in (("/api/query", "question"), ("/api/chat", "message")):
        blank = assert_error(client.post(path, json={field: "   "}), 422, "invalid_request")
        assert assert_error(client.post(path, json={field: text}), 422) == blank


def test_a_question_with_invisible_characters_in_it_is_answered(client: TestClient) -> None:
    question = "\u200bWhy does CD19 relapse\u200b happen?\u00ad\u2060"  # cd19: the fake's word
    response = client.post("/api/query", json={"question": question})
    assert response.status_code == 200, response.text
    assert response.json()["citations"]
    response = client.post("/api/chat", json={"message": question})
    assert response.status_code == 200, response.text
