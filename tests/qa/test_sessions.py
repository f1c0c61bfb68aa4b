from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from carqa.qa.sessions import SESSIONS_FILE, SessionStore, open_or_in_memory

from tests.read_only import read_only


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


def test_turns_keep_what_they_cited_and_files_with_topics_gain_the_column(
    tmp_path: Path,
) -> None:
    path = tmp_path / SESSIONS_FILE
    old = sqlite3.connect(path)  # the schema before turns kept what they cited
    old.executescript(
        "CREATE TABLE sessions (id TEXT PRIMARY KEY, created REAL NOT NULL, updated REAL NOT NULL);"
        "CREATE TABLE turns (session_id TEXT NOT NULL, seq INTEGER NOT NULL, message TEXT NOT NULL,"
        " query TEXT NOT NULL, answer TEXT NOT NULL, abstained INTEGER NOT NULL,"
        " created REAL NOT NULL, topic TEXT, PRIMARY KEY (session_id, seq));"
        "INSERT INTO sessions VALUES ('old', 1e12, 1e12);"
        "INSERT INTO turns VALUES ('old', 1, 'm', 'q', 'a', 0, 1e12, 'q');"
    )
    old.commit()
    old.close()
    cited = [("2", "Thirty were treated."), ("1", "It works."), ("2", "Ten relapsed.")]
    with SessionStore(path, clock=lambda: 1e12) as store:
        (turn,) = store.history("old")
        assert (turn.topic, turn.cited, turn.focus) == ("q", (), [])
        store.append("old", message="m2", query="q2", answer="a2", abstained=False, cited=cited)
    with SessionStore(path, clock=lambda: 1e12) as store:  # reopening does not add it twice
        last = store.history("old")[-1]
        assert last.cited == tuple(cited)
        assert last.focus == ["2", "1"]  # each paper once, the one cited first first
    with sqlite3.connect(path) as raw:  # a value that does not read as pairs is no focus
        raw.execute("UPDATE turns SET cited = 'not json' WHERE seq = 2")
    with SessionStore(path, clock=lambda: 1e12) as store:
        assert store.history("old")[-1].focus == []


def test_sessions_can_be_kept_in_memory() -> None:
    clock = Clock()
    with SessionStore(None, ttl_seconds=60, clock=clock) as store:
        assert not store.persistent
        session = store.create()
        store.append(session, message="m", query="q", answer="a", abstained=False, topic="q")
        assert [(t.message, t.topic) for t in store.history(session)] == [("m", "q")]
        clock.now += 61
        assert not store.exists(session)


def test_a_path_that_cannot_be_written_falls_back_to_memory_with_the_reason(
    tmp_path: Path,
) -> None:
    (tmp_path / "a-file").write_text("not a folder")
    store, problem = open_or_in_memory(tmp_path / "a-file" / SESSIONS_FILE)
    with store:
        assert not store.persistent
        assert isinstance(problem, OSError)
        session = store.create()  # chat still works, for the life of the process
        store.append(session, message="m", query="q", answer="a", abstained=False)
        assert [t.answer for t in store.history(session)] == ["a"]
    store, problem = open_or_in_memory(tmp_path / "ok" / SESSIONS_FILE)
    with store:
        assert store.persistent and problem is None
        assert store.path == tmp_path / "ok" / SESSIONS_FILE


def test_a_read_only_sessions_file_is_found_out_at_open_not_at_the_first_turn(
    tmp_path: Path,
) -> None:
    """SQLite opens a file it may only read, and reads it: the store must try a write."""
    path = tmp_path / SESSIONS_FILE
    with SessionStore(path) as store:
        kept = store.create()
    with read_only(path) as done:
        if not done:
            pytest.skip("this process writes to read-only files (root without chattr +i)")
        store, problem = open_or_in_memory(path)
        with store:
            assert not store.persistent
            assert isinstance(problem, sqlite3.Error)
            assert "readonly" in str(problem)
            assert not store.exists(kept)  # a new, empty store: the file is left alone
            assert store.exists(store.create())


def _turn(store: SessionStore, session: str, text: str) -> None:
    store.append(session, message=text, query=text, answer=text, abstained=False)


def test_beyond_max_sessions_the_least_recently_used_go_with_their_turns(tmp_path: Path) -> None:
    clock = Clock()
    path = tmp_path / SESSIONS_FILE
    with SessionStore(path, max_sessions=3, clock=clock) as store:
        a = store.create()
        _turn(store, a, "a1")
        clock.now += 1
        b = store.create()
        _turn(store, b, "b1")
        clock.now += 1
        c = store.create()
        clock.now += 1
        _turn(store, a, "a2")  # a is used again: b is now the least recently used
        clock.now += 1
        d = store.create()
        assert [store.exists(s) for s in (a, b, c, d)] == [True, False, True, True]
        assert store.history(b) == []
        assert [t.message for t in store.history(a)] == ["a1", "a2"]
        clock.now += 1
        e = store.create()
        assert [store.exists(s) for s in (a, c, d, e)] == [True, False, True, True]
    raw = sqlite3.connect(path)
    assert raw.execute("SELECT COUNT(*) FROM sessions").fetchone() == (3,)
    assert raw.execute("SELECT DISTINCT session_id FROM turns").fetchall() == [(a,)]
    raw.close()


def test_a_flood_of_new_sessions_stays_within_the_cap(tmp_path: Path) -> None:
    """Created in the same instant (a frozen clock), the newest sessions are the ones kept,
    and the session being created is never the one evicted."""
    with SessionStore(tmp_path / SESSIONS_FILE, max_sessions=2, clock=Clock()) as store:
        created = [store.create() for _ in range(50)]
        assert store.count() == 2
        assert [store.exists(s) for s in created[-3:]] == [False, True, True]
    with SessionStore(None, max_sessions=1) as store:  # in memory too
        first, second = store.create(), store.create()
        assert (store.exists(first), store.exists(second), store.count()) == (False, True, 1)


def test_a_turn_for_an_evicted_session_brings_it_back_within_the_cap(tmp_path: Path) -> None:
    clock = Clock()
    with SessionStore(tmp_path / SESSIONS_FILE, max_sessions=2, clock=clock) as store:
        a = store.create()
        clock.now += 1
        b = store.create()
        clock.now += 1
        store.create()  # evicts a, while (say) its answer was being written
        clock.now += 1
        _turn(store, a, "late")
        assert store.exists(a) and not store.exists(b)
        assert store.count() == 2
