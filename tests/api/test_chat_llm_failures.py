"""``POST /api/chat`` when the LLM fails: before the answer, or half-way through its stream.

A failed turn must leave the session table as it was: no session the client never hears of
(the ``error`` event and the 503 carry no ``session_id``), no turn recorded, and no live
conversation evicted by the session cap to make room for a session that will never be used.

Real engine on the fixture index with a LangChain fake chat model that fails, as a provider
does (connection refused, a stream cut off).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from carqa.api.app import create_app
from carqa.qa.chat import ChatService
from carqa.qa.engine import Engine
from carqa.qa.llm import LLMWriter
from carqa.qa.sessions import SessionStore
from fastapi.testclient import TestClient
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, AIMessageChunk
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult

from carqa.settings import Settings
from tests.api.sse import parse_sse

RELAPSE = "Why do patients relapse after CD19 CAR T cell therapy?"
ADULTS = "Why do adults relapse after CD19 CAR T cell therapy?"


class SwitchableModel(GenericFakeChatModel):
    """Streams "Antigen loss drives relapse [1]." and condenses any follow-up into
    ``ADULTS``, until ``fail`` is set: then its stream fails at once (``"before"``) or after
    two words (``"mid"``), or condensing fails (``"condense"``)."""

    fail: str | None = None

    def _stream(self, messages: Any, stop: Any = None, run_manager: Any = None, **kwargs: Any):  # type: ignore[override]
        words = ["Antigen ", "loss ", "drives ", "relapse ", "[1]."]
        if self.fail == "before":
            raise ConnectionError("connection refused")
        for n, word in enumerate(words):
            if self.fail == "mid" and n == 2:
                raise ConnectionError("connection reset by peer")
            yield ChatGenerationChunk(message=AIMessageChunk(content=word))

    def _generate(
        self, messages: Any, stop: Any = None, run_manager: Any = None, **kwargs: Any
    ) -> ChatResult:  # type: ignore[override]
        if self.fail == "condense":
            raise ConnectionError("connection refused")
        return ChatResult(generations=[ChatGeneration(message=AIMessage(content=ADULTS))])


@pytest.fixture
def model() -> SwitchableModel:
    return SwitchableModel(messages=iter([AIMessage(content="unused")]))


@pytest.fixture
def chat(small_index: Any, model: SwitchableModel, tmp_path: Path) -> ChatService:
    engine = Engine(small_index, llm=LLMWriter(model))
    return ChatService(engine, SessionStore(tmp_path / "sessions.sqlite", max_sessions=2))


@pytest.fixture
def client(chat: ChatService, tmp_path: Path) -> Iterator[TestClient]:
    settings = Settings(index_dir=tmp_path / "index")
    with TestClient(create_app(settings, engine=chat.engine, chat=chat)) as test_client:
        yield test_client


def _stream(client: TestClient, body: dict[str, Any]) -> list[tuple[str, Any]]:
    with client.stream("POST", "/api/chat", json={**body, "stream": True}) as response:
        assert response.status_code == 200
        return parse_sse(response.iter_lines())


def _sessions(chat: ChatService) -> dict[str, list[str]]:
    """Every session row (expired or not) and its turns' messages."""
    conn = chat.sessions._conn
    ids = [row[0] for row in conn.execute("SELECT id FROM sessions ORDER BY rowid")]
    return {sid: [t.message for t in chat.sessions.history(sid)] for sid in ids}


@pytest.mark.parametrize("when", ["before", "mid"])
def test_a_failed_first_turn_leaves_no_session(
    client: TestClient, chat: ChatService, model: SwitchableModel, when: str
) -> None:
    model.fail = when
    events = _stream(client, {"message": RELAPSE})
    assert events[-1][0] == "error"
    assert events[-1][1]["error"]["code"] == "llm_unavailable"
    if when == "mid":
        assert "delta" in [name for name, _ in events]
    reply = client.post("/api/chat", json={"message": RELAPSE})
    assert reply.status_code == 503
    assert _sessions(chat) == {}  # nothing the client was never told about


@pytest.mark.parametrize("when", ["before", "mid"])
def test_a_failed_turn_does_not_evict_live_conversations(
    client: TestClient, chat: ChatService, model: SwitchableModel, when: str
) -> None:
    """With the cap at 2 and two live conversations, each failed new conversation deleted
    the least recently used live one: a flaky model emptied the session table."""
    first = client.post("/api/chat", json={"message": RELAPSE}).json()["session_id"]
    second = _stream(client, {"message": RELAPSE})[-1][1]["session_id"]
    model.fail = when
    for _ in range(3):
        assert _stream(client, {"message": RELAPSE})[-1][0] == "error"
        assert client.post("/api/chat", json={"message": RELAPSE}).status_code == 503
    assert _sessions(chat) == {first: [RELAPSE], second: [RELAPSE]}

    # A failed follow-up keeps its session as it was; the retry continues the conversation.
    follow = {"message": "and in adults?", "session_id": first}
    assert _stream(client, follow)[-1][0] == "error"
    model.fail = "condense"  # before the stream starts: a 503
    response = client.post("/api/chat", json={**follow, "stream": True})
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "llm_unavailable"
    assert _sessions(chat)[first] == [RELAPSE]
    model.fail = None
    done = _stream(client, follow)[-1]
    assert done[0] == "done"
    assert done[1]["session_id"] == first
    assert "session_expired" not in done[1]["flags"]
    assert _sessions(chat) == {first: [RELAPSE, "and in adults?"], second: [RELAPSE]}


def test_a_failed_turn_with_an_expired_session_is_retried_as_expired(
    client: TestClient, chat: ChatService, model: SwitchableModel
) -> None:
    """The client's session had expired and the answer failed: no new session was sent to it,
    so its retry still names the old one, and must still be told the conversation is gone."""
    model.fail = "mid"
    body = {"message": RELAPSE, "session_id": "gone-gone-gone"}
    assert _stream(client, body)[-1][0] == "error"
    assert _sessions(chat) == {}
    model.fail = None
    done = _stream(client, body)[-1][1]
    assert "session_expired" in done["flags"]
    assert _sessions(chat) == {done["session_id"]: [RELAPSE]}
