from __future__ import annotations

from dataclasses import dataclass

import pytest
from carqa.qa.priors import sentence_priors


@dataclass(frozen=True)
class S:
    pmid: str
    section_category: str | None
    position: int
    count: int
    text: str


def unlabelled(texts: list[str], pmid: str = "2") -> list[S]:
    return [S(pmid, None, i, len(texts), t) for i, t in enumerate(texts)]


def test_labelled_conclusion_beats_results_beats_background() -> None:
    sentences = [
        S("1", "BACKGROUND", 0, 4, "CAR T cells are a new treatment for leukaemia."),
        S("1", "METHODS", 1, 4, "We treated thirty children in an invented trial."),
        S("1", "RESULTS", 2, 4, "Remission was reached in twenty-seven of thirty."),
        S("1", "CONCLUSIONS", 3, 4, "CAR T cells induce durable remissions."),
    ]
    assert sentence_priors(sentences).tolist() == pytest.approx([0.0, 0.0, 0.25, 1.0])


def test_unlabelled_abstract_prior_rises_towards_the_end() -> None:
    texts = [f"Plain sentence number {i} about the study design." for i in range(6)]
    priors = sentence_priors(unlabelled(texts)).tolist()
    assert priors == sorted(priors)
    assert priors[0] == 0.0
    assert priors[-1] > 0.9


def test_conclusion_cues_raise_the_prior_near_the_end() -> None:
    plain = unlabelled(
        ["A first sentence of background here.", "Rates were 40% in both arms.", "x" * 30]
    )
    cued = unlabelled(
        ["A first sentence of background here.", "These findings suggest a benefit.", "x" * 30]
    )
    assert sentence_priors(cued)[1] > sentence_priors(plain)[1]


def test_fragments_and_boilerplate_are_penalised() -> None:
    sentences = unlabelled(
        [
            "Background on the disease and its treatment options.",
            "Lymphodepletion improved expansion of the infused cells.",
            "Trial registration: ClinicalTrials.gov NCT00000000.",
        ]
    )
    priors = sentence_priors(sentences)
    assert priors[2] < 0.6  # the last sentence, but boilerplate
    assert priors[1] > priors[2]
    assert sentence_priors(unlabelled(["A reasonable first sentence of text.", "1."]))[1] < 0.6


def test_a_labelled_paper_without_conclusions_uses_positions() -> None:
    sentences = [
        S("3", "BACKGROUND", 0, 3, "Background sentence about CAR T cells."),
        S("3", "RESULTS", 1, 3, "Results sentence about remission rates."),
        S("3", "RESULTS", 2, 3, "Another results sentence, the final one."),
    ]
    priors = sentence_priors(sentences)
    assert priors[2] > priors[0]
