"""Where the server keeps chat sessions: ``<index_dir>/sessions.sqlite`` unless
``CARQA_SESSIONS_PATH`` (``carqa serve --sessions-path``) names another file.

Real engine on the fixture index, chat service opened by the app itself at start-up (the
production ``open_chat``), as ``carqa serve`` runs it.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from api.app import create_app
from index.settings import Settings
from qa.sessions import SessionStore

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
    from qa.engine import Engine

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
