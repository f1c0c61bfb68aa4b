"""The approximate candidate source ranks like the exact one.

On the fixture index (22 invented papers) every paper would be a candidate at the default of
30 per ranking, so these tests take 3 per ranking: then which papers become candidates decides
the answer, and the approximate path (FAISS over paper centroids, BM25 from the postings) must
choose the same ones as scoring every paper, with and without filters.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from carqa.index.search.postings import Postings, PostingsBuilder
from carqa.index.search.terms import tokenize
from carqa.qa.candidates import AnnSource, ExactSource, top_k
from carqa.qa.engine import Engine
from carqa.qa.lexical import LexicalIndex
from carqa.qa.lexicon import Lexicon
from carqa.qa.retrieve import HybridRetriever, SentenceScores
from carqa.qa.types import Filters

QUESTIONS = [
    "Does CAR T cell therapy cause cytokine release syndrome?",
    "How is neurotoxicity after CAR T cells managed?",
    "Which antigen do CAR T cells target in B cell lymphoma?",
    "Is tocilizumab effective for cytokine release syndrome?",
    "What are the long-term outcomes of CD19 CAR T cells?",
    "Do patients relapse with antigen loss after CAR T therapy?",
    "What is known about BCMA CAR T cells in myeloma?",
    "Does lymphodepletion improve CAR T cell expansion?",
    "What is the capital of Australia?",
    "costimulatory domain 4-1BB versus CD28",
]
FILTERS = [
    None,
    Filters(year_from=2018, year_to=2021),
    Filters(cited_only=True, include_seed=False),
    Filters(exclude_pmids=["90000002", "90000003"]),
]


@pytest.fixture(scope="module")
def engines(small_index) -> tuple[Engine, Engine]:
    exact, fast = Engine(small_index), Engine(small_index)
    exact.retriever = HybridRetriever(small_index, source="exact", candidates=3)
    fast.retriever = HybridRetriever(small_index, source="ann", candidates=3)
    return exact, fast


def test_sources_are_the_ones_asked_for(engines: tuple[Engine, Engine]) -> None:
    exact, fast = engines
    assert isinstance(exact.retriever.source, ExactSource)
    assert isinstance(fast.retriever.source, AnnSource)


@pytest.mark.parametrize("filters", FILTERS)
@pytest.mark.parametrize("question", QUESTIONS)
def test_fast_path_ranks_and_answers_like_the_exact_path(
    engines: tuple[Engine, Engine], question: str, filters: Filters | None
) -> None:
    exact, fast = engines
    want = exact.retriever.retrieve(question, k=10, filters=filters)
    got = fast.retriever.retrieve(question, k=10, filters=filters)
    assert 3 <= len(want.papers) <= 6  # candidates are a choice: 3 per ranking of 22 papers
    assert got.pmids == want.pmids
    assert [h.score for h in got.papers] == pytest.approx([h.score for h in want.papers])
    assert got.best_similarity == pytest.approx(want.best_similarity)
    assert got.coverage == pytest.approx(want.coverage)
    want_answer = exact.ask(question, k=5, filters=filters)
    got_answer = fast.ask(question, k=5, filters=filters)
    assert replace(got_answer, took_ms=0) == replace(want_answer, took_ms=0)


def test_sentence_scores_read_like_an_array() -> None:
    scores = SentenceScores(np.array([5, 2, 9]), np.array([0.5, 0.2, 0.9], np.float32), 12)
    assert scores[np.array([2, 3, 9])].tolist() == pytest.approx([0.2, -1.0, 0.9])
    assert float(scores[5]) == pytest.approx(0.5)
    dense = np.asarray(scores)
    assert dense.shape == (12,) and dense[9] == pytest.approx(0.9) and dense[0] == -1.0


def test_ties_at_the_cut_go_to_the_lower_positions() -> None:
    papers = np.array([3, 7, 8, 11, 20])
    scores = np.array([0.5, 0.9, 0.5, 0.5, 0.1], np.float32)
    assert top_k(scores, papers, 2).tolist() == [3, 7]
    assert top_k(scores, papers, 3).tolist() == [3, 7, 8]
    assert top_k(-scores, papers, 1).tolist() == [20]


# Invented papers: the typed term, its expansion, both, only a shared common word, neither.
LEXICON_PAPERS = [
    "CAR T cells persisted; chimeric antigen receptor expression was stable in CAR T cells.",
    "Chimeric antigen receptor T cells expanded; the cells persisted for months.",
    "An OSCE for students: an objective structured clinical examination run twice.",
    "Students and faculty examiners scored an OSCE in surgery.",
    "Stem cells in marrow after transplant.",
    "Tisagenlecleucel in relapsed leukemia.",
]
LEXICON_QUESTIONS = [
    "How long do CAR T cells persist?",
    "Can students replace faculty as examiners in an OSCE?",
    "Does Kymriah work in leukemia?",
    "chimeric antigen receptor persistence",
]


def test_build_postings_score_and_correct_like_bm25s(tmp_path: Path) -> None:
    """An index with the build's postings (the fast path) and one scored by ``bm25s`` from
    the texts give every paper the same BM25, take off the same double-counted expansion
    score and read the same coverage: a named thing counts once on either path."""
    lexicon = Lexicon(
        groups=(
            ("CAR T cells", "chimeric antigen receptor"),
            ("OSCE", "objective structured clinical examination"),
            ("tisagenlecleucel", "Kymriah"),
        ),
        concepts=("CAR T cells", "OSCE", "tisagenlecleucel"),
    )
    builder = PostingsBuilder()
    for i, text in enumerate(LEXICON_PAPERS):  # pmids sort in list order
        builder.add(str(10_000_000 + i), tokenize(text))
    builder.write(tmp_path)
    fast = LexicalIndex.from_postings(Postings(tmp_path, len(LEXICON_PAPERS)), lexicon=lexicon)
    exact = LexicalIndex(LEXICON_PAPERS, lexicon=lexicon)
    papers = list(range(len(LEXICON_PAPERS)))
    taken_somewhere = False
    for question in LEXICON_QUESTIONS:
        assert fast.parse(question) == exact.parse(question)
        assert fast.scores(question) == pytest.approx(exact.scores(question), rel=1e-5, abs=1e-6)
        want = exact.double_counted(question, papers)
        assert fast.double_counted(question, papers) == pytest.approx(want, rel=1e-5, abs=1e-6)
        taken_somewhere |= bool(want.max() > 0)
        assert fast.coverage(question, papers) == pytest.approx(exact.coverage(question, papers))
        ids, values = fast.sparse_scores(question)
        want_ids, want_values = exact.sparse_scores(question)
        assert ids.tolist() == want_ids.tolist()
        assert values == pytest.approx(want_values, rel=1e-5, abs=1e-6)
    assert taken_somewhere  # the fixture does exercise the correction
