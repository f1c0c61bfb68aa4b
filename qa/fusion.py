"""How the candidates' scores become one ranking, and the second ranking towards a subject.

Fusion: reciprocal rank fusion of the dense and lexical rankings (each contributes
``w / (K + rank)``; no calibration needed across rankers) plus a weighted sum of the scores
themselves, which decides between papers RRF puts close together by *how much* better one is.
On the PubMedQA dev questions the score term is what lifts recall@1 from 0.98 (RRF alone) to
0.99; weights were tuned there with two-fold cross-validation (docs/benchmarks.md, "Answer
quality").

Feedback: topical questions ("Which drugs are used for CRS?") have several right papers, and
the question alone is a thin description of them. Once the candidates are ranked, the question's
vector is moved towards the first paper's centroid (:func:`moved`) and the candidates are ranked
again (:func:`ranked_again`): the fusion of their scores against that vector, plus how much of
the question each paper holds (its idf-weighted share of the question's terms, the "coverage"
abstention also reads) and how close its centroid is to the moved vector. Papers on the best
paper's subject that hold the whole question rise over papers that share one phrase with it.

That second ranking is the ranking: the papers an answer quotes, abstention judges and retrieval
returns. Its two weights are those of a logistic regression of "gold paper" on the three scores
over the BioASQ dev questions' candidates, rounded. Fitted on either half of the questions and
measured on the other, it took MAP@10 from 0.785 to 0.819 and from 0.794 to 0.831 (success@1 0.850
→ 0.854 and 0.868 → 0.874) against the first ranking alone. Over all of them the answers improved
with it too (exact 0.525 → 0.530, cite precision 0.847 → 0.854, fewer refusals), and on PubMedQA
the source paper ranks first for every dev question. Candidates are not searched again, so the
second ranking costs one product over the candidates' rows and a lookup of the question's terms.
"""

from __future__ import annotations

from typing import Any

import numpy as np

RRF_K = 30
RRF_WEIGHTS = {"dense": 1.0, "lexical": 1.5}
SCORE_WEIGHTS = {
    "dense": 1.0,
    "centroid": 0.5,
    "lexical": 0.05,
    "lexical_relative": 0.2,
}
SCORE_SCALE = 0.1
"""Weight of the score sum against the RRF term."""
FEEDBACK_WEIGHT = 0.75
"""How far the question's vector moves towards the first paper's centroid for the second
ranking (see "Feedback" above; 0 turns it off). 0.5 to 1.5 gave the same gain on BioASQ dev."""
RANKED_AGAIN_WEIGHTS = {"coverage": 0.6, "centroid": 0.85}
"""Added to the fused value in the second ranking (see "Feedback" above): the paper's share of
the question's terms and its centroid's cosine with the moved vector."""


def fuse(scores: dict[str, Any]) -> np.ndarray:
    """RRF of the dense and lexical rankings + a weighted score sum, one value per candidate
    (aligned with ``scores["candidates"]``)."""
    candidates = scores["candidates"]
    if not len(candidates):
        return np.zeros(0, dtype=np.float64)
    lexical = scores["lexical"]
    value = np.zeros(len(candidates), dtype=np.float64)
    for name, weight in RRF_WEIGHTS.items():
        value += weight / (RRF_K + _ranks(scores[name]))
    top_lexical = float(scores["lexical_max"])
    summed = (
        SCORE_WEIGHTS["dense"] * scores["dense"]
        + SCORE_WEIGHTS["centroid"] * scores["centroid"]
        + SCORE_WEIGHTS["lexical"] * lexical
        + SCORE_WEIGHTS["lexical_relative"] * lexical / max(top_lexical, 1e-6)
    )
    return value + SCORE_SCALE * summed


def ranked_again(fed_back: dict[str, Any], coverage: np.ndarray) -> np.ndarray:
    """The second ranking's value per candidate: :func:`fuse` of ``fed_back`` (the scores
    against the moved vector) plus the weighted ``coverage`` and moved-vector centroid cosine."""
    return (
        fuse(fed_back)
        + RANKED_AGAIN_WEIGHTS["coverage"] * np.asarray(coverage, dtype=np.float64)
        + RANKED_AGAIN_WEIGHTS["centroid"] * np.asarray(fed_back["centroid"], dtype=np.float64)
    )


def moved(vector: np.ndarray, towards: np.ndarray) -> np.ndarray | None:
    """``vector`` moved ``FEEDBACK_WEIGHT`` of the way towards ``towards`` (the first paper's
    centroid), unit length; None when the two cancel out."""
    shifted = vector + FEEDBACK_WEIGHT * towards
    norm = float(np.linalg.norm(shifted))
    if norm == 0.0:
        return None
    return (shifted / norm).astype(np.float32)


def _ranks(scores: np.ndarray) -> np.ndarray:
    """0-based rank of every entry (0 = highest score)."""
    order = np.argsort(-scores, kind="stable")
    ranks = np.empty(len(scores), dtype=np.float32)
    ranks[order] = np.arange(len(scores), dtype=np.float32)
    return ranks
