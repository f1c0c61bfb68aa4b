"""What the server tells a stranger: no paths or file contents in answers, no redirects built
from the client's Host header, an OpenAPI document that matches what is enforced."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
from carqa.api.app import create_app
from fastapi.testclient import TestClient

from carqa.errors import IndexCorrupt
from carqa.settings import Settings
from tests.api.conftest import MakeClient

SECRET_DIR = "/srv/private-builds/build-0042"
ABSTRACT_PIECE = "an invented abstract sentence that leaked"


def test_stats_do_not_name_the_index_directory(client: TestClient) -> None:
    stats = client.get("/api/stats").json()
    assert "index_dir" not in stats
    assert "/nowhere" not in client.get("/api/stats").text  # the fake engine's index_dir


def _corrupt(settings: Settings) -> None:
    raise IndexCorrupt(
        f"{SECRET_DIR}/sentences.jsonl line 3 is damaged: '{ABSTRACT_PIECE}'",
        hint=f"Rebuild {SECRET_DIR} with carqa build.",
    )


def test_not_ready_answers_keep_paths_and_contents_in_the_log(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = Settings(index_dir=tmp_path / "index")
    with caplog.at_level(logging.WARNING, logger="carqa.api"):
        app = create_app(settings, engine_factory=_corrupt)
        with TestClient(app) as client:
            ready = client.get("/readyz")
            query = client.post("/api/query", json={"question": "cd19"})
    assert ready.status_code == 503 and query.status_code == 503
    assert query.json()["error"]["code"] == "index_corrupt"
    for response in (ready, query):
        assert SECRET_DIR not in response.text
        assert ABSTRACT_PIECE not in response.text
        assert str(tmp_path) not in response.text
    assert "carqa build" in ready.json()["hint"]
    assert SECRET_DIR in caplog.text  # the operator still gets the details


def test_an_index_error_during_a_request_is_told_in_general_terms(
    make_client: MakeClient, caplog: pytest.LogCaptureFixture
) -> None:
    class DamagedEngine:
        def ask(self, *args: object, **kwargs: object) -> None:
            _corrupt(Settings())

    client = make_client(engine=DamagedEngine())
    with caplog.at_level(logging.ERROR, logger="carqa.api"):
        response = client.post("/api/query", json={"question": "cd19"})
    assert response.status_code == 503
    assert SECRET_DIR not in response.text and ABSTRACT_PIECE not in response.text
    assert SECRET_DIR in caplog.text


@pytest.mark.parametrize("path", ["/api/stats/", "/healthz/", "/docs/"])
def test_a_trailing_slash_is_not_redirected_to_the_hosts_url(client: TestClient, path: str) -> None:
    response = client.get(path, headers={"Host": "evil.example"}, follow_redirects=False)
    assert response.status_code == 404
    assert "location" not in response.headers


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-le", "utf-32"])
def test_a_json_body_not_in_utf8_is_refused(client: TestClient, encoding: str) -> None:
    body = json.dumps({"question": "cd19 relapse"}).encode(encoding)
    response = client.post("/api/query", content=body, headers={"Content-Type": "application/json"})
    assert response.status_code == 422
    assert "UTF-8" in response.json()["error"]["message"]
    # The same question in UTF-8 is answered.
    assert client.post("/api/query", json={"question": "cd19 relapse"}).status_code == 200


def test_security_schemes_are_declared_only_when_keys_are_configured(
    make_client: MakeClient,
) -> None:
    open_doc = make_client().get("/openapi.json").json()
    assert "securitySchemes" not in open_doc.get("components", {})
    query = open_doc["paths"]["/api/query"]["post"]
    assert "security" not in query
    assert not {"401", "403"} & set(query["responses"])

    keyed_doc = make_client(api_keys=["secret"]).get("/openapi.json").json()
    assert set(keyed_doc["components"]["securitySchemes"]) == {"ApiKey", "Bearer"}
    keyed = keyed_doc["paths"]["/api/query"]["post"]
    assert keyed["security"] and {"401", "403"} <= set(keyed["responses"])


def test_the_year_order_rule_is_in_the_openapi_text(client: TestClient) -> None:
    filters = client.get("/openapi.json").json()["components"]["schemas"]["FiltersModel"]
    assert "year_from" in filters["description"] and "422" in filters["description"]
    reversed_years = {"question": "cd19", "filters": {"year_from": 2020, "year_to": 2010}}
    assert client.post("/api/query", json=reversed_years).status_code == 422


def test_answers_carry_their_citations_as_segments(client: TestClient) -> None:
    body = client.post("/api/query", json={"question": "cd19 relapse"}).json()
    assert body["segments"] and all(set(s) == {"text", "citations"} for s in body["segments"])
    cited = [n for s in body["segments"] for n in s["citations"]]
    assert cited == [c["n"] for c in body["citations"]]
    schema = client.get("/openapi.json").json()["components"]["schemas"]
    assert "segments" in schema["QueryResponse"]["properties"]


def test_the_cli_styles_only_structural_markers() -> None:
    from carqa.cli.answers import answer_markup

    segments = [{"text": "It cites [1] and [999] ", "citations": [2]}, {"text": "."}]
    markup = answer_markup({"answer": "unused", "segments": segments})
    assert markup.count("[bold cyan]") == 1
    assert "[bold cyan]\\[2][/]" in markup
