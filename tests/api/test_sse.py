"""Server-Sent Events from ``POST /api/chat``: framing, event order, sessions, failures."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from carqa.api.app import create_app
from carqa.qa.llm import LLMUnavailable
from carqa.qa.types import AnswerEvent
from fastapi.testclient import TestClient

from carqa.settings import Settings
from tests.api.conftest import MakeClient
from tests.api.fakes import BrokenChat, FakeChat, FakeEngine
from tests.api.sse import parse_sse


def stream_chat(client: TestClient, body: dict[str, Any], **headers: str) -> list[tuple[str, Any]]:
    with client.stream("POST", "/api/chat", json=body, headers=headers) as response:
        assert response.status_code == 200, response.read()
        assert response.headers["content-type"].startswith("text/event-stream")
        assert response.headers["cache-control"] == "no-cache"
        return parse_sse(response.iter_lines())


@pytest.mark.parametrize(
    ("body", "headers"),
    [
        ({"message": "Why relapse after CD19?"}, {"accept": "text/event-stream"}),
        ({"message": "Why relapse after CD19?", "stream": True}, {}),
    ],
)
def test_stream_sends_sources_then_deltas_then_done(
    client: TestClient, body: dict[str, Any], headers: dict[str, str]
) -> None:
    events = stream_chat(client, body, **headers)
    names = [name for name, _ in events]
    assert names[0] == "sources"
    assert names[-1] == "done"
    assert set(names[1:-1]) == {"delta"}
    assert len(names) >= 3

    sources = events[0][1]["citations"]
    done = events[-1][1]
    assert done["session_id"]
    assert done["citations"] == sources
    streamed = "".join(data["text"] for name, data in events if name == "delta")
    assert streamed.strip() == done["answer"]
    assert done["abstained"] is False


def test_stream_follow_up_uses_the_session(client: TestClient) -> None:
    first = stream_chat(client, {"message": "What about relapse?", "stream": True})
    session_id = first[-1][1]["session_id"]
    second = stream_chat(
        client, {"message": "And remission?", "session_id": session_id, "stream": True}
    )
    done = second[-1][1]
    assert done["session_id"] == session_id
    assert done["query"] == "What about relapse? And remission?"


def test_stream_abstention(client: TestClient) -> None:
    events = stream_chat(client, {"message": "Best pizza in Naples?", "stream": True})
    assert [name for name, _ in events] == ["sources", "done"]
    assert events[-1][1]["abstained"] is True
    assert events[-1][1]["message"]


def test_stream_keeps_markup_as_data(client: TestClient) -> None:
    events = stream_chat(client, {"message": "markup injection", "stream": True})
    texts = [c["text"] for c in events[0][1]["citations"]]
    assert any("<img src=x onerror=alert(1)>" in text for text in texts)


def test_json_reply_when_not_streaming(client: TestClient) -> None:
    response = client.post("/api/chat", json={"message": "relapse"})
    assert response.headers["content-type"].startswith("application/json")


def test_failure_mid_stream_becomes_an_error_event(make_client: MakeClient) -> None:
    engine = FakeEngine()
    client = make_client(engine=engine, chat=BrokenChat(engine))
    events = stream_chat(client, {"message": "relapse", "stream": True})
    assert [name for name, _ in events] == ["sources", "error"]
    error = events[-1][1]["error"]
    assert error["code"] == "internal_error"
    assert "boom" not in error["message"]


def test_streams_run_off_the_event_loop(make_client: MakeClient) -> None:
    """While a slow stream is being produced, the server still answers other requests."""
    import threading
    import time

    engine = FakeEngine(delay=0.5)  # two deltas: a blocked loop would stall ~0.9 s
    client = make_client(engine=engine)
    health_times: list[float] = []

    def poll() -> None:
        time.sleep(0.1)
        started = time.perf_counter()
        assert client.get("/healthz").status_code == 200
        health_times.append(time.perf_counter() - started)

    poller = threading.Thread(target=poll)
    poller.start()
    events = stream_chat(client, {"message": "cd19 relapse", "stream": True})
    poller.join()
    assert events[-1][0] == "done"
    assert health_times and health_times[0] < 0.5


class _SlowChat(FakeChat):
    """A chat whose answer streams slowly (as an LLM's does) and records when its stream is
    closed: closing it is what stops the model and frees its connection."""

    def __init__(self, engine: FakeEngine) -> None:
        super().__init__(engine)
        self.sent = 0
        self.closed = threading.Event()

    def reply_stream(
        self, message: str, session_id: str | None = None, **options: Any
    ) -> Iterator[AnswerEvent]:
        try:
            yield AnswerEvent("sources", {"citations": []})
            for _ in range(100):
                time.sleep(0.05)
                self.sent += 1
                yield AnswerEvent("delta", {"text": "token "})
        finally:
            self.closed.set()


def test_a_client_that_goes_away_stops_the_answer(tmp_path: Path) -> None:
    """A reader closing the page (or the widget's "New chat") mid-answer: the answer's stream
    stayed open, suspended, until a garbage collection happened to find it, so an LLM kept its
    connection (and the model its work) for a reply nobody would read."""
    engine = FakeEngine()
    chat = _SlowChat(engine)
    app = create_app(Settings(index_dir=tmp_path), engine=engine, chat=chat)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        while not server.started:
            time.sleep(0.01)
        url = f"http://127.0.0.1:{port}/api/chat"
        with httpx.stream("POST", url, json={"message": "relapse", "stream": True}) as response:
            lines = response.iter_lines()
            while "event: delta" not in next(lines):
                pass
        assert chat.closed.wait(timeout=5), f"still open after {chat.sent} deltas"
        assert chat.sent < 100
    finally:
        server.should_exit = True
        thread.join(timeout=10)


LEAKY_LLM_ERROR = (
    "The LLM (ChatOpenAI, gpt-x) failed: AuthenticationError: Incorrect API key provided: "
    "sk-abc123 at http://10.0.0.7:8080/v1"
)


class FailingLLMChat(FakeChat):
    """A chat whose LLM fails the way a provider does: with its own, revealing text."""

    def _fail(self) -> LLMUnavailable:
        return LLMUnavailable(LEAKY_LLM_ERROR, hint="Check CARQA_LLM_BASE_URL, CARQA_LLM_API_KEY")

    def reply(self, message: str, session_id: str | None = None, **kwargs: Any) -> Any:
        raise self._fail()

    def reply_stream(self, message: str, session_id: str | None = None, **kwargs: Any) -> Any:
        yield AnswerEvent("sources", {"citations": []})
        raise self._fail()


def _assert_told_in_general_terms(error: dict[str, Any]) -> None:
    assert error["code"] == "llm_unavailable"
    text = json.dumps(error)
    for secret in ("sk-abc123", "10.0.0.7", "CARQA_LLM", "AuthenticationError"):
        assert secret not in text
    assert "not available" in error["message"]


def test_an_llm_failure_is_logged_and_told_to_the_client_in_general_terms(
    make_client: MakeClient, caplog: pytest.LogCaptureFixture
) -> None:
    engine = FakeEngine()
    client = make_client(engine=engine, chat=FailingLLMChat(engine))
    with caplog.at_level("ERROR", logger="carqa.api"):
        response = client.post("/api/chat", json={"message": "relapse"})
        events = stream_chat(client, {"message": "relapse", "stream": True})
    assert response.status_code == 503
    _assert_told_in_general_terms(response.json()["error"])
    assert [name for name, _ in events] == ["sources", "error"]
    _assert_told_in_general_terms(events[-1][1]["error"])
    # The operator still gets the whole story.
    assert caplog.text.count("sk-abc123") == 2 and "CARQA_LLM_BASE_URL" in caplog.text
