"""The abstention rule: a weak best sentence is refused even when the question's words all
occur in the top paper, a short question needs all its words, and a close sentence with enough
of the question's words is answered."""

from __future__ import annotations

import numpy as np
import pytest
from carqa.qa.answer import (
    ABSTAIN_THRESHOLD,
    MIN_BEST_SIMILARITY,
    SHORT_QUESTION_TERMS,
    should_abstain,
)
from carqa.qa.lexical import tokenize
from carqa.qa.retrieve import COVERAGE_WEIGHT, PaperHit, Retrieval


def _retrieval(best: float, coverage: float, *, papers: int = 1, terms: int = 6) -> Retrieval:
    hits = [PaperHit(str(i + 1), i, 1.0, best, best, 1.0) for i in range(papers)]
    return Retrieval(
        query="an invented question",
        vector=np.zeros(4, np.float32),
        papers=hits,
        sentence_scores=np.full(3, best, np.float32),
        best_similarity=best,
        coverage=coverage,
        terms=terms,
        confidence=best + COVERAGE_WEIGHT * coverage,
    )


def test_every_word_found_does_not_rescue_a_distant_sentence() -> None:
    # "What is machine learning?": both words in one abstract, best sentence 0.37.
    retrieval = _retrieval(best=0.37, coverage=1.0)
    assert retrieval.confidence >= ABSTAIN_THRESHOLD  # the word share alone would answer
    assert should_abstain(retrieval)


def test_just_under_the_floor_abstains_and_just_over_answers() -> None:
    assert should_abstain(_retrieval(best=MIN_BEST_SIMILARITY - 0.01, coverage=1.0))
    assert not should_abstain(_retrieval(best=MIN_BEST_SIMILARITY + 0.01, coverage=1.0))


@pytest.mark.parametrize(("best", "coverage"), [(0.80, 0.89), (0.55, 0.6), (0.65, 0.35)])
def test_close_evidence_with_enough_words_is_answered(best: float, coverage: float) -> None:
    assert not should_abstain(_retrieval(best, coverage))


@pytest.mark.parametrize(("best", "coverage"), [(0.6, 0.0), (0.5, 0.5), (0.70, 0.1), (0.45, 0.75)])
def test_too_little_of_the_question_abstains(best: float, coverage: float) -> None:
    assert should_abstain(_retrieval(best, coverage))


def test_no_papers_abstains() -> None:
    assert should_abstain(_retrieval(best=0.9, coverage=1.0, papers=0))


def test_a_short_question_needs_every_word() -> None:
    # "What is the GDP of Germany?": germany found, gdp not; a sentence at 0.58.
    assert tokenize("What is the GDP of Germany?") == ["gdp", "germani"]
    partial = _retrieval(best=0.58, coverage=0.6, terms=SHORT_QUESTION_TERMS)
    assert partial.confidence >= ABSTAIN_THRESHOLD
    assert should_abstain(partial)
    assert not should_abstain(_retrieval(best=0.58, coverage=1.0, terms=SHORT_QUESTION_TERMS))
    # A longer question may miss a word.
    assert not should_abstain(_retrieval(0.58, 0.6, terms=SHORT_QUESTION_TERMS + 1))


@pytest.mark.parametrize(
    "question",
    [
        "Can you tell me about CAR T toxicity?",
        "What is known about CAR T toxicity?",
        "Please explain CAR T toxicity",
        "Describe CAR T toxicity to me",
    ],
)
def test_conversational_words_are_not_terms(question: str) -> None:
    # Otherwise "tell", "known" or "me" count as words the paper lacks, and a clear question
    # is refused for missing them (or, when short, loses "every word found").
    assert tokenize(question) == tokenize("CAR T toxicity")


def test_a_named_topic_found_in_the_top_paper_overrides_a_low_word_share() -> None:
    # "What is the mechanism of action of drug Z?": the top paper names drug Z and quotes a
    # close sentence, but no paper says "mechanism" and "action": a low word share.
    weak_share = _retrieval(best=0.62, coverage=0.3, terms=3)
    assert should_abstain(weak_share)
    assert not should_abstain(weak_share, named=True)
    # A name does not rescue a sentence under the similarity floor.
    assert should_abstain(_retrieval(best=0.3, coverage=0.3, terms=3), named=True)


def _named_case(question: str, best: float) -> tuple[object, Retrieval]:
    """A stand-in retriever over invented papers, the first naming a drug no other paper
    names, and a retrieval of ``question`` led by that paper."""
    from types import SimpleNamespace

    from carqa.qa.lexical import LexicalIndex

    texts = ["Zorbatinib blocks the kinase XQR1 in tumour cells and slows tumour growth."]
    texts += [
        f"The mechanism of action of kinase {i} in tumour cells, cohort {i}." for i in range(18)
    ]
    texts.append("A rapid antidepressant at work in rats.")
    lexical = LexicalIndex(texts)
    retriever = SimpleNamespace(lexical=lexical, position={str(i + 1): i for i in range(20)})
    retrieval = _retrieval(best, 0.5)  # as in a large corpus: "mechanism", "action" weigh
    retrieval.query = question
    retrieval.terms = len(set(tokenize(question)))
    return retriever, retrieval


def test_a_question_about_a_name_in_the_top_paper_is_answered() -> None:
    """ "What is the mechanism of action of X?": the top paper names X and nothing else of
    the question but its frame; a sentence at 0.5 is evidence enough."""
    from carqa.qa.answer import names_found

    retriever, retrieval = _named_case("What is the mechanism of action of zorbatinib?", 0.5)
    assert retrieval.confidence < ABSTAIN_THRESHOLD and retrieval.terms == 3
    named = names_found(retriever, retrieval)  # type: ignore[arg-type]
    assert named and not should_abstain(retrieval, named=named)


def test_a_name_alone_does_not_answer_a_question_about_more() -> None:
    from carqa.qa.answer import FRAMED_MIN_SIMILARITY, names_found

    retriever, retrieval = _named_case("Does zorbatinib work as a rapid antidepressant?", 0.5)
    assert not names_found(retriever, retrieval)  # type: ignore[arg-type]
    retriever, retrieval = _named_case(
        "What is the mechanism of action of zorbatinib?", FRAMED_MIN_SIMILARITY - 0.01
    )
    assert not names_found(retriever, retrieval)  # type: ignore[arg-type]


def test_a_name_in_the_top_papers_title_is_what_the_paper_is_about() -> None:
    """ "What is zorbatinib?" with no sentence close enough to quote (as "What is PWMScan?"
    at 0.38): the top paper's title names zorbatinib, so the paper is about the thing asked."""
    from carqa.qa.answer import names_found, names_in_title

    question = "What is zorbatinib?"
    retriever, retrieval = _named_case(question, MIN_BEST_SIMILARITY - 0.05)
    assert should_abstain(retrieval) and not names_found(retriever, retrieval)  # type: ignore[arg-type]
    title = "Zorbatinib, a kinase inhibitor, in tumour cells"
    assert names_in_title(retriever, retrieval, title)  # type: ignore[arg-type]


def test_a_name_met_only_in_the_abstract_or_unknown_to_the_corpus_is_not_enough() -> None:
    from carqa.qa.answer import names_in_title

    retriever, retrieval = _named_case("What is zorbatinib?", 0.35)
    assert not names_in_title(retriever, retrieval, "Kinase inhibitors in tumour cells")  # type: ignore[arg-type]
    # A word no paper uses: the corpus cannot be about the question at all.
    retriever, retrieval = _named_case("What is the dosage of quorbazumab?", 0.35)
    assert not names_in_title(retriever, retrieval, "Quorbazumab in practice")  # type: ignore[arg-type]
    # Nothing retrieved.
    retrieval.papers = []
    assert not names_in_title(retriever, retrieval, "Zorbatinib")  # type: ignore[arg-type]
