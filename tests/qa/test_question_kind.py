"""``carqa.qa.question_kind``: the kind of answer a question asks for, from its wording."""

from __future__ import annotations

import pytest
from carqa.qa.question_kind import question_kind


@pytest.mark.parametrize(
    ("question", "kind"),
    [
        ("Is drug Z effective for disease Q?", "yesno"),
        ("Does gene X regulate apoptosis?", "yesno"),
        ("List the side effects of drug Z.", "list"),
        ("Please list symptoms of disease Q.", "list"),
        ("Which genes are mutated in disease Q?", "list"),
        ("What are the subunits of complex W?", "list"),
        ("How does drug Z lower blood pressure?", "summary"),
        ("What is the role of gene X in disease Q?", "summary"),
        ("What is progeria?", "summary"),
        ("Which drug is used against disease Q?", "factoid"),
        ("What is the indication for drug Z?", "factoid"),
        ("Who discovered penicillin?", "factoid"),
    ],
)
def test_question_kind_reads_the_opening_words(question: str, kind: str) -> None:
    assert question_kind(question) == kind
