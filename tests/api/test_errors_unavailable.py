"""When the server cannot answer: no index yet (503 with a hint, picked up when built, retries
throttled and shared), an LLM misconfigured, an engine bug (a JSON 500 without a traceback)."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from carqa.api.app import create_app
from fastapi.testclient import TestClient

from carqa.errors import IndexNotFound
from carqa.settings import Settings
from tests.api.assertions import assert_error
from tests.api.conftest import MakeClient


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
