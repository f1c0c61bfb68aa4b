"""Where the server keeps chat sessions: ``<index_dir>/sessions.sqlite`` unless
``CARQA_SESSIONS_PATH`` (``carqa serve --sessions-path``) names another file; in memory, with
a warning, when the file cannot be written (a read-only index directory).

Real engine on the fixture index, chat service opened by the app itself at start-up (the
production ``open_chat``), as ``carqa serve`` runs it.
"""

from __future__ import annotations

import logging
import shutil
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from carqa.api.app import create_app
from carqa.qa.sessions import SessionStore
from fastapi.testclient import TestClient

from carqa.settings import Settings
from tests.api.sse import parse_sse
from tests.read_only import read_only

RELAPSE = "Why do patients relapse after CD19 CAR T cell therapy?"


def _sessions_in(path: Path) -> set[str]:
    """Session ids in a sessions file, read without writing to it (or to its folder)."""
    if not path.exists():
        return set()
    connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return {row[0] for row in connection.execute("SELECT id FROM sessions")}
    finally:
        connection.close()


def test_an_explicit_sessions_path_is_used(
    small_index: Any, small_index_dir: Path, tmp_path: Path
) -> None:
    from carqa.qa.engine import Engine

    path = tmp_path / "state" / "chat.sqlite"  # its folder does not exist yet
    settings = Settings(index_dir=small_index_dir, sessions_path=path)
    engine = Engine(small_index, settings=settings)
    with TestClient(create_app(settings, engine=engine)) as client:
        reply = client.post("/api/chat", json={"message": RELAPSE})
        assert reply.status_code == 200, reply.text
        session = reply.json()["session_id"]
    with SessionStore(path) as store:
        assert [turn.message for turn in store.history(session)] == [RELAPSE]
    assert session not in _sessions_in(small_index_dir / "sessions.sqlite")


@pytest.fixture(scope="module")
def read_only_index(
    small_index_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Path]:
    """A copy of the fixture index that this process cannot write to, as a container image or
    a read-only mount serves it. Where that is impossible (root, without ``chattr``), the
    folder stays writable and ``sessions.sqlite`` is a folder instead: opening the sessions
    database fails just the same, which is what the server must survive."""
    index_dir = tmp_path_factory.mktemp("read_only") / "index"
    shutil.copytree(small_index_dir, index_dir, symlinks=True)
    for left in index_dir.glob("sessions.sqlite*"):  # other chat tests share small_index_dir
        left.unlink()
    with read_only(index_dir) as done:
        if not done:
            (index_dir / "sessions.sqlite").mkdir()
        yield index_dir


def test_a_read_only_index_is_served_with_chat_sessions_in_memory(
    read_only_index: Path, caplog: pytest.LogCaptureFixture
) -> None:
    sessions_file = read_only_index / "sessions.sqlite"
    caplog.set_level(logging.WARNING, logger="carqa.api")
    with TestClient(create_app(Settings(index_dir=read_only_index))) as client:
        assert client.get("/readyz").status_code == 200
        assert client.get("/api/stats").json()["sessions_persistent"] is False
        query = client.post("/api/query", json={"question": RELAPSE})
        assert query.status_code == 200, query.text
        assert query.json()["citations"]
        first = client.post("/api/chat", json={"message": RELAPSE})
        assert first.status_code == 200, first.text
        session = first.json()["session_id"]
        body = {"message": "and in adults?", "session_id": session, "stream": True}
        with client.stream("POST", "/api/chat", json=body) as response:
            assert response.status_code == 200
            done = parse_sse(response.iter_lines())[-1]
        assert done[0] == "done", done
        assert done[1]["session_id"] == session  # the session was kept, in memory
        assert "session_expired" not in done[1]["flags"]
        assert done[1]["query"] == f"{RELAPSE.removesuffix('?')} in adults?"
    [warning] = [r for r in caplog.records if "sessions database" in r.getMessage()]
    assert warning.levelno == logging.WARNING
    message = warning.getMessage()
    assert str(sessions_file) in message
    assert "will not survive a restart" in message
    assert "CARQA_SESSIONS_PATH" in message and "--sessions-path" in message
    assert not sessions_file.is_file()


def test_a_read_only_index_keeps_sessions_at_an_explicit_path(
    small_index: Any, read_only_index: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from carqa.qa.engine import Engine

    path = tmp_path / "sessions.sqlite"
    settings = Settings(index_dir=read_only_index, sessions_path=path)
    engine = Engine(small_index, settings=settings)
    caplog.set_level(logging.WARNING, logger="carqa.api")
    with TestClient(create_app(settings, engine=engine)) as client:
        session = client.post("/api/chat", json={"message": RELAPSE}).json()["session_id"]
        assert client.get("/api/stats").json()["sessions_persistent"] is True
    assert not [r for r in caplog.records if "sessions database" in r.getMessage()]
    with SessionStore(path) as store:  # it survives the server
        assert store.exists(session)


def test_the_server_keeps_at_most_max_sessions(
    small_index: Any, small_index_dir: Path, tmp_path: Path
) -> None:
    from carqa.qa.engine import Engine

    path = tmp_path / "sessions.sqlite"
    settings = Settings(index_dir=small_index_dir, sessions_path=path, max_sessions=2)
    engine = Engine(small_index, settings=settings)
    with TestClient(create_app(settings, engine=engine)) as client:
        sessions = [
            client.post("/api/chat", json={"message": RELAPSE}).json()["session_id"]
            for _ in range(3)
        ]
        body = {"message": "and in adults?", "session_id": sessions[0]}
        evicted = client.post("/api/chat", json=body).json()
        assert evicted["session_id"] != sessions[0]
        assert "session_expired" in evicted["flags"]
    assert _sessions_in(path) == {sessions[2], evicted["session_id"]}


def test_a_sessions_file_deleted_while_serving_is_reported_then_recreated(
    small_index: Any, small_index_dir: Path, tmp_path: Path
) -> None:
    from carqa.qa.engine import Engine

    path = tmp_path / "sessions.sqlite"
    settings = Settings(index_dir=small_index_dir, sessions_path=path, max_turns_per_session=2)
    engine = Engine(small_index, settings=settings)
    with TestClient(create_app(settings, engine=engine)) as client:
        client.post("/api/chat", json={"message": RELAPSE})
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
        assert client.get("/api/stats").json()["sessions_persistent"] is False
        session = client.post("/api/chat", json={"message": RELAPSE}).json()["session_id"]
        for _ in range(2):
            client.post("/api/chat", json={"message": "and in adults?", "session_id": session})
        assert client.get("/api/stats").json()["sessions_persistent"] is True
    with SessionStore(path) as store:  # what a restart finds: the turns since, the last two
        assert [turn.message for turn in store.history(session)] == ["and in adults?"] * 2
