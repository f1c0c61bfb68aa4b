"""The index's own SQLite files: one way to open them, one way to close them.

The corpus store (``corpus.sqlite``, :mod:`carqa.index.corpus.store`) and the embedding cache
(``cache/embeddings.sqlite``, :mod:`carqa.index.search.embedding_cache`) are each one SQLite
file owned by one object. Both open the file the same way (connect, set their pragmas, create
their tables) and both close it when a ``with`` block ends; this module is that shared part, so
a fix to it (a connection left open when the schema fails, say) lands in both. It sits in
:mod:`carqa.index` itself because ``corpus`` and ``search`` both use it and neither may import
the other's internals for it.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Self


def connect(
    path: Path, schema: str, *, pragmas: Sequence[str] = (), timeout: float = 5.0
) -> sqlite3.Connection:
    """A connection to ``path`` with ``pragmas`` set (``"foreign_keys = ON"``, ...) and
    ``schema`` (``CREATE ... IF NOT EXISTS`` statements) run. The connection is closed again
    if either fails, so a damaged file raises :class:`sqlite3.DatabaseError` and holds nothing
    open."""
    conn = sqlite3.connect(path, timeout=timeout)
    try:
        for pragma in pragmas:
            conn.execute(f"PRAGMA {pragma}")
        conn.executescript(schema)
    except BaseException:
        conn.close()
        raise
    return conn


class SQLiteFile:
    """An object that owns one SQLite connection (``_conn``, set by the subclass with
    :func:`connect`): :meth:`close` closes it, and so does leaving a ``with`` block.

    Each write method of a subclass is meant to be one transaction (``with self._conn:``).
    Not shared across threads: open one per thread.
    """

    _conn: sqlite3.Connection

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
