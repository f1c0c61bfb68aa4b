"""Core ranking (:class:`carqa.qa.retrieve.HybridRetriever`): relevance, filters, fusion and the
candidate stage, through ``retrieve`` — the behaviour answers and ``carqa eval`` rely on.

The filters and relevance run on the session's small built index (22 invented CAR T papers,
real model); fusion and the candidate stage on a hand-made index of 100 papers whose vectors
and words are chosen so that exactly one paper is strong on each signal.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest
from carqa.index.search.reader import ChunkRow, PaperMeta, SentenceRow
from carqa.qa.retrieve import HybridRetriever
from carqa.qa.types import Filters

RELAPSE = "Why do patients relapse after CD19 CAR T cell therapy?"


@pytest.fixture(scope="module")
def retriever(small_index: Any) -> HybridRetriever:
    return HybridRetriever(small_index)


# -- on the small built index -----------------------------------------------------------------


def test_the_paper_about_the_question_ranks_first(retriever: HybridRetriever) -> None:
    result = retriever.retrieve(RELAPSE, k=5)
    assert result.pmids[0] == "90000004"  # "Loss of CD19 as a mechanism of relapse ..."
    assert [hit.rank for hit in result.papers] == list(range(5))
    scores = [hit.score for hit in result.papers]
    assert scores == sorted(scores, reverse=True)
    assert result.best_similarity > 0.5 and result.confidence >= result.best_similarity


def test_k_papers_come_back_and_never_the_same_one_twice(retriever: HybridRetriever) -> None:
    everything = retriever.retrieve(RELAPSE, k=100).pmids
    assert sorted(everything) == sorted(retriever.index.papers)  # all 22, once each
    assert retriever.retrieve(RELAPSE, k=3).pmids == everything[:3]


@pytest.mark.parametrize(
    ("filters", "passes"),
    [
        (Filters(year_from=2019, year_to=2020), lambda p: p.year in (2019, 2020)),
        (Filters(year_to=2015), lambda p: p.year is not None and p.year <= 2015),
        (Filters(pmids=["90000002", "90000008"]), lambda p: p.pmid in ("90000002", "90000008")),
        (Filters(exclude_pmids=["90000004"]), lambda p: p.pmid != "90000004"),
        (Filters(cited_only=True), lambda p: p.cited_by_seed or p.is_seed),
        (Filters(include_seed=False), lambda p: not p.is_seed),
        (Filters(cited_only=True, include_seed=False), lambda p: p.cited_by_seed),
    ],
)
def test_filters_keep_exactly_the_papers_that_pass(
    retriever: HybridRetriever, filters: Filters, passes: Any
) -> None:
    """Filters are applied before ranking: asking for every paper returns all that pass and
    no other, whatever the question prefers."""
    expected = {pmid for pmid, paper in retriever.index.papers.items() if passes(paper)}
    assert expected and expected != set(retriever.index.papers)  # the filter does something
    found = retriever.retrieve(RELAPSE, k=100, filters=filters).pmids
    assert set(found) == expected and len(found) == len(expected)


def test_excluding_the_best_paper_promotes_the_next(retriever: HybridRetriever) -> None:
    """The second paper becomes the first. Those below it may change places: the second
    ranking follows the first paper's subject, and the first paper is another one now."""
    ranked = retriever.retrieve(RELAPSE, k=3).pmids
    without = retriever.retrieve(RELAPSE, k=2, filters=Filters(exclude_pmids=[ranked[0]]))
    assert without.pmids[0] == ranked[1] and ranked[0] not in without.pmids


def test_filters_that_nothing_passes_return_no_papers(retriever: HybridRetriever) -> None:
    result = retriever.retrieve(RELAPSE, k=5, filters=Filters(year_from=2030))
    assert result.papers == [] and result.coverage == 0.0


# -- fusion and candidates on a hand-made index ------------------------------------------------

DIM = 8
QUERY = np.eye(DIM, dtype=np.float32)[0]
FILLER = "invented filler text about cohort number {} with routine clinic visits"
QUESTION = "Does zebrafish xenograft tumour lysis follow infusion?"


def _unit(values: list[float]) -> np.ndarray:
    vector = np.array(values, dtype=np.float32)
    return vector / np.linalg.norm(vector)


@dataclass
class _Index:
    """100 papers of one sentence each. Three are built to stand out — ``dense-only`` (the
    question's vector, unrelated words), ``words-only`` (the question's rare words, a vector at
    right angles to it: about half the filler papers are closer in meaning) and ``both`` (the
    words and a vector close to the question's) — among 97 filler papers with random vectors
    and none of the question's words."""

    papers: dict[str, Any] = field(default_factory=dict)
    sentences: list[SentenceRow] = field(default_factory=list)
    chunks: list[ChunkRow] = field(default_factory=list)
    sentence_matrix: np.ndarray = field(default_factory=lambda: np.zeros((0, DIM), np.float32))

    def __post_init__(self) -> None:
        rows = [
            ("dense-only", "Patients were followed for a median of two invented years.", QUERY),
            (
                "words-only",
                "Zebrafish xenografts showed tumour lysis within hours.",
                _unit([0, 1, 0, 0, 0, 0, 0, 0]),
            ),
            (
                "both",
                "Zebrafish xenografts showed tumour lysis after infusion.",
                _unit([0.9, 0.4, 0, 0, 0, 0, 0, 0]),
            ),
        ]
        rng = np.random.default_rng(3)
        for i in range(97):
            vector = rng.standard_normal(DIM)
            rows.append((f"filler-{i}", FILLER.format(i), _unit(vector.tolist())))
        for i, (pmid, text, _) in enumerate(rows):
            self.papers[pmid] = PaperMeta(
                pmid, None, None, 2020, [], None, [], [], False, False, True
            )
            self.sentences.append(SentenceRow(i, pmid, "RESULTS", "RESULTS", 0, 1, text, i))
            self.chunks.append(ChunkRow(i, pmid, "RESULTS", "RESULTS", text, i, i + 1))
        self.sentence_matrix = np.stack([vector for _, _, vector in rows])

    def encode_query(self, text: str) -> np.ndarray:
        return QUERY

    def chunk_vectors(self, ids: list[int]) -> np.ndarray:
        return self.sentence_matrix[ids]


@pytest.fixture(scope="module")
def made() -> HybridRetriever:
    return HybridRetriever(_Index())


def test_a_paper_strong_on_both_signals_ranks_above_those_strong_on_one(
    made: HybridRetriever,
) -> None:
    assert made.retrieve(QUESTION, k=2).pmids == ["both", "dense-only"]


def test_the_question_s_words_lift_a_paper_over_papers_as_close_in_meaning(
    made: HybridRetriever,
) -> None:
    hits = {hit.pmid: hit for hit in made.retrieve(QUESTION, k=100).papers}
    words = hits["words-only"]
    assert words.lexical > 0 and all(h.lexical == 0 for p, h in hits.items() if "filler" in p)
    as_close = [h for p, h in hits.items() if "filler" in p and h.dense <= words.dense + 0.05]
    assert as_close  # there are such papers, and the words put this one above them all
    assert all(words.rank < hit.rank for hit in as_close)


def test_the_candidate_stage_keeps_papers_found_by_meaning_alone_or_by_words_alone(
    made: HybridRetriever,
) -> None:
    """Among 100 papers only some get a closer look; a paper that only one of the cheap
    rankings finds — by its meaning, or by its words (half the corpus is closer in meaning)
    — must be among them."""
    closer_in_meaning = int(np.sum(made.index.sentence_matrix[3:] @ QUERY > 0))
    assert closer_in_meaning > 30  # more than the centroid ranking alone would keep
    found = made.retrieve(QUESTION, k=100).pmids
    assert {"dense-only", "words-only", "both"} <= set(found)


def test_filters_apply_before_the_candidate_stage(made: HybridRetriever) -> None:
    result = made.retrieve(QUESTION, k=10, filters=Filters(exclude_pmids=["both"]))
    assert len(result.pmids) == 10 and "both" not in result.pmids
    assert result.pmids[0] == "dense-only"


def test_answering_never_tokenizes_a_paper_again(
    retriever: HybridRetriever, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Which question terms a paper holds is read from the BM25 postings: tokenizing an
    abstract per question was most of the time spent after the question's encoding."""
    import carqa.qa.lexical as lexical

    expected = retriever.lexical.coverage(RELAPSE, list(range(len(retriever.pmids))))
    query = retriever.lexical.parse(RELAPSE)  # the question itself is analysed once, here
    seen: list[str] = []
    real = lexical.tokenize
    import carqa.qa.retrieve as retrieve

    def counted(text: str) -> list[str]:
        seen.append(text)
        return real(text)

    monkeypatch.setattr(lexical, "tokenize", counted)
    monkeypatch.setattr(retrieve, "tokenize", counted, raising=False)
    result = retriever.retrieve(RELAPSE, k=5)
    covered = retriever.lexical.coverage(query, list(range(len(retriever.pmids))))
    assert not [text for text in seen if len(text) > len(RELAPSE)]
    top = retriever.position[result.pmids[0]]
    assert np.allclose(covered, expected) and result.coverage == pytest.approx(expected[top])


# -- feedback from the first paper ---------------------------------------------------------------

FEEDBACK_QUESTION = "Which invented cytokine blockers calm the storm?"


@dataclass
class _FeedbackIndex(_Index):
    """A question with one clear best paper (``lead``: its words and a vector close to it) and
    two papers without its words: ``sibling``, on the lead paper's subject (its vector between
    the lead's and the question's direction, cosine 0.71 with the question), and ``stray``, a
    shade closer to the question (cosine 0.75) but in another direction altogether."""

    def __post_init__(self) -> None:
        rows = [
            (
                "lead",
                "Invented cytokine blockers calm the storm in treated patients.",
                _unit([0.9, 0.4, 0, 0, 0, 0, 0, 0]),
            ),
            (
                "sibling",
                "Interleukin signalling was damped in the treated group.",
                _unit([1, 1, 0, 0, 0, 0, 0, 0]),
            ),
            (
                "stray",
                "Weather patterns were recorded on the coast.",
                _unit([0.75, 0, 0.66, 0, 0, 0, 0, 0]),
            ),
        ]
        rng = np.random.default_rng(5)
        for i in range(20):
            vector = np.abs(rng.standard_normal(DIM)) * np.array([0, 0, 0, 1, 1, 1, 1, 1])
            rows.append((f"filler-{i}", FILLER.format(i), _unit(vector.tolist())))
        for i, (pmid, text, _) in enumerate(rows):
            self.papers[pmid] = PaperMeta(
                pmid, None, None, 2020, [], None, [], [], False, False, True
            )
            self.sentences.append(SentenceRow(i, pmid, "RESULTS", "RESULTS", 0, 1, text, i))
            self.chunks.append(ChunkRow(i, pmid, "RESULTS", "RESULTS", text, i, i + 1))
        self.sentence_matrix = np.stack([vector for _, _, vector in rows])


def test_papers_on_the_first_paper_s_subject_rise_over_papers_near_only_the_question(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A topical question has several right papers; the best one says what the subject is.
    The second ranking takes the question's vector towards it, so ``sibling`` passes
    ``stray``, which the question's vector alone puts ahead; the lead paper stays first and
    the scores reported are the question's own."""
    from carqa.qa import fusion

    retriever = HybridRetriever(_FeedbackIndex())
    with_feedback = retriever.retrieve(FEEDBACK_QUESTION, k=3)
    monkeypatch.setattr(fusion, "FEEDBACK_WEIGHT", 0.0)
    without = retriever.retrieve(FEEDBACK_QUESTION, k=3)
    assert without.pmids == ["lead", "stray", "sibling"]
    assert with_feedback.pmids == ["lead", "sibling", "stray"]
    own = {hit.pmid: (hit.dense, hit.centroid) for hit in without.papers}
    assert {hit.pmid: (hit.dense, hit.centroid) for hit in with_feedback.papers} == own
