"""A persistent cache of embeddings keyed by (model id, sha256 of the text).

Why: embedding is the only expensive step of a build. With this cache, rebuilding an unchanged
corpus embeds nothing, adding papers embeds only their new chunks and sentences, and a build
killed halfway resumes where it stopped (vectors are committed batch by batch).

Vectors are stored as raw little-endian float32 bytes and read back with ``np.frombuffer`` —
no pickle. The file is ``<index_dir>/cache/embeddings.sqlite``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
from carqa.index.sqlite import SQLiteFile, connect

_SCHEMA = """
CREATE TABLE IF NOT EXISTS embeddings (
    model_id  TEXT NOT NULL,
    text_hash BLOB NOT NULL,
    dim       INTEGER NOT NULL,
    vector    BLOB NOT NULL,
    PRIMARY KEY (model_id, text_hash)
) WITHOUT ROWID;
"""
_LOOKUP_BATCH = 500  # stays under SQLite's bound-parameter limit


def text_key(text: str) -> bytes:
    return hashlib.sha256(text.encode("utf-8")).digest()


class EmbeddingCache(SQLiteFile):
    """Get and put vectors for one model. Writes are committed per :meth:`put` call."""

    def __init__(self, path: Path, model_id: str, dim: int) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.model_id = model_id
        self.dim = dim
        self._conn = connect(
            self.path, _SCHEMA, pragmas=["journal_mode=WAL", "synchronous=NORMAL"], timeout=30
        )

    def get_many(self, texts: Sequence[str]) -> dict[int, np.ndarray]:
        """Cached vectors for ``texts``, by position in ``texts`` (misses are absent)."""
        keys = [text_key(t) for t in texts]
        positions: dict[bytes, list[int]] = {}
        for i, key in enumerate(keys):
            positions.setdefault(key, []).append(i)
        found: dict[int, np.ndarray] = {}
        unique = list(positions)
        for begin in range(0, len(unique), _LOOKUP_BATCH):
            batch = unique[begin : begin + _LOOKUP_BATCH]
            marks = ",".join("?" * len(batch))
            rows = self._conn.execute(
                f"SELECT text_hash, vector FROM embeddings WHERE model_id = ? AND dim = ?"
                f" AND text_hash IN ({marks})",
                (self.model_id, self.dim, *batch),
            )
            for key, blob in rows:
                vector = np.frombuffer(blob, dtype="<f4")
                if vector.shape[0] != self.dim:
                    continue  # damaged row: treat as a miss, it will be overwritten
                for i in positions[bytes(key)]:
                    found[i] = vector
        return found

    def put(self, texts: Iterable[str], vectors: np.ndarray) -> None:
        """Store ``vectors`` (one row per text) in one transaction."""
        rows = [
            (self.model_id, text_key(text), self.dim, np.asarray(v, dtype="<f4").tobytes())
            for text, v in zip(texts, vectors, strict=True)
        ]
        with self._conn:
            self._conn.executemany(
                "INSERT OR REPLACE INTO embeddings (model_id, text_hash, dim, vector)"
                " VALUES (?, ?, ?, ?)",
                rows,
            )

    def count(self) -> int:
        row = self._conn.execute(
            "SELECT count(*) FROM embeddings WHERE model_id = ?", (self.model_id,)
        ).fetchone()
        return int(row[0])
