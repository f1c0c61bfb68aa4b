"""Rows of a memory-mapped matrix read with pread: the same values as through the mapping."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from carqa.index.search.vector_files import RowFile


def test_rows_read_by_pread_equal_the_mapped_rows(tmp_path: Path) -> None:
    matrix = np.random.default_rng(3).standard_normal((50, 8)).astype(np.float32)
    np.save(tmp_path / "m.npy", matrix)
    mapped = np.load(tmp_path / "m.npy", mmap_mode="r")
    rows = RowFile.of(mapped)
    assert isinstance(rows, RowFile) and rows.shape == (50, 8) and len(rows) == 50
    ids = np.array([49, 0, 7, 7, 21])
    np.testing.assert_array_equal(np.take(rows, ids, axis=0), matrix[ids])
    np.testing.assert_array_equal(rows[ids], matrix[ids])
    np.testing.assert_array_equal(rows[3], matrix[3])
    np.testing.assert_array_equal(rows[-1], matrix[-1])
    np.testing.assert_array_equal(np.asarray(rows), matrix)
    assert np.take(rows, np.zeros(0, np.int64), axis=0).shape == (0, 8)
    with pytest.raises(IndexError):
        rows.take([50])


def test_an_array_in_memory_stays_an_array() -> None:
    matrix = np.ones((3, 4), np.float32)
    assert RowFile.of(matrix) is not None and not isinstance(RowFile.of(matrix), RowFile)


def test_consecutive_rows_are_read_in_one_read_each(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A paper's sentences are consecutive rows: one read per run, not per row."""
    import os

    matrix = np.arange(50 * 4, dtype=np.float32).reshape(50, 4)
    np.save(tmp_path / "m.npy", matrix)
    rows = RowFile.of(np.load(tmp_path / "m.npy", mmap_mode="r"))
    reads = []
    real = os.preadv

    def counted(fd: int, buffers: list, offset: int) -> int:
        reads.append(offset)
        return real(fd, buffers, offset)

    monkeypatch.setattr(os, "preadv", counted)
    ids = [10, 11, 12, 13, 30, 31, 2, 47, 48, 49]
    np.testing.assert_array_equal(rows.take(ids), matrix[ids])
    assert len(reads) == 4
