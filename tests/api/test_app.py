"""Response shapes and routes of the HTTP API, over the fake engine."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from tests.api.conftest import MakeClient
from tests.api.fakes import FakeEngine

CITATION_KEYS = {
    "n",
    "pmid",
    "title",
    "year",
    "url",
    "section",
    "text",
    "score",
    "relation",
    "publication_types",
}


def test_query_returns_a_cited_answer(client: TestClient) -> None:
    response = client.post("/api/query", json={"question": "Why do patients relapse after CD19?"})
    assert response.status_code == 200
    body = response.json()
    assert body["abstained"] is False
    assert isinstance(body["took_ms"], float)
    assert body["citations"], body
    for citation in body["citations"]:
        assert set(citation) == CITATION_KEYS


def test_query_abstains_with_a_message(client: TestClient) -> None:
    body = client.post("/api/query", json={"question": "What is the weather on Mars?"}).json()
    assert body["abstained"] is True
    assert body["answer"] == ""
    assert body["citations"] == []
    assert body["message"]


def test_query_passes_k_and_filters_to_the_engine(make_client: MakeClient) -> None:
    engine = FakeEngine()
    client = make_client(engine=engine)
    response = client.post(
        "/api/query",
        json={
            "question": "cd19 relapse",
            "k": 1,
            "filters": {
                "year_from": 2015,
                "pmids": ["90000003"],
                "exclude_pmids": ["90000004"],
                "cited_only": True,
            },
        },
    )
    assert response.status_code == 200
    question, k, filters = engine.calls[-1]
    assert (question, k) == ("cd19 relapse", 1)
    assert filters is not None
    assert (filters.year_from, filters.pmids, filters.cited_only) == (2015, ["90000003"], True)
    assert filters.exclude_pmids == ["90000004"]
    assert filters.include_seed is True


def test_query_keeps_unicode(client: TestClient) -> None:
    question = "CD19 rémission — ¿por qué? 🧬 relapse"
    body = client.post("/api/query", json={"question": question}).json()
    assert body["query"] == question
    assert body["abstained"] is False


def test_chat_json_reply_has_a_session_and_follow_ups_use_it(client: TestClient) -> None:
    first = client.post("/api/chat", json={"message": "What about relapse?"}).json()
    assert first["session_id"]
    assert first["abstained"] is False
    # "And remission?" alone would match paper 90000002 only; in context it also sees relapse.
    follow = client.post(
        "/api/chat", json={"message": "And remission?", "session_id": first["session_id"]}
    ).json()
    assert follow["session_id"] == first["session_id"]
    assert follow["query"] == "What about relapse? And remission?"
    fresh = client.post("/api/chat", json={"message": "And remission?"}).json()
    assert fresh["session_id"] != first["session_id"]
    assert fresh["query"] == "And remission?"


def test_paper_and_unknown_paper(client: TestClient) -> None:
    body = client.get("/api/papers/90000003").json()
    assert body["pmid"] == "90000003"
    assert body["url"] == "https://pubmed.ncbi.nlm.nih.gov/90000003/"
    assert body["cited_by_seed"] is True
    assert body["sections"][0]["text"].startswith("Loss of CD19")

    missing = client.get("/api/papers/12345")
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "paper_not_found"


def test_stats(client: TestClient) -> None:
    body = client.get("/api/stats").json()
    assert body["papers"] == 3
    assert body["model"] == "fake"


def test_health_and_readiness(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["ready"] is True


def test_openapi_documents_every_route(client: TestClient) -> None:
    assert client.get("/docs").status_code == 200
    spec = client.get("/openapi.json").json()
    assert {"/api/query", "/api/chat", "/api/papers/{pmid}", "/api/stats", "/healthz"} <= set(
        spec["paths"]
    )
    query = spec["paths"]["/api/query"]["post"]
    assert {"422", "413", "429", "503"} <= set(query["responses"])
    assert "ErrorResponse" in spec["components"]["schemas"]


def test_openapi_documents_every_flag_an_answer_can_carry(client: TestClient) -> None:
    """``flags`` was a bare list of strings: a client could not learn which values exist."""
    import carqa.qa.chat
    import carqa.qa.engine
    import carqa.qa.llm

    constants = {
        value
        for module in (carqa.qa.chat, carqa.qa.engine, carqa.qa.llm)
        for name, value in vars(module).items()
        if name.startswith("FLAG_")
    }
    schemas = client.get("/openapi.json").json()["components"]["schemas"]
    for model in ("QueryResponse", "ChatResponse"):
        flags = schemas[model]["properties"]["flags"]
        assert flags["type"] == "array"
        for flag in constants:
            assert f"`{flag}`" in flags["description"], (model, flag)
    assert "sessions_persistent" in schemas["StatsResponse"]["properties"]


def test_widget_and_demo_page_are_served(client: TestClient) -> None:
    widget = client.get("/widget.js")
    assert widget.status_code == 200
    assert widget.headers["content-type"].startswith("text/javascript")
    assert "attachShadow" in widget.text
    page = client.get("/")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert 'src="/widget.js"' in page.text


def test_the_widget_ignores_blank_questions_by_the_servers_rule(client: TestClient) -> None:
    """widget.js holds a copy of carqa.qa.blank's pattern (it has no build step to import one); a
    question the server would refuse as blank is not sent. (The browser tests run it.)"""
    import re

    from carqa.qa.blank import NOT_BLANK_PATTERN

    widget = client.get("/widget.js").text
    copies = re.findall(r"var VISIBLE = /(.*)/;", widget)
    assert copies == [NOT_BLANK_PATTERN]


def test_metrics_count_requests_by_handler_and_status(client: TestClient) -> None:
    client.post("/api/query", json={"question": "cd19"})
    client.post("/api/query", json={"question": ""})
    text = client.get("/metrics").text
    assert 'http_requests_total{handler="/api/query",method="POST",status="200"} 1.0' in text
    assert 'http_requests_total{handler="/api/query",method="POST",status="422"} 1.0' in text
    assert "http_request_duration_seconds_bucket" in text


def test_chat_passes_filters_to_the_engine(make_client: MakeClient) -> None:
    engine = FakeEngine()
    client = make_client(engine=engine)
    body = {"message": "cd19 relapse", "filters": {"pmids": ["90000002"]}}
    reply = client.post("/api/chat", json=body).json()
    assert [c["pmid"] for c in reply["citations"]] == ["90000002"]
    streamed = client.post("/api/chat", json={**body, "stream": True})
    assert '"pmid": "90000003"' not in streamed.text
    assert all(filters and filters.pmids == ["90000002"] for _, _, filters in engine.calls)


@pytest.mark.parametrize("path", ["/healthz", "/readyz", "/", "/widget.js"])
def test_head_is_answered_like_get(client: TestClient, path: str) -> None:
    # Uptime monitors and some load balancers check with HEAD; FastAPI routes only the
    # methods they declare, so these were 405.
    get, head = client.get(path), client.head(path)
    assert head.status_code == get.status_code == 200
    assert head.headers["content-type"] == get.headers["content-type"]
    assert head.content == b""


def test_head_on_readyz_is_503_when_not_ready(tmp_path: Path) -> None:
    from carqa.api.app import create_app

    from carqa.settings import Settings

    with TestClient(create_app(Settings(index_dir=tmp_path / "none"))) as client:
        assert client.head("/readyz").status_code == 503


def test_head_routes_stay_out_of_the_openapi_document(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    assert set(paths["/healthz"]) == {"get"}
    assert set(paths["/readyz"]) == {"get"}
