"""Chat sessions stay bounded and honest: turns per session are capped, purged sessions give
their space back, and a database deleted while serving is recreated (and said to be missing
until it is)."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

from carqa.qa.sessions import SessionStore


def _turn(store: SessionStore, session_id: str, n: int, *, size: int = 10) -> None:
    store.append(
        session_id,
        message=f"question {n}",
        query=f"query {n}",
        answer="an invented answer " * size,
        abstained=False,
    )


def test_a_session_keeps_only_its_last_turns(tmp_path: Path) -> None:
    with SessionStore(tmp_path / "s.sqlite", max_turns=3) as store:
        session_id = store.create()
        for n in range(10):
            _turn(store, session_id, n)
        assert [t.message for t in store.history(session_id, limit=100)] == [
            "question 7",
            "question 8",
            "question 9",
        ]
    with sqlite3.connect(tmp_path / "s.sqlite") as conn:
        (rows,) = conn.execute("SELECT COUNT(*) FROM turns").fetchone()
    assert rows == 3


def test_purged_sessions_give_their_space_back(tmp_path: Path) -> None:
    now = [1000.0]
    path = tmp_path / "s.sqlite"
    with SessionStore(path, ttl_seconds=60, clock=lambda: now[0]) as store:
        for _ in range(40):
            session_id = store.create()
            for n in range(5):
                _turn(store, session_id, n, size=200)
        now[0] += 3600
        assert store.purge_expired() == 40
        with sqlite3.connect(path) as conn:
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            (free,) = conn.execute("PRAGMA freelist_count").fetchone()
            (pages,) = conn.execute("PRAGMA page_count").fetchone()
    assert free == 0
    assert pages < 20  # the schema's pages, not the 40 sessions' (hundreds of pages)


def test_a_database_deleted_while_serving_is_recreated(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    with SessionStore(path) as store:
        before = store.create()
        _turn(store, before, 1)
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
        assert store.persistent is False  # /api/stats says so until the next write
        after = store.create()
        _turn(store, after, 2)
        assert store.persistent is True
        assert path.exists()
    with SessionStore(path) as reopened:  # what a restart finds
        assert [t.message for t in reopened.history(after)] == ["question 2"]
        assert not reopened.exists(before)


def test_a_database_replaced_while_serving_is_not_written_through_the_old_file(
    tmp_path: Path,
) -> None:
    path = tmp_path / "s.sqlite"
    with SessionStore(path) as store:
        store.create()
        os.replace(_other_database(tmp_path), path)
        assert store.persistent is False
        session_id = store.create()
        _turn(store, session_id, 1)
    with SessionStore(path) as reopened:
        assert [t.message for t in reopened.history(session_id)] == ["question 1"]


def _other_database(tmp_path: Path) -> Path:
    other = tmp_path / "other.sqlite"
    with SessionStore(other):
        pass
    return other
