"""Papers that state what an answer's sentence states are cited beside it."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
from carqa.qa import agreement
from carqa.qa import answer as extractive
from carqa.qa.answer import Evidence
from carqa.qa.types import joined


def _unit(angle_degrees: float) -> np.ndarray:
    angle = np.radians(angle_degrees)
    return np.array([np.cos(angle), np.sin(angle)], dtype=np.float32)


# Sentence id -> (paper, text, vector angle, cosine with the question). Paper 1 is quoted.
SENTENCES = {
    0: ("1", "DCAF17 mutations cause Woodhouse-Sakati syndrome.", 0.0, 0.80),
    1: ("1", "Alopecia and hypogonadism define the syndrome.", 60.0, 0.60),
    2: ("2", "Woodhouse-Sakati syndrome is caused by DCAF17 mutations.", 10.0, 0.78),
    3: ("2", "Twelve families were studied.", 80.0, 0.20),
    4: ("3", "Mutations of DCAF17 were found in every family.", 15.0, 0.70),
    5: ("4", "DCAF17 mutations cause the syndrome, as reviewed here.", 5.0, 0.30),  # off-question
    6: ("5", "Hypogonadism is part of the syndrome.", 50.0, 0.55),  # states the second sentence
    7: ("6", "DCAF17 mutations cause Woodhouse-Sakati syndrome in most cases.", 3.0, 0.75),
}


def _setup(
    covering: set[str] | None = None,
) -> tuple[SimpleNamespace, SimpleNamespace, list[Evidence]]:
    ids = sorted(SENTENCES)
    rows = [
        SimpleNamespace(text=SENTENCES[i][1], section_label=None, section_category=None)
        for i in ids
    ]
    matrix = np.stack([_unit(SENTENCES[i][2]) for i in ids])
    by_paper: dict[str, list[int]] = {}
    for i in ids:
        by_paper.setdefault(SENTENCES[i][0], []).append(i)
    retriever = SimpleNamespace(
        paper_sentences=lambda pmid: np.array(by_paper.get(pmid, []), dtype=np.int64),
        sentence_priors=np.zeros(len(ids)),
        index=SimpleNamespace(sentences=rows, sentence_matrix=matrix, papers={}),
        covering=covering,
    )
    retrieval = SimpleNamespace(
        query="Which gene is mutated in Woodhouse-Sakati syndrome?",
        papers=[SimpleNamespace(pmid=p, rank=r) for r, p in enumerate("123456")],
        sentence_scores=np.array([SENTENCES[i][3] for i in ids]),
    )
    chosen = [
        extractive.evidence_at(retriever, retrieval, "1", 0, 0),  # type: ignore[arg-type]
        extractive.evidence_at(retriever, retrieval, "1", 0, 1),  # type: ignore[arg-type]
    ]
    return retriever, retrieval, chosen


@pytest.fixture(autouse=True)
def _covering(monkeypatch: pytest.MonkeyPatch) -> None:
    """Which papers hold the question's words is the retriever's business: here, those the
    test says (all by default)."""

    def covering(retriever, retrieval, pmids):  # type: ignore[no-untyped-def]
        return set(pmids) if retriever.covering is None else retriever.covering & set(pmids)

    monkeypatch.setattr(extractive, "covering_papers", covering)


def _agreeing(retriever, retrieval, chosen, papers_read=6):  # type: ignore[no-untyped-def]
    found = agreement.agreeing_evidence(retriever, retrieval, chosen, papers_read=papers_read)
    return [[e.pmid for e in group] for group in found]


def test_papers_stating_the_same_agree_closest_first_at_most_two() -> None:
    retriever, retrieval, chosen = _setup()
    # Paper 6 (3 degrees) and paper 2 (10 degrees) agree with the lead; paper 3 (15 degrees,
    # cosine 0.966) would too but the lead lists two. Paper 5 states the second sentence.
    # Paper 4 is off the question; paper 1 is already quoted.
    assert _agreeing(retriever, retrieval, chosen) == [["6", "2"], ["5"]]


def test_only_papers_read_and_holding_the_question_agree() -> None:
    retriever, retrieval, chosen = _setup()
    assert _agreeing(retriever, retrieval, chosen, papers_read=3) == [["2", "3"], []]
    retriever, retrieval, chosen = _setup(covering={"1", "3"})
    assert _agreeing(retriever, retrieval, chosen) == [["3"], []]


def test_a_paper_saying_something_else_does_not_agree() -> None:
    retriever, retrieval, chosen = _setup(covering={"1", "5"})
    # Paper 5 is 50 degrees from the lead (cosine 0.64): it agrees with the second sentence only.
    assert _agreeing(retriever, retrieval, chosen) == [[], ["5"]]
    assert _agreeing(retriever, retrieval, chosen[:1]) == [[]]


def test_agreeing_papers_are_numbered_after_the_quoted_sentences() -> None:
    retriever, retrieval, chosen = _setup()
    agreeing = agreement.agreeing_evidence(retriever, retrieval, chosen, papers_read=6)
    citations, segments = agreement.cited(retriever, chosen, agreeing)  # type: ignore[arg-type]
    assert [(c.n, c.pmid) for c in citations] == [(1, "1"), (2, "1"), (3, "6"), (4, "2"), (5, "5")]
    assert citations[2].text == SENTENCES[7][1]  # the agreeing paper's own sentence
    assert joined(segments) == (
        "DCAF17 mutations cause Woodhouse-Sakati syndrome [1][3][4]. "
        "Alopecia and hypogonadism define the syndrome [2][5]."
    )
    pieces = agreement.sentence_pieces(segments)
    assert len(pieces) == 2 and "".join(pieces) == joined(segments)


def test_no_agreement_leaves_the_answer_as_quoted() -> None:
    retriever, retrieval, chosen = _setup(covering={"1"})
    agreeing = agreement.agreeing_evidence(retriever, retrieval, chosen, papers_read=6)
    citations, segments = agreement.cited(retriever, chosen, agreeing)  # type: ignore[arg-type]
    assert [c.n for c in citations] == [1, 2]
    assert joined(segments).count("[") == 2
