"""Opening a build's vector files for :class:`carqa.index.search.reader.Index`, and checking
that they fit its metadata and manifest.

Memory-mapped where the format allows it: ``sentences.npy`` (``np.load(mmap_mode="r")``) and
an IVF FAISS index (``IO_FLAG_MMAP``). FAISS reads a flat index into private memory, so a flat
chunk or sentence index is left for :class:`~carqa.index.search.reader.Index` to read on first
use (answering does not use them).
"""

from __future__ import annotations

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
