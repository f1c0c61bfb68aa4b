"""FAISS wrappers: exact and approximate indexes, ids, atomic files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from carqa.index.search import vectors
from carqa.index.search.embedding import normalise


def clustered(n: int, dim: int = 32, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((max(4, n // 200), dim))
    points = centers[rng.integers(0, len(centers), n)] + 0.4 * rng.standard_normal((n, dim))
    return normalise(points)


def test_flat_index_is_exact_and_ids_are_positions() -> None:
    data = clustered(500)
    index = vectors.build_index(data)
    assert vectors.kind_of(index) == "flat"
    query = data[123]
    hits = vectors.search(index, query, 5)
    assert hits[0][0] == 123 and hits[0][1] == pytest.approx(1.0, abs=1e-5)
    expected = np.argsort(-(data @ query))[:5]
    assert [i for i, _ in hits] == list(expected)
    assert [s for _, s in hits] == sorted((s for _, s in hits), reverse=True)


def test_custom_ids_come_back_from_search() -> None:
    data = clustered(50)
    ids = np.arange(1000, 1050, dtype=np.int64)
    index = vectors.build_index(data, ids)
    assert vectors.search(index, data[7], 1)[0][0] == 1007
    assert vectors.flat_vectors(index) is None  # ids are not positions: no matrix shortcut


def test_flat_vectors_returns_the_stored_matrix() -> None:
    data = clustered(300)
    index = vectors.build_index(data)
    np.testing.assert_array_equal(vectors.flat_vectors(index), data)


def test_k_larger_than_index_and_empty_index() -> None:
    data = clustered(3)
    assert len(vectors.search(vectors.build_index(data), data[0], 10)) == 3
    empty = vectors.build_index(np.zeros((0, 32), np.float32))
    assert vectors.search(empty, data[0], 5) == []
    assert vectors.search(vectors.build_index(data), data[0], 0) == []


def test_wrong_query_dimension_is_an_error() -> None:
    index = vectors.build_index(clustered(10))
    with pytest.raises(ValueError, match="dimension"):
        vectors.search(index, np.ones(16, np.float32), 3)


def test_auto_switches_to_ivf_above_the_threshold_with_good_recall() -> None:
    data = clustered(6000)
    settings = vectors.VectorSettings(ann_threshold=5000, nprobe=8, train_size=4000)
    approximate = vectors.build_index(data, settings=settings)
    assert vectors.kind_of(approximate) == "ivf"
    small = vectors.build_index(data[:4999], settings=settings)
    assert vectors.kind_of(small) == "flat"
    exact = vectors.build_index(data, kind="flat")
    queries = clustered(50, seed=1)
    recall = np.mean(
        [
            len(
                {i for i, _ in vectors.search(approximate, q, 10)}
                & {i for i, _ in vectors.search(exact, q, 10)}
            )
            / 10
            for q in queries
        ]
    )
    assert recall >= 0.9


def test_write_is_atomic_and_round_trips(tmp_path: Path) -> None:
    data = clustered(100)
    index = vectors.build_index(data)
    path = tmp_path / "v.faiss"
    vectors.write(index, path)
    assert [p.name for p in tmp_path.iterdir()] == ["v.faiss"]  # no temp file left behind
    again = vectors.read(path)
    assert again.ntotal == 100
    assert vectors.search(again, data[5], 1)[0][0] == 5


@pytest.mark.parametrize("kind", ["flat", "ivf"])
def test_vectors_by_id_gives_back_the_stored_rows(kind: str) -> None:
    data = clustered(2000)
    index = vectors.build_index(data, kind=kind, settings=vectors.VectorSettings(train_size=2000))
    rows = vectors.vectors_by_id(index, [7, 1999, 0, 7])
    assert rows.dtype == np.float32 and rows.shape == (4, 32)
    # IVF stores float16 codes: the same vectors to ~3 decimals.
    np.testing.assert_allclose(rows, data[[7, 1999, 0, 7]], atol=1e-6 if kind == "flat" else 2e-3)
    assert vectors.vectors_by_id(index, []).shape == (0, 32)
    with pytest.raises(KeyError, match="2000"):
        vectors.vectors_by_id(index, [3, 2000])


def test_vectors_by_id_follows_custom_ids() -> None:
    data = clustered(50)
    index = vectors.build_index(data, np.arange(1000, 1050, dtype=np.int64))
    np.testing.assert_array_equal(vectors.vectors_by_id(index, [1049, 1000]), data[[49, 0]])
    with pytest.raises(KeyError, match="no vector with id 7"):
        vectors.vectors_by_id(index, [7])


def test_a_memory_mapped_ivf_index_starts_no_prefetch_threads(tmp_path: Path) -> None:
    """FAISS's mapped lists would start 32 read-ahead threads on every search."""
    import faiss

    settings = vectors.VectorSettings(ann_threshold=500, nprobe=4, train_size=1000)
    vectors.write(vectors.build_index(clustered(2000), settings=settings), tmp_path / "v.faiss")
    mapped = vectors.read(tmp_path / "v.faiss", mmap=True)
    lists = faiss.downcast_InvertedLists(faiss.extract_index_ivf(mapped).invlists)
    assert isinstance(lists, faiss.OnDiskInvertedLists)
    assert lists.prefetch_nthread == 0
    assert vectors.search(mapped, clustered(1, seed=5)[0], 3)  # and it still searches
