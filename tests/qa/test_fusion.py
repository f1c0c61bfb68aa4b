"""Fusion of the candidates' scores and the vector the second ranking uses
(:mod:`carqa.qa.fusion`)."""

from __future__ import annotations

import numpy as np
from carqa.qa import fusion


def _scores(dense: list[float], centroid: list[float], lexical: list[float]) -> dict:
    return {
        "candidates": np.arange(len(dense)),
        "dense": np.array(dense, np.float32),
        "centroid": np.array(centroid, np.float32),
        "lexical": np.array(lexical, np.float32),
        "lexical_max": max(lexical),
    }


def test_a_paper_first_on_both_rankings_fuses_highest() -> None:
    fused = fusion.fuse(_scores([0.9, 0.5, 0.8], [0.6, 0.4, 0.7], [12.0, 3.0, 1.0]))
    assert int(np.argmax(fused)) == 0
    assert fused.shape == (3,) and fused[1] < fused[0]


def test_how_much_better_decides_between_papers_rrf_puts_close() -> None:
    """Both cases give each paper the same ranks (RRF sees no difference); the score sum
    widens the first paper's lead when it leads by more."""
    close = fusion.fuse(_scores([0.62, 0.60], [0.5, 0.5], [5.0, 5.2]))
    far = fusion.fuse(_scores([0.90, 0.60], [0.5, 0.5], [5.0, 5.2]))
    assert far[0] - far[1] > close[0] - close[1]


def test_no_candidates_fuse_to_nothing() -> None:
    assert fusion.fuse(_scores([], [], [0.0])).shape == (0,)


def test_the_moved_vector_is_unit_length_and_between_the_two() -> None:
    question = np.array([1.0, 0.0], np.float32)
    centroid = np.array([0.0, 1.0], np.float32)
    moved = fusion.moved(question, centroid)
    assert moved is not None
    assert abs(float(np.linalg.norm(moved)) - 1.0) < 1e-6
    assert moved[0] > moved[1] > 0  # towards the centroid, nearer the question (weight < 1)


def test_vectors_that_cancel_out_give_no_moved_vector(monkeypatch) -> None:
    monkeypatch.setattr(fusion, "FEEDBACK_WEIGHT", 1.0)
    vector = np.array([0.6, 0.8], np.float32)
    assert fusion.moved(vector, -vector) is None


def test_the_second_ranking_prefers_the_paper_that_holds_the_whole_question() -> None:
    """Two papers the fusion puts level, the same distance from the moved vector: the one
    holding all of the question's terms ranks above the one holding half of them."""
    fed_back = _scores([0.7, 0.7], [0.5, 0.5], [4.0, 4.0])
    again = fusion.ranked_again(fed_back, np.array([0.5, 1.0], np.float32))
    assert again[1] > again[0]


def test_the_second_ranking_weighs_closeness_to_the_moved_vector_beyond_the_fusion() -> None:
    """A centroid 0.1 nearer the moved vector gains more than the fusion gives it: the second
    ranking is about the subject, not one scoring term among five."""
    fed_back = _scores([0.7, 0.7], [0.5, 0.6], [4.0, 4.0])
    by_fusion = float(np.diff(fusion.fuse(fed_back))[0])
    again = float(np.diff(fusion.ranked_again(fed_back, np.ones(2)))[0])
    assert again - by_fusion > 0.05
