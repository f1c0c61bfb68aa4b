"""The shared SQLite opener: a damaged file raises and leaves no connection open."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from carqa.index import sqlite as index_sqlite
from carqa.index.sqlite import SQLiteFile, connect

SCHEMA = "CREATE TABLE IF NOT EXISTS items (id INTEGER PRIMARY KEY, text TEXT NOT NULL);"


def _record_connections(monkeypatch: pytest.MonkeyPatch) -> list[sqlite3.Connection]:
    opened: list[sqlite3.Connection] = []
    real_connect = sqlite3.connect

    def recording_connect(*args: object, **kwargs: object) -> sqlite3.Connection:
        conn = real_connect(*args, **kwargs)  # type: ignore[arg-type]
        opened.append(conn)
        return conn

    monkeypatch.setattr(index_sqlite.sqlite3, "connect", recording_connect)
    return opened


def _is_closed(conn: sqlite3.Connection) -> bool:
    try:
        conn.execute("SELECT 1")
    except sqlite3.ProgrammingError:
        return True
    return False


def test_connect_sets_pragmas_and_creates_the_schema(tmp_path: Path) -> None:
    conn = connect(tmp_path / "a.sqlite", SCHEMA, pragmas=("user_version = 7",))
    try:
        assert conn.execute("PRAGMA user_version").fetchone() == (7,)
        conn.execute("INSERT INTO items (text) VALUES ('x')")
    finally:
        conn.close()


def test_a_damaged_file_raises_and_leaves_no_connection_open(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    damaged = tmp_path / "damaged.sqlite"
    damaged.write_bytes(b"this is not an SQLite database, only some bytes " * 200)
    opened = _record_connections(monkeypatch)

    with pytest.raises(sqlite3.DatabaseError):
        connect(damaged, SCHEMA)

    assert len(opened) == 1
    assert _is_closed(opened[0])


def test_a_failing_schema_closes_the_connection(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    opened = _record_connections(monkeypatch)

    with pytest.raises(sqlite3.OperationalError):
        connect(tmp_path / "b.sqlite", "CREATE TABLE broken (")

    assert _is_closed(opened[0])


def test_leaving_a_with_block_closes_the_file(tmp_path: Path) -> None:
    class Items(SQLiteFile):
        def __init__(self, path: Path) -> None:
            self._conn = connect(path, SCHEMA)

    with Items(tmp_path / "c.sqlite") as items:
        conn = items._conn
        assert not _is_closed(conn)
    assert _is_closed(conn)
