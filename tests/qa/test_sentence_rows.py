"""Sentence rows grouped by paper (``carqa.qa.sentence_rows``): one read of the candidates'
rows, scored against the question's vector and again against a second one."""

from __future__ import annotations

import numpy as np
from carqa.qa.sentence_rows import Groups, SentenceScores

# Sentence ids 0..5: paper 0 owns 0 and 3, paper 1 owns none, paper 2 owns 1, 2 and 5; row 4
# belongs to no paper.
OWNER = np.array([0, 2, 2, 0, -1, 2])
MATRIX = np.array(
    [[1.0, 0.0], [0.0, 1.0], [0.6, 0.8], [0.8, 0.6], [1.0, 0.0], [-1.0, 0.0]], dtype=np.float32
)


def test_gather_reads_the_rows_of_the_papers_asked_for_paper_after_paper() -> None:
    gathered = Groups(OWNER, 3).gather(np.array([2, 1, 0]), MATRIX)
    assert gathered.rows.tolist() == [1, 2, 5, 0, 3]
    assert np.array_equal(gathered.vectors, MATRIX[[1, 2, 5, 0, 3]])
    assert gathered.keep.tolist() == [True, False, True]


def test_best_is_each_paper_s_best_row_for_any_vector_and_minus_one_without_rows() -> None:
    gathered = Groups(OWNER, 3).gather(np.array([2, 1, 0]), MATRIX)
    first = gathered.best(gathered.vectors @ np.array([1.0, 0.0], dtype=np.float32))
    second = gathered.best(gathered.vectors @ np.array([0.0, 1.0], dtype=np.float32))
    assert np.allclose(first, [0.6, -1.0, 1.0])
    assert np.allclose(second, [1.0, -1.0, 0.6])


def test_papers_without_rows_gather_nothing() -> None:
    gathered = Groups(OWNER, 3).gather(np.array([1]), MATRIX)
    assert gathered.rows.shape == (0,) and gathered.vectors.shape == (0, 2)
    assert gathered.best(gathered.vectors @ np.ones(2, dtype=np.float32)).tolist() == [-1.0]


def test_sentence_scores_read_minus_one_outside_the_candidates() -> None:
    scores = SentenceScores(np.array([5, 1]), np.array([0.3, 0.9]), size=6)
    assert scores[[1, 5, 4]].tolist() == [np.float32(0.9), np.float32(0.3), -1.0]
    assert np.asarray(scores).tolist() == [-1.0, np.float32(0.9), -1.0, -1.0, -1.0, np.float32(0.3)]
