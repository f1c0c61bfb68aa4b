from __future__ import annotations

import sqlite3
from pathlib import Path

from qa.sessions import SESSIONS_FILE, SessionStore


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def test_turns_are_kept_in_order(tmp_path: Path) -> None:
    with SessionStore.open(tmp_path) as store:
        assert (tmp_path / SESSIONS_FILE).is_file()
        session = store.create()
        assert store.exists(session)
        assert store.history(session) == []
        for i in range(3):
            store.append(session, message=f"m{i}", query=f"q{i}", answer=f"a{i}", abstained=i == 1)
        turns = store.history(session)
        assert [t.message for t in turns] == ["m0", "m1", "m2"]
        assert [t.abstained for t in turns] == [False, True, False]
        assert [t.query for t in store.history(session, limit=2)] == ["q1", "q2"]


def test_ids_are_unique_and_unknown_ids_are_not_sessions(tmp_path: Path) -> None:
    with SessionStore.open(tmp_path) as store:
        ids = {store.create() for _ in range(20)}
        assert len(ids) == 20
        assert not store.exists("no-such-session")
        assert store.history("no-such-session") == []


def test_sessions_expire_after_ttl_of_inactivity(tmp_path: Path) -> None:
    clock = Clock()
    with SessionStore(tmp_path / "s.sqlite", ttl_seconds=60, clock=clock) as store:
        session = store.create()
        store.append(session, message="m", query="q", answer="a", abstained=False)
        clock.now += 59
        assert store.exists(session)
        store.append(session, message="m2", query="q2", answer="a2", abstained=False)
        clock.now += 59  # activity renewed the session
        assert store.exists(session)
        clock.now += 2
        assert not store.exists(session)
        assert store.history(session) == []
        assert store.count() == 0
        assert store.purge_expired() == 1


def test_sessions_survive_reopening(tmp_path: Path) -> None:
    with SessionStore.open(tmp_path) as store:
        session = store.create()
        store.append(session, message="m", query="q", answer="a", abstained=False)
    with SessionStore.open(tmp_path) as store:
        assert [t.answer for t in store.history(session)] == ["a"]


def test_turns_keep_their_topic_and_old_files_gain_the_column(tmp_path: Path) -> None:
    path = tmp_path / SESSIONS_FILE
    old = sqlite3.connect(path)  # the schema before turns had a topic
    old.executescript(
        "CREATE TABLE sessions (id TEXT PRIMARY KEY, created REAL NOT NULL, updated REAL NOT NULL);"
        "CREATE TABLE turns (session_id TEXT NOT NULL, seq INTEGER NOT NULL, message TEXT NOT NULL,"
        " query TEXT NOT NULL, answer TEXT NOT NULL, abstained INTEGER NOT NULL,"
        " created REAL NOT NULL, PRIMARY KEY (session_id, seq));"
        "INSERT INTO sessions VALUES ('old', 1e12, 1e12);"
        "INSERT INTO turns VALUES ('old', 1, 'm', 'q', 'a', 0, 1e12);"
    )
    old.commit()
    old.close()
    with SessionStore(path, clock=lambda: 1e12) as store:
        assert [t.topic for t in store.history("old")] == [None]
        store.append("old", message="m2", query="q2", answer="a2", abstained=False, topic="q")
        assert [t.topic for t in store.history("old")] == [None, "q"]
    with SessionStore(path, clock=lambda: 1e12) as store:  # reopening does not add it twice
        assert store.history("old")[-1].topic == "q"
