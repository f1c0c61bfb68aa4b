"""Chat sessions in SQLite (by default ``<index_dir>/sessions.sqlite``), with expiry.

A session is an id and its turns (the user's message, the standalone query it was condensed
into, the conversation's topic at that turn, the answer, and the sentences it cited with their
papers: the conversation's focus, see :mod:`qa.focus`). Sessions live beside the index
(or at ``CARQA_SESSIONS_PATH``), not inside a build, so they survive rebuilds. A session
unused for ``ttl_seconds`` is expired: it reads as unknown, and expired rows are deleted
lazily (at most once a minute). Within the expiry time the number of sessions is capped
(``max_sessions``): creating one beyond it deletes the least recently used ones, so a client
creating sessions in a loop cannot grow the file without bound either. When the file cannot
be written (a read-only index directory), :func:`open_or_in_memory` gives the same store in
memory instead: chat keeps working, and its sessions end with the process.

One connection guarded by a lock: the HTTP API calls in from several worker threads, and
SQLite's own locking (WAL mode) covers other processes.

Bounds: a session keeps its last ``max_turns`` turns (older ones are deleted as new ones come),
and the space of deleted sessions is handed back to the file system (incremental vacuum after
each purge), so the file does not only grow. The file is checked before every write: deleted
or replaced while the server runs (say by a clean-up job), the store would otherwise go on
writing into a file no one can open again, and lose every session at the next restart; it is
recreated instead (the old sessions are gone, new ones are kept), and logged.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from carqa.settings import SESSIONS_FILE

PURGE_EVERY_SECONDS = 60.0
DEFAULT_MAX_SESSIONS = 10_000
DEFAULT_MAX_TURNS = 50

logger = logging.getLogger("carqa.qa.sessions")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS sessions (
    id TEXT PRIMARY KEY,
    created REAL NOT NULL,
    updated REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS turns (
    session_id TEXT NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
    seq INTEGER NOT NULL,
    message TEXT NOT NULL,
    query TEXT NOT NULL,
    answer TEXT NOT NULL,
    abstained INTEGER NOT NULL,
    created REAL NOT NULL,
    topic TEXT,
    cited TEXT,
    PRIMARY KEY (session_id, seq)
);
CREATE INDEX IF NOT EXISTS sessions_updated ON sessions(updated);
"""


ADDED_COLUMNS = {"topic": "TEXT", "cited": "TEXT"}
"""Columns of ``turns`` that sessions files written by earlier versions lack: added on open."""


@dataclass(frozen=True)
class Turn:
    """One exchange: what the user wrote, the standalone query we searched, our answer, the
    conversation's topic (what the next follow-up attaches to; None in turns recorded before
    topics were) and ``cited``: the (pmid, sentence) pairs the conversation is about after this
    turn (what its answer cited; an abstention keeps the earlier turn's; empty in turns
    recorded before they were kept)."""

    message: str
    query: str
    answer: str
    abstained: bool
    created: float
    topic: str | None = None
    cited: tuple[tuple[str, str], ...] = field(default=())

    @property
    def focus(self) -> list[str]:
        """The papers the conversation is about after this turn, the one cited first first."""
        return list(dict.fromkeys(pmid for pmid, _ in self.cited))


def _dump_cited(cited: tuple[tuple[str, str], ...] | list[tuple[str, str]]) -> str | None:
    return json.dumps([[pmid, text] for pmid, text in cited]) if cited else None


def _load_cited(value: str | None) -> tuple[tuple[str, str], ...]:
    """The stored pairs; a value that does not read as such (a hand-edited file) is none."""
    if not value:
        return ()
    try:
        pairs = json.loads(value)
        return tuple((str(pmid), str(text)) for pmid, text in pairs)
    except (ValueError, TypeError):
        return ()


class SessionStore:
    """Sessions with expiry. ``clock`` is injectable so expiry can be tested without sleeping.

    ``path`` None keeps the sessions in memory: the same store, lost when the process ends
    (see :func:`open_or_in_memory`)."""

    def __init__(
        self,
        path: Path | None,
        *,
        ttl_seconds: int = 24 * 3600,
        max_sessions: int = DEFAULT_MAX_SESSIONS,
        max_turns: int = DEFAULT_MAX_TURNS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if max_sessions < 1:
            raise ValueError(f"max_sessions must be at least 1, not {max_sessions}")
        if max_turns < 1:
            raise ValueError(f"max_turns must be at least 1, not {max_turns}")
        self.path = Path(path) if path is not None else None
        self.ttl_seconds = ttl_seconds
        self.max_sessions = max_sessions
        self.max_turns = max_turns
        self._clock = clock
        self._lock = threading.Lock()
        self._last_purge = 0.0
        self._conn, self._file_id = self._connect(self.path)

    def _connect(self, path: Path | None) -> tuple[sqlite3.Connection, tuple[int, int] | None]:
        """A connection with the schema in place, and the file's identity (device, inode)."""
        if path is None:
            conn = sqlite3.connect(":memory:", check_same_thread=False)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(path, check_same_thread=False, timeout=30)
        self._conn = conn
        try:
            if path is not None:
                # Before any table exists (a new file) this takes effect at once; an older
                # file keeps its mode, and its purges just do not shrink it.
                conn.execute("PRAGMA auto_vacuum=INCREMENTAL")
                conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA foreign_keys=ON")
            with conn:
                conn.executescript(_SCHEMA)
            self._add_columns()
            self._check_writable()
        except BaseException:
            conn.close()
            raise
        return conn, _file_id(path)

    @property
    def persistent(self) -> bool:
        """Whether sessions are kept in a file (and so survive a restart): false in memory,
        and false while the file has been deleted or replaced (the next write recreates it)."""
        return self.path is not None and _file_id(self.path) == self._file_id

    def _ensure_file(self) -> None:
        """Before a write (lock held): recreate the database if its file was deleted or
        replaced, or, when that fails, go on in memory (and say so)."""
        if self.path is None or _file_id(self.path) == self._file_id:
            return
        logger.warning(
            "the chat sessions database %s was deleted or replaced while serving: recreating "
            "it (the sessions it held are lost)",
            self.path,
        )
        self._conn.close()
        try:
            self._conn, self._file_id = self._connect(self.path)
        except (sqlite3.Error, OSError) as error:
            logger.error(
                "cannot recreate the chat sessions database %s (%s): chat sessions are kept "
                "in memory and will not survive a restart",
                self.path,
                error,
            )
            self.path = None
            self._conn, self._file_id = self._connect(None)

    def _check_writable(self) -> None:
        """Commit a write (a row added and removed). SQLite opens a file it may only read, and
        reading works: without this check a read-only sessions file would fail the first chat
        turn, long after start-up, where the caller could still have chosen another store."""
        with self._conn:
            self._conn.execute("INSERT OR REPLACE INTO sessions VALUES ('', 0, 0)")
            self._conn.execute("DELETE FROM sessions WHERE id = ''")

    def _add_columns(self) -> None:
        """Sessions files written before turns had a topic or kept what they cited get the
        columns (``ADDED_COLUMNS``; NULL in their old turns, which then read as having no
        topic or focus). Adding a nullable column rewrites no row, and each is its own
        transaction; another process may add one at the same moment: that is fine."""
        columns = {row[1] for row in self._conn.execute("PRAGMA table_info(turns)")}
        for name, kind in ADDED_COLUMNS.items():
            if name in columns:
                continue
            try:
                with self._conn:
                    self._conn.execute(f"ALTER TABLE turns ADD COLUMN {name} {kind}")
            except sqlite3.OperationalError as error:
                if "duplicate column" not in str(error):
                    raise

    @classmethod
    def open(
        cls,
        index_dir: Path,
        *,
        ttl_seconds: int = 24 * 3600,
        max_sessions: int = DEFAULT_MAX_SESSIONS,
    ) -> SessionStore:
        return cls(
            Path(index_dir) / SESSIONS_FILE, ttl_seconds=ttl_seconds, max_sessions=max_sessions
        )

    def _alive_since(self) -> float:
        return self._clock() - self.ttl_seconds

    def create(self) -> str:
        """A new, empty session; its id is unguessable (URL-safe random). Beyond
        ``max_sessions``, the least recently used sessions are deleted to make room."""
        session_id = secrets.token_urlsafe(16)
        now = self._clock()
        with self._lock:
            self._ensure_file()
            with self._conn:
                self._conn.execute(
                    "INSERT INTO sessions (id, created, updated) VALUES (?, ?, ?)",
                    (session_id, now, now),
                )
                self._evict_beyond_cap(keep=session_id)
        self._maybe_purge()
        return session_id

    def _evict_beyond_cap(self, *, keep: str) -> None:
        """Delete the least recently used sessions (``updated``; their turns go by cascade)
        until ``max_sessions`` remain, never ``keep``, the session being created. Expired
        sessions are the least recently used, so they go first. Called inside the caller's
        transaction, with the lock held."""
        self._conn.execute(
            "DELETE FROM sessions WHERE id IN ("
            " SELECT id FROM sessions WHERE id != ?"
            " ORDER BY updated DESC, rowid DESC LIMIT -1 OFFSET ?)",
            (keep, self.max_sessions - 1),
        )

    def exists(self, session_id: str) -> bool:
        """Whether ``session_id`` is a live (known, unexpired) session."""
        with self._lock:
            row = self._conn.execute(
                "SELECT 1 FROM sessions WHERE id = ? AND updated >= ?",
                (session_id, self._alive_since()),
            ).fetchone()
        return row is not None

    def history(self, session_id: str, *, limit: int = 10) -> list[Turn]:
        """The last ``limit`` turns, oldest first (empty for an unknown or expired session)."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT t.message, t.query, t.answer, t.abstained, t.created, t.topic, t.cited"
                " FROM turns t"
                " JOIN sessions s ON s.id = t.session_id"
                " WHERE t.session_id = ? AND s.updated >= ?"
                " ORDER BY t.seq DESC LIMIT ?",
                (session_id, self._alive_since(), limit),
            ).fetchall()
        return [
            Turn(m, q, a, bool(ab), c, t, _load_cited(ci))
            for m, q, a, ab, c, t, ci in reversed(rows)
        ]

    def append(
        self,
        session_id: str,
        *,
        message: str,
        query: str,
        answer: str,
        abstained: bool,
        topic: str | None = None,
        cited: tuple[tuple[str, str], ...] | list[tuple[str, str]] = (),
    ) -> None:
        """Record a turn and keep the session alive (creates the row if it was purged or
        evicted meanwhile: that counts as a new session, within ``max_sessions``). Turns
        beyond the last ``max_turns`` are deleted."""
        now = self._clock()
        with self._lock:
            self._ensure_file()
            self._append(session_id, now, message, query, answer, abstained, topic, cited)

    def _append(
        self,
        session_id: str,
        now: float,
        message: str,
        query: str,
        answer: str,
        abstained: bool,
        topic: str | None,
        cited: tuple[tuple[str, str], ...] | list[tuple[str, str]],
    ) -> None:
        with self._conn:
            renewed = self._conn.execute(
                "UPDATE sessions SET updated = ? WHERE id = ?", (now, session_id)
            ).rowcount
            if not renewed:
                self._conn.execute(
                    "INSERT INTO sessions (id, created, updated) VALUES (?, ?, ?)",
                    (session_id, now, now),
                )
                self._evict_beyond_cap(keep=session_id)
            (seq,) = self._conn.execute(
                "SELECT COALESCE(MAX(seq), 0) + 1 FROM turns WHERE session_id = ?",
                (session_id,),
            ).fetchone()
            self._conn.execute(
                "INSERT INTO turns"
                " (session_id, seq, message, query, answer, abstained, created, topic, cited)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    session_id,
                    seq,
                    message,
                    query,
                    answer,
                    int(abstained),
                    now,
                    topic,
                    _dump_cited(cited),
                ),
            )
            self._conn.execute(
                "DELETE FROM turns WHERE session_id = ? AND seq <= ?",
                (session_id, seq - self.max_turns),
            )

    def delete(self, session_id: str) -> None:
        with self._lock:
            self._ensure_file()
            with self._conn:
                self._conn.execute("DELETE FROM sessions WHERE id = ?", (session_id,))

    def purge_expired(self) -> int:
        """Delete expired sessions (and their turns), and hand the space they took back to
        the file system; returns how many."""
        with self._lock:
            self._ensure_file()
            with self._conn:
                cursor = self._conn.execute(
                    "DELETE FROM sessions WHERE updated < ?", (self._alive_since(),)
                )
            self._last_purge = self._clock()
            if cursor.rowcount:
                # executescript steps the pragma to the end (execute frees one page only).
                self._conn.executescript("PRAGMA incremental_vacuum;")
            return cursor.rowcount

    def _maybe_purge(self) -> None:
        if self._clock() - self._last_purge >= PURGE_EVERY_SECONDS:
            self.purge_expired()

    def count(self) -> int:
        with self._lock:
            (n,) = self._conn.execute(
                "SELECT COUNT(*) FROM sessions WHERE updated >= ?", (self._alive_since(),)
            ).fetchone()
        return int(n)

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def __enter__(self) -> SessionStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _file_id(path: Path | None) -> tuple[int, int] | None:
    """The file's (device, inode), or None when there is no file there."""
    if path is None:
        return None
    try:
        stat = os.stat(path)
    except OSError:
        return None
    return stat.st_dev, stat.st_ino


def open_or_in_memory(
    path: Path,
    *,
    ttl_seconds: int = 24 * 3600,
    max_sessions: int = DEFAULT_MAX_SESSIONS,
    max_turns: int = DEFAULT_MAX_TURNS,
) -> tuple[SessionStore, Exception | None]:
    """The store in ``path``, or, when that cannot be opened for writing (a read-only folder
    or file, a parent that is not a folder, a damaged file), an in-memory store and the reason.

    Chat is worth keeping when sessions cannot be saved: the server still answers, and
    conversations only lose their history at a restart. The caller says so to the user."""
    limits = {"ttl_seconds": ttl_seconds, "max_sessions": max_sessions, "max_turns": max_turns}
    try:
        return SessionStore(path, **limits), None
    except (sqlite3.Error, OSError) as error:
        return SessionStore(None, **limits), error
