"""Questions that ask for a thing by name choose their sentences without the conclusion prior."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
from carqa.qa.answer import PRIOR_WEIGHT, ranked_sentences
from carqa.qa.asking import (
    NAMING_PRIOR_WEIGHT,
    asks_for_a_list,
    asks_for_a_name,
    prior_weight,
    without_list_frame,
)


@pytest.mark.parametrize(
    "question",
    [
        "Which gene is mutated in Woodhouse-Sakati syndrome?",
        "What is the function of the protein DCAF17?",
        "Where is corticosterone synthesized?",
        "  Please give the trade name of tisagenlecleucel.",
        "How many genes does the panel screen?",
        "When was vivotif first licensed in Europe?",
    ],
)
def test_a_question_asking_for_a_thing_by_name(question: str) -> None:
    assert asks_for_a_name(question)
    assert prior_weight(question, PRIOR_WEIGHT) == NAMING_PRIOR_WEIGHT


@pytest.mark.parametrize(
    "question",
    [
        "List the components of the COMPASS complex.",
        "Please list the genes involved in Sanfilippo syndrome.",
        "Name two inhalable insulin products.",
        "Which drugs are used for CRS?",
        "What are the side effects of statins?",
        "Which molecular targets were tested in the trial?",
    ],
)
def test_a_list_question_keeps_the_prior(question: str) -> None:
    assert asks_for_a_list(question)
    assert not asks_for_a_name(question)
    assert prior_weight(question, PRIOR_WEIGHT) == PRIOR_WEIGHT


@pytest.mark.parametrize(
    "question",
    [
        "Does tocilizumab shorten cytokine release syndrome?",
        "Is selenocysteine an amino acid?",
        "Can students replace faculty as examiners in an OSCE?",
        "Whatever happened to CD22?",  # "what" only as part of a word
        # Asking for what a study found, or for an explanation: the finding answers it.
        "What did CD19 CAR T cells achieve in relapsed childhood leukaemia?",
        "What does the ZUMA-1 trial show about axicabtagene ciloleucel?",
        "Why do patients relapse after CD19 CAR T?",
        "How does tisagenlecleucel work?",
        "Describe the mechanism of action of blinatumomab.",
    ],
)
def test_yes_no_questions_findings_and_explanations_keep_the_prior(question: str) -> None:
    assert not asks_for_a_name(question)
    assert prior_weight(question, PRIOR_WEIGHT) == PRIOR_WEIGHT


def _one_paper(question: str) -> tuple[SimpleNamespace, SimpleNamespace]:
    """A paper of two sentences: one naming the gene (close to the question, no conclusion
    cue) and its conclusion (less close, a high prior)."""
    rows = [
        SimpleNamespace(
            text="Woodhouse-Sakati syndrome is caused by mutations in DCAF17.",
            section_label="BACKGROUND",
            section_category="BACKGROUND",
        ),
        SimpleNamespace(
            text="These findings suggest that carriers should be offered counselling.",
            section_label="CONCLUSIONS",
            section_category="CONCLUSIONS",
        ),
    ]
    retriever = SimpleNamespace(
        paper_sentences=lambda pmid: np.array([0, 1]),
        sentence_priors=np.array([0.0, 0.9]),
        index=SimpleNamespace(sentences=rows),
    )
    retrieval = SimpleNamespace(query=question, sentence_scores=np.array([0.70, 0.60]))
    return retriever, retrieval


def test_a_naming_question_leads_with_the_sentence_that_names_it() -> None:
    retriever, retrieval = _one_paper("Which gene is mutated in Woodhouse-Sakati syndrome?")
    ranked = ranked_sentences(retriever, retrieval, "1", 0)  # type: ignore[arg-type]
    assert "DCAF17" in ranked[0].text
    assert ranked[0].score == pytest.approx(0.70)
    assert ranked[1].score == pytest.approx(0.60 + NAMING_PRIOR_WEIGHT * 0.9)


def test_a_yes_no_question_still_leads_with_the_conclusion() -> None:
    retriever, retrieval = _one_paper("Is Woodhouse-Sakati syndrome caused by a gene mutation?")
    ranked = ranked_sentences(retriever, retrieval, "1", 0)  # type: ignore[arg-type]
    assert ranked[0].text.startswith("These findings")
    assert ranked[0].score == pytest.approx(0.60 + PRIOR_WEIGHT * 0.9)


def test_a_methods_sentence_does_not_join_a_naming_answer() -> None:
    """Without the prior in ranking, a methods sentence close in words scores nearly as well as
    the lead; the join gate still reads the prior at full weight and keeps it out."""
    from carqa.qa.answer import Evidence, joins_answer

    lead = Evidence(0, "1", 0, "Drug Z lowered relapse in disease Q.", None, 0.70, 1.0, 0.0)
    methods = Evidence(1, "1", 0, "Relapse with drug Z was recorded weekly.", None, 0.66, 0.0, 0.0)
    finding = Evidence(2, "2", 1, "Relapse fell with drug Z.", None, 0.62, 0.9, 0.0)
    terms = frozenset({"relaps", "drug"})
    assert methods.score > lead.score - 0.1  # close once the prior does not count
    assert not joins_answer(methods, lead, terms)
    assert joins_answer(finding, lead, terms)


@pytest.mark.parametrize(
    ("question", "searched"),
    [
        (
            "List two medications included in the Juluca pill.",
            "medications included in the Juluca pill.",
        ),
        ("Name two inhalable insulin products.", "inhalable insulin products."),
        (
            "Please list the 4 genes involved in Sanfilippo syndrome",
            "genes involved in Sanfilippo syndrome",
        ),
        (
            "List as many European influenza vaccines as possible.",
            "European influenza vaccines as possible.",
        ),
        (
            "Which two drugs are included in the MAVYRET pill?",
            "Which drugs are included in the MAVYRET pill?",
        ),
        ("What are the 3 types of immunoglobulin?", "What are the types of immunoglobulin?"),
        ("List cohesinopathies", "cohesinopathies"),
    ],
)
def test_a_list_question_is_searched_without_its_frame(question: str, searched: str) -> None:
    assert without_list_frame(question) == searched


@pytest.mark.parametrize(
    "question",
    [
        "Which 3D imaging technique is used for glaucoma?",  # not a count
        "What is the role of IL-6 in CRS?",
        "Does tocilizumab shorten CRS?",
        "List",  # nothing would be left
    ],
)
def test_other_questions_are_searched_as_asked(question: str) -> None:
    assert without_list_frame(question) == question


def test_retrieval_searches_the_list_question_without_its_frame(engine) -> None:  # type: ignore[no-untyped-def]
    retrieval = engine.retrieve("List the two costimulatory domains used in CAR T cells.")
    assert retrieval.query == "costimulatory domains used in CAR T cells."
