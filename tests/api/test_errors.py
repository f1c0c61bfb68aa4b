"""Every error is JSON ``{"error": {"code", "message"}}`` with the right status; bad input is
never a 500."""

from __future__ import annotations

import gzip
import json
import logging
import re
from typing import Any

import pytest
from carqa.api.app import create_app
from fastapi.testclient import TestClient

from carqa.errors import IndexNotFound
from carqa.settings import Settings
from tests.api.conftest import MakeClient


def assert_error(response: Any, status: int, code: str | None = None) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    error = response.json()["error"]
    assert isinstance(error["message"], str) and error["message"]
    if code is not None:
        assert error["code"] == code
    return error


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


JSON = {"content-type": "application/json"}


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


def test_body_too_large_by_content_length(make_client: MakeClient) -> None:
    client = make_client(max_body_bytes=1000)
    body = json.dumps({"question": "cd19", "pad": "x" * 2000})
    assert_error(client.post("/api/query", content=body, headers=JSON), 413, "body_too_large")


def test_body_too_large_when_streamed_without_content_length(make_client: MakeClient) -> None:
    client = make_client(max_body_bytes=1000)

    def chunks() -> Any:
        yield b'{"question": "'
        for _ in range(20):
            yield b"x" * 100
        yield b'"}'

    response = client.post("/api/query", content=chunks(), headers=JSON)
    assert "content-length" not in response.request.headers
    assert_error(response, 413, "body_too_large")


def test_small_chunked_body_is_accepted(make_client: MakeClient) -> None:
    client = make_client(max_body_bytes=1000)

    def chunks() -> Any:
        yield b'{"question": '
        yield b'"cd19 relapse"}'

    assert client.post("/api/query", content=chunks(), headers=JSON).status_code == 200


@pytest.mark.parametrize("encoding", ["gzip", "deflate", "br", "GZIP"])
def test_compressed_body_is_415_not_called_bad_json(client: TestClient, encoding: str) -> None:
    # The body is never decompressed: calling it "not valid JSON (invalid UTF-8)" sent the
    # client hunting for an encoding bug in its JSON instead of turning compression off.
    body = gzip.compress(json.dumps({"question": "cd19"}).encode())
    headers = {**JSON, "Content-Encoding": encoding}
    error = assert_error(
        client.post("/api/query", content=body, headers=headers), 415, "unsupported_encoding"
    )
    assert encoding in error["message"]
    response = client.post("/api/chat", content=body, headers=headers)
    assert response.status_code == 415
    assert response.headers["accept-encoding"] == "identity"


def test_identity_encoding_is_accepted(client: TestClient) -> None:
    headers = {**JSON, "Content-Encoding": "identity"}
    response = client.post("/api/query", content=json.dumps({"question": "cd19"}), headers=headers)
    assert response.status_code == 200


def test_huge_body_with_default_limit(client: TestClient) -> None:
    body = json.dumps({"question": "x" * 200_000})
    assert_error(client.post("/api/query", content=body, headers=JSON), 413)


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


def _missing_index(settings: Settings) -> Any:
    raise IndexNotFound(f"No index in {settings.index_dir}.", hint="Run `carqa build`.")


def test_missing_index_starts_but_is_not_ready_and_answers_503(tmp_path: Any) -> None:
    app = create_app(Settings(index_dir=tmp_path), engine_factory=_missing_index)
    with TestClient(app) as client:
        assert client.get("/healthz").status_code == 200
        ready = client.get("/readyz")
        assert ready.status_code == 503
        assert ready.json()["ready"] is False
        assert "No index" in ready.json()["reason"]
        assert "carqa build" in ready.json()["hint"]
        for response in (
            client.post("/api/query", json={"question": "cd19"}),
            client.post("/api/chat", json={"message": "cd19"}),
            client.post("/api/chat", json={"message": "cd19", "stream": True}),
            client.get("/api/stats"),
            client.get("/api/papers/90000003"),
        ):
            error = assert_error(response, 503, "index_not_found")
            assert "carqa build" in error["hint"]
        # Bad input is still reported as such, not hidden behind the 503.
        assert_error(client.post("/api/query", json={"question": ""}), 422)
        # The demo page and widget still load, to show the error to a visitor.
        assert client.get("/widget.js").status_code == 200


def test_index_built_later_is_picked_up_without_restart(tmp_path: Any) -> None:
    from tests.api.fakes import FakeEngine

    attempts: list[int] = []

    def factory(settings: Settings) -> Any:
        attempts.append(1)
        if len(attempts) == 1:
            raise IndexNotFound("No index yet.")
        return FakeEngine()

    from tests.api.fakes import FakeChat

    app = create_app(
        Settings(index_dir=tmp_path),
        engine_factory=factory,
        chat_factory=lambda engine, settings: FakeChat(engine),
    )
    app.state.services.retry_seconds = 0.0
    with TestClient(app) as client:
        assert len(attempts) == 1
        assert client.post("/api/query", json={"question": "cd19"}).status_code == 200
        assert client.get("/readyz").status_code == 200


def test_retries_are_throttled(tmp_path: Any) -> None:
    attempts: list[int] = []

    def factory(settings: Settings) -> Any:
        attempts.append(1)
        raise IndexNotFound("No index yet.")

    app = create_app(Settings(index_dir=tmp_path), engine_factory=factory)
    with TestClient(app) as client:
        for _ in range(5):
            assert client.post("/api/query", json={"question": "cd19"}).status_code == 503
    assert len(attempts) == 1


def test_concurrent_requests_share_one_retry(tmp_path: Any) -> None:
    # Requests that arrive together while the index is missing all pass the "retry due?"
    # check, then queue on the load lock: each one loaded (and verified) the index again.
    import threading
    import time

    from carqa.api.errors import ApiError
    from carqa.api.services import Services

    attempts: list[int] = []

    def factory(settings: Settings) -> Any:
        attempts.append(1)
        raise IndexNotFound("No index yet.")

    services = Services(Settings(index_dir=tmp_path), engine_factory=factory)
    errors: list[int] = []

    def request() -> None:
        try:
            services.require()
        except ApiError as error:
            errors.append(error.status_code)

    with services._lock:  # a load in progress: the requests queue behind it
        threads = [threading.Thread(target=request) for _ in range(4)]
        for thread in threads:
            thread.start()
        time.sleep(0.2)
    for thread in threads:
        thread.join(timeout=10)
    assert errors == [503] * 4
    assert len(attempts) == 1


def test_an_llm_misconfiguration_is_not_logged_as_a_missing_index(
    tmp_path: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """The log said "index not available" for any reason the engine could not open, sending an
    operator to the index when the LLM settings were wrong."""
    from carqa.api.services import Services
    from carqa.qa.llm import LLMUnavailable

    def factory(settings: Settings) -> Any:
        raise LLMUnavailable("Unknown LLM provider 'gpt'.", hint="Set CARQA_LLM_PROVIDER.")

    with caplog.at_level(logging.WARNING, logger="carqa.api"):
        Services(Settings(index_dir=tmp_path), engine_factory=factory).load()
    assert "not ready to answer: Unknown LLM provider 'gpt'." in caplog.text
    assert "Set CARQA_LLM_PROVIDER." in caplog.text
    assert "index not available" not in caplog.text


def test_engine_bug_is_a_json_500_without_traceback(make_client: MakeClient) -> None:
    class Exploding:
        def ask(self, *args: Any, **kwargs: Any) -> Any:
            raise RuntimeError("secret internals")

    from tests.api.fakes import FakeChat, FakeEngine

    client = make_client(engine=Exploding(), chat=FakeChat(FakeEngine()))
    client_no_raise = TestClient(client.app, raise_server_exceptions=False)
    response = client_no_raise.post("/api/query", json={"question": "cd19"})
    error = assert_error(response, 500, "internal_error")
    assert "secret" not in response.text
    assert error["message"] == "Internal server error."


def test_engine_bug_500_carries_cors_headers_for_the_widget(make_client: MakeClient) -> None:
    """A widget on another site must be able to read the 500, not just "Failed to fetch"."""

    class Exploding:
        def ask(self, *args: Any, **kwargs: Any) -> Any:
            raise RuntimeError("secret internals")

    from tests.api.fakes import FakeChat, FakeEngine

    site = "https://hospital.example"
    client = make_client(engine=Exploding(), chat=FakeChat(FakeEngine()), cors_origins=[site])
    response = client.post("/api/query", json={"question": "cd19"}, headers={"Origin": site})
    assert_error(response, 500, "internal_error")
    assert response.headers["access-control-allow-origin"] == site
    assert "secret" not in response.text


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
