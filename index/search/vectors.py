"""FAISS indexes over normalised vectors: exact for small corpora, approximate for large ones.

Vectors are L2-normalised, so inner product = cosine. Every index is an ``IndexIDMap`` (or an
IVF index, which stores ids itself) whose ids *are* our chunk/sentence ids: search results map
straight to rows of ``meta.sqlite`` with no parallel Python list that could drift.

Below ``ann_threshold`` vectors we use ``IndexFlatIP`` (exact, and fast enough: a few ms for
100k × 384). Above it, an IVF index storing float16 vectors (``IVF{nlist},SQfp16``): half the
size of float32 (1M × 384 in ~0.8 GB), searched with ``nprobe`` 32. Measured on 1M clustered
vectors (``bench/scale.py``): recall@10 0.949 at nprobe 16 and 0.962 at 32 (p50 2.0 / 4.1 ms
on the loaded 2-core machine); 8-bit codes (``SQ8``, 0.4 GB) lose too much (0.928 at 16).
Files are written to a temp name and renamed.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from carqa.settings import Settings

DEFAULT_ANN_THRESHOLD = 200_000
"""Vector count from which the approximate index is used (override: ``CARQA_ANN_THRESHOLD``)."""


@dataclass(frozen=True)
class VectorSettings:
    """How vector indexes are built. Part of the manifest."""

    ann_threshold: int = DEFAULT_ANN_THRESHOLD
    nprobe: int = 32
    train_size: int = 65_536

    def as_dict(self) -> dict[str, Any]:
        return {
            "ann_threshold": self.ann_threshold,
            "nprobe": self.nprobe,
            "train_size": self.train_size,
        }

    @classmethod
    def from_env(cls) -> VectorSettings:
        threshold = Settings.load().ann_threshold
        return cls(ann_threshold=threshold) if threshold else cls()


def nlist_for(n: int) -> int:
    """IVF list count: about √n (1M → 1000), between 16 and 4096. More lists search faster
    but train slower (k-means over ``train_size`` samples); √n keeps a 1M build to a minute."""
    return min(4096, max(16, int(math.sqrt(n))))


def build_index(
    vectors: np.ndarray,
    ids: np.ndarray | None = None,
    *,
    settings: VectorSettings | None = None,
    kind: str = "auto",
) -> faiss.Index:
    """An inner-product index over ``vectors`` (float32, normalised) with ``ids`` (int64,
    default ``0..n-1``). ``kind``: ``"auto"`` (by size), ``"flat"`` or ``"ivf"``."""
    settings = settings or VectorSettings()
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    n, dim = vectors.shape
    ids = np.arange(n, dtype=np.int64) if ids is None else np.ascontiguousarray(ids, np.int64)
    if kind == "auto":
        kind = "ivf" if n >= settings.ann_threshold else "flat"
    if kind == "flat":
        index: faiss.Index = faiss.IndexIDMap(faiss.IndexFlatIP(dim))
        index.add_with_ids(vectors, ids)
        return index
    if kind != "ivf":
        raise ValueError(f"unknown vector index kind {kind!r}")
    index = new_ivf(dim, nlist_for(n))
    train_ivf(index, sample_rows(vectors, settings.train_size))
    index.add_with_ids(vectors, ids)
    faiss.extract_index_ivf(index).nprobe = settings.nprobe
    return index


IVF_ENCODING = "SQfp16"


def new_ivf(dim: int, nlist: int, encoding: str = IVF_ENCODING) -> faiss.Index:
    """An untrained ``IVF{nlist},{encoding}`` inner-product index (the lists store the ids)."""
    return faiss.index_factory(dim, f"IVF{nlist},{encoding}", faiss.METRIC_INNER_PRODUCT)


def train_ivf(index: faiss.Index, sample: np.ndarray) -> None:
    index.train(np.ascontiguousarray(sample, dtype=np.float32))


def sample_rows(vectors: np.ndarray, size: int, seed: int = 0) -> np.ndarray:
    if vectors.shape[0] <= size:
        return vectors
    rows = np.random.default_rng(seed).choice(vectors.shape[0], size=size, replace=False)
    return vectors[np.sort(rows)]


def kind_of(index: faiss.Index) -> str:
    """``"flat"`` or ``"ivf"`` (what :func:`build_index` made)."""
    try:
        faiss.extract_index_ivf(index)
        return "ivf"
    except RuntimeError:
        return "flat"


def set_nprobe(index: faiss.Index, nprobe: int) -> None:
    if kind_of(index) == "ivf":
        faiss.extract_index_ivf(index).nprobe = nprobe


def search(index: faiss.Index, vector: np.ndarray, k: int) -> list[tuple[int, float]]:
    """Top ``k`` (id, score) for one query vector, best first; fewer if the index is small."""
    if k <= 0 or index.ntotal == 0:
        return []
    query = np.ascontiguousarray(np.asarray(vector, dtype=np.float32).reshape(1, -1))
    if query.shape[1] != index.d:
        raise ValueError(f"query has dimension {query.shape[1]}, the index {index.d}")
    scores, ids = index.search(query, min(k, index.ntotal))
    return [(int(i), float(s)) for i, s in zip(ids[0], scores[0], strict=True) if i >= 0]


def flat_vectors(index: faiss.Index) -> np.ndarray | None:
    """The stored float32 vectors of a flat ``IndexIDMap``, in id order, when its ids are
    exactly ``0..n-1`` in insertion order (how we build them); else None.

    The result is a read-only *view* of FAISS's own storage (no second copy of the matrix); it
    is valid as long as ``index`` is alive, so keep a reference to the index with it.
    """
    if kind_of(index) != "flat":
        return None
    ids = faiss.vector_to_array(faiss.downcast_index(index).id_map)
    if not np.array_equal(ids, np.arange(index.ntotal, dtype=ids.dtype)):
        return None
    inner = faiss.downcast_index(faiss.downcast_index(index).index)
    if index.ntotal == 0:
        return np.zeros((0, index.d), dtype=np.float32)
    view = faiss.rev_swig_ptr(inner.get_xb(), index.ntotal * index.d)
    matrix = np.asarray(view).reshape(index.ntotal, index.d)
    matrix.flags.writeable = False
    return matrix


def vectors_by_id(index: faiss.Index, ids: Sequence[int]) -> np.ndarray:
    """The stored vectors with ``ids``, as float32 rows in the order asked (an IVF index gives
    back its float16 codes, decoded). ``KeyError`` for an id the index does not hold.

    For a few rows (e.g. the title vectors of title-only papers), not for whole matrices: use
    :func:`flat_vectors` for those. On an IVF index the first call adds a hash-table id map.
    """
    wanted = np.asarray(ids, dtype=np.int64).reshape(-1)
    if not len(wanted):
        return np.zeros((0, index.d), dtype=np.float32)
    matrix = flat_vectors(index)
    if matrix is not None:
        unknown = wanted[(wanted < 0) | (wanted >= len(matrix))]
        if len(unknown):
            raise KeyError(f"no vector with id {int(unknown[0])}")
        return np.array(matrix[wanted], dtype=np.float32)
    if kind_of(index) == "flat":  # an IndexIDMap whose ids are not positions
        mapped = faiss.downcast_index(index)
        position = {int(i): p for p, i in enumerate(faiss.vector_to_array(mapped.id_map))}
        missing = [int(i) for i in wanted if int(i) not in position]
        if missing:
            raise KeyError(f"no vector with id {missing[0]}")
        return np.stack([mapped.index.reconstruct(position[int(i)]) for i in wanted])
    ivf = faiss.extract_index_ivf(index)
    if ivf.direct_map.type == faiss.DirectMap.NoMap:
        ivf.set_direct_map_type(faiss.DirectMap.Hashtable)
    rows = []
    for i in wanted.tolist():
        try:
            rows.append(index.reconstruct(i))
        except RuntimeError as error:  # FAISS reports an unknown id as a C++ exception
            raise KeyError(f"no vector with id {i}") from error
    return np.stack(rows).astype(np.float32, copy=False)


def write(index: faiss.Index, path: Path) -> None:
    """``faiss.write_index`` to a temp file in the same folder, fsync, then rename."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    faiss.write_index(index, str(tmp))
    with open(tmp, "rb") as handle:
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def read(path: Path, *, mmap: bool = False) -> faiss.Index:
    flags = faiss.IO_FLAG_MMAP | faiss.IO_FLAG_READ_ONLY if mmap else 0
    index = faiss.read_index(str(path), flags)
    if mmap:
        no_prefetch(index)
    return index


def no_prefetch(index: faiss.Index) -> None:
    """Turn off the prefetch threads of a memory-mapped IVF index's lists.

    FAISS maps an IVF index's lists as ``OnDiskInvertedLists``, which by default start 32
    threads on every search to read ahead the lists it will scan: meant for lists on a slow
    disk, here they only cost thread start-ups (a search of a million paper centroids took
    4.0 ms with them, 1.3 ms without). The pages come from the page cache either way."""
    ivf = faiss.try_extract_index_ivf(index)
    if ivf is None:
        return
    lists = faiss.downcast_InvertedLists(ivf.invlists)
    if isinstance(lists, faiss.OnDiskInvertedLists):
        lists.prefetch_nthread = 0
