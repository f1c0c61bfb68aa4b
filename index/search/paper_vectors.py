"""One vector per paper (the centroid of its sentence vectors) and an approximate index over them.

Retrieval picks its candidate papers by similarity to these centroids
(:mod:`carqa.qa.candidates`). Computing them at open time costs a pass over every sentence
vector and a private copy of a (papers × dim) matrix per process; written at build time they are
read memory-mapped, so processes serving the same index share the pages and a question only
touches the rows of its candidates.

Files (in the build folder, checksummed by the manifest like every other):

- ``papers.npy``: float32 (papers × dim), L2-normalised, row *i* = the *i*-th pmid in sorted
  (string) order. A paper without sentences (no abstract) gets its title vector: the vector of
  its first chunk, which holds the title only.
- ``papers.faiss``: approximate inner-product index over those rows, ids = row numbers. HNSW
  below :data:`IVF_FROM` papers (best recall per microsecond, small enough to build in
  seconds), IVF with float16 codes above (trained and filled in under a minute and a half at a
  million papers, where HNSW takes many). Either is opened memory-mapped.

The IVF paper index has more lists than the chunk index (4·√n rather than √n: 4,000 at a million
papers) because it is searched on every question: a question then scans ~0.8 % of the papers
(32 lists of ~250) instead of 2.4 % (24 of ~1,000), at a better recall. Measured at a million
papers (BioASQ texts replicated), the search cost 1.5 ms instead of 5.7 ms; the extra lists cost
training time (k-means over 40 samples a list: 160,000 samples at a million papers).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import faiss
import numpy as np
from carqa.index.search import vectors as vector_index

PAPERS_NPY = "papers.npy"
PAPERS_FAISS = "papers.faiss"
IVF_FROM = 200_000
"""Papers from which the paper index is IVF rather than HNSW."""
HNSW_M = 32
HNSW_EF_CONSTRUCTION = 80
HNSW_EF_SEARCH = 256
IVF_NPROBE = 32
"""Lists an IVF paper index searches (set when it is opened); candidates are over-fetched and
re-scored exactly, so a near miss at the cut costs little."""
IVF_TRAIN_PER_LIST = 40
"""Training samples per list (FAISS's k-means wants at least 39)."""


def nlist_for(n: int) -> int:
    """IVF lists of the paper index: about 4·√n, between 16 and 16,384 (see the module doc)."""
    return min(16_384, max(16, 4 * int(math.sqrt(n))))


def centroids(
    pmids: Sequence[str],
    sentence_pmids: Sequence[str],
    sentence_vectors: np.ndarray,
    title_vectors: dict[str, np.ndarray],
) -> np.ndarray:
    """(len(pmids), dim) normalised centroids, row i for ``pmids[i]`` (``pmids`` sorted).

    ``title_vectors``: pmid → title vector, used for papers with no sentence."""
    position = {pmid: i for i, pmid in enumerate(pmids)}
    dim = sentence_vectors.shape[1] if sentence_vectors.ndim == 2 else 0
    out = np.zeros((len(pmids), dim), np.float32)
    owner = np.array([position.get(p, -1) for p in sentence_pmids], dtype=np.int64)
    valid = owner >= 0
    if valid.any():
        # Rows sorted by paper and summed per run (np.add.at is ~10x slower on millions of
        # rows), in blocks so the temporary copy stays small.
        order = np.flatnonzero(valid)[np.argsort(owner[valid], kind="stable")]
        for begin in range(0, len(order), 1 << 17):
            block = order[begin : begin + (1 << 17)]
            runs = owner[block]
            starts = np.flatnonzero(np.r_[True, runs[1:] != runs[:-1]])
            rows = np.asarray(sentence_vectors[block], np.float32)
            out[runs[starts]] += np.add.reduceat(rows, starts, axis=0)
    has_rows = np.zeros(len(pmids), dtype=bool)
    has_rows[owner[valid]] = True
    for pmid, vector in title_vectors.items():
        i = position.get(pmid)
        if i is not None and not has_rows[i]:
            out[i] = vector
    norms = np.linalg.norm(out, axis=1, keepdims=True)
    out /= np.where(norms > 0, norms, 1.0)
    return out


def build_ann(matrix: np.ndarray, *, kind: str = "auto") -> faiss.Index:
    """The approximate index over paper centroids (see the module doc for the choice)."""
    matrix = np.ascontiguousarray(matrix, dtype=np.float32)
    n, dim = matrix.shape
    if kind == "auto":
        kind = "ivf" if n >= IVF_FROM else "hnsw"
    if kind == "hnsw":
        index = faiss.IndexHNSWFlat(dim, HNSW_M, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = HNSW_EF_CONSTRUCTION
        index.hnsw.efSearch = HNSW_EF_SEARCH
        if n:
            index.add(matrix)
        return index
    nlist = nlist_for(n)
    index = vector_index.new_ivf(dim, nlist)
    sample = vector_index.sample_rows(matrix, max(65_536, IVF_TRAIN_PER_LIST * nlist))
    vector_index.train_ivf(index, sample)
    index.add_with_ids(matrix, np.arange(n, dtype=np.int64))
    faiss.extract_index_ivf(index).nprobe = IVF_NPROBE
    return index


def kind_of(index: faiss.Index) -> str:
    return "hnsw" if hasattr(faiss.downcast_index(index), "hnsw") else vector_index.kind_of(index)


def write(folder: Path, matrix: np.ndarray) -> dict[str, object]:
    """Write ``papers.npy`` and ``papers.faiss`` into a build folder; returns the manifest entry
    (kind, count)."""
    folder = Path(folder)
    np.save(folder / PAPERS_NPY, np.ascontiguousarray(matrix, np.float32))
    index = build_ann(matrix)
    vector_index.write(index, folder / PAPERS_FAISS)
    return {"kind": kind_of(index), "count": int(index.ntotal)}


def read(folder: Path) -> tuple[np.ndarray, faiss.Index] | None:
    """The memory-mapped centroids and paper index of a build, or None for a build without
    them (built before they existed: the retriever then computes them)."""
    folder = Path(folder)
    if not (folder / PAPERS_NPY).is_file() or not (folder / PAPERS_FAISS).is_file():
        return None
    matrix = np.load(folder / PAPERS_NPY, mmap_mode="r", allow_pickle=False)
    index = vector_index.read(folder / PAPERS_FAISS, mmap=True)
    if kind_of(index) == "hnsw":
        faiss.downcast_index(index).hnsw.efSearch = HNSW_EF_SEARCH
    else:
        faiss.extract_index_ivf(index).nprobe = IVF_NPROBE
    return matrix, index


def from_build_rows(
    pmids: Sequence[str],
    sentence_pmids: Sequence[str],
    sentence_vectors: np.ndarray,
    chunk_rows: Sequence[tuple[object, ...]],
    chunk_vectors: np.ndarray,
) -> np.ndarray:
    """:func:`centroids` from what a build has in hand: chunk rows are ``(id, pmid, ...)`` as
    ``meta.sqlite`` stores them; a paper's first chunk stands in when it has no sentence."""
    titles: dict[str, np.ndarray] = {}
    for row in chunk_rows:
        pmid = str(row[1])
        if pmid not in titles:
            titles[pmid] = chunk_vectors[int(row[0])]  # type: ignore[call-overload]
    return centroids(sorted(pmids), sentence_pmids, sentence_vectors, titles)
