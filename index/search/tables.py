"""Papers, sections, chunks and sentences of a build, read from ``meta.sqlite`` when asked for.

Why not load them: one Python object per paper and per sentence is what made an opened index
grow with the corpus (about 1 GB per 100k papers). A question reads the rows of a few papers;
the tables here read exactly those (SQLite finds a row by its key in microseconds) and keep the
most recent ones in a small cache. What the ranking needs for *every* paper or sentence (years,
flags, which paper owns a sentence) comes as flat NumPy columns, read in one pass when the
index is opened.

The file is opened read-only and immutable; each thread gets its own connection (the API
answers on several threads; SQLite connections are not shared across them).
"""

from __future__ import annotations

import json
import sqlite3
import threading
from bisect import bisect_left
from collections.abc import Callable, Iterator, Mapping, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any, Generic, TypeVar

import numpy as np
from carqa.index.corpus.models import Section

ROW_CACHE = 8192
"""Rows (papers, sentences, chunks each) kept after a question read them."""
BATCH = 20_000

T = TypeVar("T")


class Meta:
    """Thread-local read-only connections to one ``meta.sqlite``."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._local = threading.local()
        self.conn()  # fail now on an unreadable file

    def conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            uri = f"file:{self.path}?mode=ro&immutable=1"
            conn = self._local.conn = sqlite3.connect(uri, uri=True, check_same_thread=False)
        return conn

    def rows(self, sql: str, args: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
        """Every row of ``sql``, fetched in batches (a full scan never holds the table)."""
        cursor = self.conn().cursor()
        cursor.execute(sql, args)
        while batch := cursor.fetchmany(BATCH):
            yield from batch

    def has_column(self, table: str, column: str) -> bool:
        return any(row[1] == column for row in self.rows(f"PRAGMA table_info({table})"))


class PaperTable(Mapping[str, Any]):
    """pmid → paper row (``make`` builds the row object), in sorted-pmid order."""

    def __init__(self, meta: Meta, columns: str, make: Callable[[tuple[Any, ...]], Any]) -> None:
        self._meta = meta
        self._columns = columns
        self._make = make
        self.pmids: list[str] = [row[0] for row in meta.rows("SELECT pmid FROM papers")]
        self.pmids.sort()
        self._get = lru_cache(maxsize=ROW_CACHE)(self._read)

    def _read(self, pmid: str) -> Any:
        found = (
            self._meta.conn()
            .execute(f"SELECT {self._columns} FROM papers WHERE pmid = ?", (pmid,))
            .fetchone()
        )
        if found is None:
            raise KeyError(pmid)
        return self._make(found)

    def __getitem__(self, pmid: str) -> Any:
        if pmid not in self:
            raise KeyError(pmid)
        return self._get(pmid)

    def __contains__(self, pmid: object) -> bool:
        if not isinstance(pmid, str):
            return False
        at = bisect_left(self.pmids, pmid)
        return at < len(self.pmids) and self.pmids[at] == pmid

    def __iter__(self) -> Iterator[str]:
        return iter(self.pmids)

    def __len__(self) -> int:
        return len(self.pmids)

    def values(self) -> Any:  # type: ignore[override]
        """Every paper, in pmid order, read in one pass (not one query per paper)."""
        return _Scan(
            lambda: self._meta.rows(f"SELECT {self._columns} FROM papers ORDER BY pmid"),
            self._make,
            len(self),
        )

    def columns(self) -> dict[str, np.ndarray]:
        """``year`` (int64, -1 without one), ``is_seed`` and ``cited_by_seed`` (bool) of every
        paper, in sorted-pmid order."""
        n = len(self.pmids)
        years = np.full(n, -1, dtype=np.int64)
        seed, cited = np.zeros(n, dtype=bool), np.zeros(n, dtype=bool)
        sql = "SELECT year, is_seed, cited_by_seed FROM papers ORDER BY pmid"
        for i, (year, is_seed, is_cited) in enumerate(self._meta.rows(sql)):
            years[i] = year if year else -1
            seed[i], cited[i] = bool(is_seed), bool(is_cited)
        return {"year": years, "is_seed": seed, "cited_by_seed": cited}


class _Scan:
    """An iterable over a full table scan (each iteration starts a new one)."""

    def __init__(self, rows: Callable[[], Iterator[tuple[Any, ...]]], make: Callable, n: int):
        self._rows, self._make, self._n = rows, make, n

    def __iter__(self) -> Iterator[Any]:
        return (self._make(row) for row in self._rows())

    def __len__(self) -> int:
        return self._n


class RowTable(Sequence[T], Generic[T]):
    """Rows of a table with ids ``0..n-1`` (chunks, sentences), by id, read when asked for."""

    def __init__(
        self, meta: Meta, table: str, columns: str, make: Callable[..., T], count: int
    ) -> None:
        self._meta = meta
        self._table = table
        self._columns = columns
        self._make = make
        self._count = count
        self._get = lru_cache(maxsize=ROW_CACHE)(self._read)

    def _read(self, row_id: int) -> T:
        found = (
            self._meta.conn()
            .execute(f"SELECT {self._columns} FROM {self._table} WHERE id = ?", (row_id,))
            .fetchone()
        )
        if found is None:
            raise IndexError(row_id)
        return self._make(*found)

    def __len__(self) -> int:
        return self._count

    def __getitem__(self, key: Any) -> Any:
        if isinstance(key, slice):
            start, stop, step = key.indices(self._count)
            if step != 1:
                return [self[i] for i in range(start, stop, step)]
            sql = f"SELECT {self._columns} FROM {self._table} WHERE id >= ? AND id < ? ORDER BY id"
            return [self._make(*row) for row in self._meta.rows(sql, (start, stop))]
        i = int(key)
        if i < 0:
            i += self._count
        if not 0 <= i < self._count:
            raise IndexError(key)
        return self._get(i)

    def __iter__(self) -> Iterator[T]:
        sql = f"SELECT {self._columns} FROM {self._table} ORDER BY id"
        return (self._make(*row) for row in self._meta.rows(sql))

    def column(self, name: str) -> Iterator[Any]:
        """One column of every row, in id order."""
        return (row[0] for row in self._meta.rows(f"SELECT {name} FROM {self._table} ORDER BY id"))

    def check_ids(self) -> None:
        """Ids must be ``0..n-1`` (rows of the vector files by position)."""
        found = (
            self._meta.conn()
            .execute(f"SELECT COUNT(*), MIN(id), MAX(id) FROM {self._table}")
            .fetchone()
        )
        if found[0] != self._count or (found[0] and (found[1], found[2]) != (0, found[0] - 1)):
            raise ValueError(f"{self._table} ids are not 0..n-1")


def sections_of(meta: Meta, pmid: str) -> list[Section]:
    """The abstract sections of ``pmid`` in order."""
    rows = meta.conn().execute(
        "SELECT label, category, text FROM sections WHERE pmid = ? ORDER BY position", (pmid,)
    )
    return [Section(text=text, label=label, category=category) for label, category, text in rows]


def json_list(text: str | None) -> list[str]:
    return json.loads(text) if text else []
