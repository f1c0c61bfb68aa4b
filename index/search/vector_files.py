"""Opening a build's vector files for :class:`carqa.index.search.reader.Index`, and checking
that they fit its metadata and manifest.

Memory-mapped where the format allows it: ``sentences.npy`` (``np.load(mmap_mode="r")``) and
an IVF FAISS index (``IO_FLAG_MMAP``). FAISS reads a flat index into private memory, so a flat
chunk or sentence index is left for :class:`~carqa.index.search.reader.Index` to read on first
use (answering does not use them).
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any

import numpy as np
from carqa.index.search import vectors as vector_index
from carqa.index.search.layout import SENTENCES_NPY

from carqa.errors import IndexCorrupt, IndexMismatch


def read_vectors(path: Path, manifest: dict[str, Any], name: str) -> Any:
    """An approximate (IVF) FAISS index memory-mapped now; None for a flat one, which
    :class:`Index` reads on first use (FAISS copies a flat index into memory)."""
    kind = manifest.get("vectors", {}).get(name, {}).get("kind")
    if kind == "flat" and isinstance(manifest["vectors"][name].get("count"), int):
        return None
    if kind == "ivf":
        return vector_index.read(path, mmap=True)
    return vector_index.read(path)


def sentence_matrix(folder: Path, sentence_index: Any, hint: str) -> np.ndarray:
    """Sentence vectors by id: sentences.npy memory-mapped, else (a build that has none) a
    view of its flat FAISS index."""
    if sentence_index is not None:
        matrix = vector_index.flat_vectors(sentence_index)
        if matrix is not None:
            return matrix
    try:
        return np.load(folder / SENTENCES_NPY, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError) as error:
        raise IndexCorrupt(f"{folder / SENTENCES_NPY} is unreadable: {error}", hint=hint) from error


def _count(index: Any, manifest: dict[str, Any], name: str) -> int:
    """Vectors in an index: its own count when it is open, else the manifest's."""
    if index is not None:
        return int(index.ntotal)
    return int(manifest["vectors"][name]["count"])


def check_papers(
    folder: Path,
    manifest: dict[str, Any],
    n_papers: int,
    by_paper: tuple[np.ndarray, Any],
    hint: str,
) -> None:
    matrix, ann = by_paper
    dim = manifest["model"].get("dim")
    if matrix.dtype != np.float32 or matrix.shape != (n_papers, dim) or ann.ntotal != n_papers:
        raise IndexCorrupt(
            f"The index at {folder} is inconsistent: paper vectors {matrix.dtype} "
            f"{matrix.shape} and {ann.ntotal} indexed for {n_papers} papers.",
            hint=hint,
        )


def check_shapes(
    folder: Path,
    manifest: dict[str, Any],
    chunks: list[Any],
    sentences: list[Any],
    chunk_index: Any,
    sentence_index: Any,
    matrix: np.ndarray,
    hint: str,
) -> None:
    dim = manifest["model"].get("dim")
    problems = []
    n_chunks = _count(chunk_index, manifest, "chunks")
    if n_chunks != len(chunks):
        problems.append(f"{n_chunks} chunk vectors for {len(chunks)} chunks")
    n_sentences = _count(sentence_index, manifest, "sentences")
    if n_sentences != len(sentences):
        problems.append(f"{n_sentences} sentence vectors for {len(sentences)} sentences")
    if matrix.ndim == 2 and matrix.shape[1] != dim:
        problems.append(f"a {matrix.shape[1]}-d vector index for a {dim}-d model")
    elif matrix.dtype != np.float32 or matrix.shape != (len(sentences), dim):
        problems.append(f"sentence matrix {matrix.dtype} {matrix.shape}")
    for index in (chunk_index, sentence_index):
        if index is not None and index.d != dim:
            problems.append(f"a {index.d}-d vector index for a {dim}-d model")
    if problems:
        error = IndexMismatch if any("-d vector index" in p for p in problems) else IndexCorrupt
        raise error(f"The index at {folder} is inconsistent: {'; '.join(problems)}.", hint=hint)


class RowFile:
    """Rows of a memory-mapped ``.npy`` matrix read with ``pread`` instead of through the mapping.

    Why: a question reads a few hundred random rows (its candidates' sentences and centroids).
    Through a mapping the kernel maps 64 KB around each faulting row (fault-around), so after a
    thousand questions most of a multi-gigabyte file counts in the process's RSS although it
    read a few MB. ``pread`` copies just the rows; the file stays in the page cache, shared.

    Supports what the answer path does with the matrix: ``np.take(rows, ids, axis=0)``,
    ``rows[ids]`` / ``rows[i]``, ``len``, ``shape``, ``dtype``.
    """

    def __init__(self, matrix: np.memmap) -> None:
        self.shape = matrix.shape
        self.dtype = matrix.dtype
        self.ndim = matrix.ndim
        self._offset = int(matrix.offset)
        self._row_bytes = int(matrix.dtype.itemsize * int(np.prod(matrix.shape[1:])))
        self._fd = os.open(str(matrix.filename), os.O_RDONLY)
        self._matrix = matrix  # the mapping stays available for whole-matrix reads

    @classmethod
    def of(cls, matrix: Any) -> Any:
        """A reader over ``matrix`` when it maps a C-ordered 2-d file, else ``matrix`` as an
        array."""
        if (
            isinstance(matrix, np.memmap)
            and matrix.filename
            and matrix.ndim == 2
            and matrix.flags.c_contiguous
        ):
            return cls(matrix)
        return np.asarray(matrix, dtype=np.float32)

    def __len__(self) -> int:
        return int(self.shape[0])

    def take(self, ids: Any) -> np.ndarray:
        wanted = np.asarray(ids, dtype=np.int64).reshape(-1)
        out = np.empty((len(wanted), *self.shape[1:]), dtype=self.dtype)
        if not len(wanted):
            return out
        if wanted.min() < 0 or wanted.max() >= self.shape[0]:
            raise IndexError("row out of range")
        flat = out.reshape(len(wanted), -1).view(np.uint8)
        rows = wanted.tolist()
        # One read per run of consecutive rows: a paper's sentences are consecutive ids.
        begin = 0
        while begin < len(rows):
            end = begin + 1
            while end < len(rows) and rows[end] == rows[end - 1] + 1:
                end += 1
            offset = self._offset + rows[begin] * self._row_bytes
            done = os.preadv(self._fd, [flat[begin:end]], offset)
            if done != (end - begin) * self._row_bytes:
                raise OSError(f"short read of rows {rows[begin]}..{rows[end - 1]}")
            begin = end
        return out

    def __getitem__(self, key: Any) -> np.ndarray:
        if isinstance(key, (int, np.integer)):
            return self.take([int(key) % self.shape[0]])[0]
        if isinstance(key, slice):
            return np.array(self._matrix[key])
        return self.take(key)

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        return np.asarray(self._matrix, dtype=dtype)

    def __array_function__(self, func: Any, types: Any, args: Any, kwargs: Any) -> Any:
        if func is np.take and args and args[0] is self and kwargs.get("axis", 0) == 0:
            ids = args[1] if len(args) > 1 else kwargs["indices"]
            if len(args) <= 2 or args[2] == 0:
                return self.take(ids)
        converted = [np.asarray(a) if a is self else a for a in args]
        return func(*converted, **kwargs)

    def __del__(self) -> None:
        fd = getattr(self, "_fd", None)
        if fd is not None:
            with contextlib.suppress(OSError):
                os.close(fd)
