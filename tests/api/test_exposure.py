"""What the server tells a stranger: no paths or file contents in answers, no redirects built
from the client's Host header, an OpenAPI document that matches what is enforced."""

from __future__ import annotations

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
