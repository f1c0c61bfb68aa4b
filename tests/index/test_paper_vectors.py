"""The paper index: centroids of sentence vectors and the approximate index over them."""

from __future__ import annotations

from pathlib import Path

import faiss
import numpy as np
import pytest
from carqa.index.search import paper_vectors

from tests.index.test_vectors import clustered


def test_centroids_average_sentences_and_fall_back_to_the_title() -> None:
    sentences = np.array([[1, 0], [0, 1], [1, 0]], np.float32)
    titles = {"3": np.array([0.6, 0.8], np.float32), "1": np.array([0, 1], np.float32)}
    rows = paper_vectors.centroids(["1", "2", "3"], ["1", "1", "2"], sentences, titles)
    np.testing.assert_allclose(rows[0], [2**-0.5, 2**-0.5], atol=1e-6)  # mean of two, normalised
    np.testing.assert_allclose(rows[1], [1, 0], atol=1e-6)
    np.testing.assert_allclose(rows[2], [0.6, 0.8], atol=1e-6)  # no sentence: its title


def test_ivf_paper_index_scans_a_small_share_of_the_papers_with_good_recall(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every question searches the paper index, so its IVF form must read few papers a
    question: here at most 5 % of them (a list count of √n read 12 %), while still finding
    nine in ten of the exact 30 best among the 60 it fetches. Checked on the index as it is
    read back (memory-mapped, with the search depth set on opening)."""
    monkeypatch.setattr(paper_vectors, "IVF_FROM", 10_000)  # IVF from 200k papers by default
    papers = clustered(40_000, dim=48)
    paper_vectors.write(tmp_path, papers)
    _, index = paper_vectors.read(tmp_path) or (None, None)
    assert index is not None and paper_vectors.kind_of(index) == "ivf"
    exact = faiss.IndexFlatIP(papers.shape[1])
    exact.add(papers)
    queries = clustered(40, dim=48, seed=3)
    _, truth = exact.search(queries, 30)
    stats = faiss.cvar.indexIVF_stats
    stats.reset()
    _, found = index.search(queries, 60)
    scanned = stats.ndis / len(queries) / len(papers)
    recall = np.mean([len(set(f) & set(t)) / 30 for f, t in zip(found, truth, strict=True)])
    assert scanned <= 0.05
    assert recall >= 0.9


def test_small_corpora_get_an_hnsw_paper_index(tmp_path: Path) -> None:
    entry = paper_vectors.write(tmp_path, clustered(500))
    assert entry == {"kind": "hnsw", "count": 500}
