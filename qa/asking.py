"""What kind of answer a question asks for, read from its opening words — and how much the
conclusion prior should weigh in choosing its sentences.

Evidence sentences are scored by their cosine with the question plus a prior for stating the
paper's conclusion (:mod:`carqa.qa.priors`). That prior is right for a yes/no question: "Does
drug Z lower relapse?" is decided by what the study found, and without the prior a PubMedQA
answer leads with the conclusion for 26 % of the dev questions instead of 99 %. It is right for
a question asking what a study showed, or why or how something happens ("Why do patients
relapse after CD19 CAR T?": the causes are the finding), and for a list question, whose items
a paper usually states as its finding ("X, Y and Z were identified"). A question that asks for
a thing by name — "Which gene is mutated in ...?", "What is the function of ...?", "Where is
... made?", "How many ...?" — is answered by whichever sentence names that thing, which is as
often the background or the results as the conclusion: there the prior led with the paper's
verdict on something else, so it does not weigh in ranking those sentences.
(``carqa.qa.answer.joins_answer`` still reads the prior at full weight, so a methods sentence
close in words does not join such an answer.)

On the BioASQ dev questions (1,497), ranking the sentences of naming questions without the
prior raised rouge2 0.369 → 0.378, exact 0.530 → 0.532, snippet@3 0.886 → 0.888 and cite
precision 0.854 → 0.855 (on either half of the questions the first three not lower, cite
precision 0.864 → 0.863 on one). PubMedQA questions are
yes/no questions: their answers are unchanged.

A list question is searched without the words that only ask for a list
(:func:`without_list_frame`): "List the four ...", "Name two ...", "Which two drugs ...". As
terms they were held by no paper, so the paper that answers looked as if it covered little of
the question: on the BioASQ dev questions 10.0 % of list questions were refused, 6.9 % without
the frame, and overall refusals fell from 5.0 % to 4.4 % (exact 0.533 → 0.541, snippet@3 0.887
→ 0.892, MAP@10 0.825 → 0.827, cite precision 0.854 → 0.853), each better on either half of
the questions but cite precision (lower on one half: the questions now answered are harder
ones); PubMedQA unchanged.
"""

from __future__ import annotations

import re

NAMING_PRIOR_WEIGHT = 0.0
"""The conclusion prior's weight for a question asking for a thing by name
(:func:`asks_for_a_name`); other questions weigh it 1.0 (``carqa.qa.answer.PRIOR_WEIGHT``)."""

_ASKING = re.compile(
    r"^\W*(?:please\s+)?(?:what|which|where|when|who|whom|whose|how\s+(?:many|much|long|old|often)"
    r"|define|give)\b",
    re.IGNORECASE,
)
_FINDING = re.compile(
    r"^\W*what\s+(?:did|does|do|have|has)\b.*\b(?:show|find|found|achieve|report|reveal"
    r"|demonstrate|conclude|suggest)\w*",
    re.IGNORECASE,
)
_LISTING = re.compile(
    r"^\W*(?:(?:please\s+)?(?:list|name|enumerate|mention)\b"
    r"|(?:which|what)\s+(?:[\w-]+\s+){0,3}?(?:are|were|have|include)\b)",
    re.IGNORECASE,
)


_COUNT = r"(?:\d{1,2}|two|three|four|five|six|seven|eight|nine|ten)"
_LIST_FRAME = re.compile(
    rf"^\W*(?:please\s+)?(?:list|name|enumerate|mention)\s+(?:(?:the|all|some|as\s+many)\s+)?"
    rf"(?:{_COUNT}\s+)?"
    rf"|^\W*((?:which|what)\s+(?:are\s+the\s+)?){_COUNT}\s+",
    re.IGNORECASE,
)


def without_list_frame(question: str) -> str:
    """``question`` without the words that only ask for a list: "List the four advances
    integrated into SHERLOCKv2" → "advances integrated into SHERLOCKv2", "Name two inhalable
    insulin products" → "inhalable insulin products", "Which two drugs are in MAVYRET?" →
    "Which drugs are in MAVYRET?". Searched and judged as terms, "list", "name" and the count
    made a list question look less covered by the paper that answers it than it is: no paper
    says "list two". Unchanged when nothing would be left."""
    match = _LIST_FRAME.search(question)
    if match is None:
        return question
    rest = (match.group(1) or "") + question[match.end() :]
    return rest if re.search(r"\w", rest) else question


def asks_for_a_list(question: str) -> bool:
    """ "List the ...", "Name two ...", "Which genes are ...", "What drugs were ...": several
    things asked for at once."""
    return bool(_LISTING.search(question))


def asks_for_a_name(question: str) -> bool:
    """A question asking what, which, how, where, when, who or why about one thing, or to
    describe or explain it: not a yes/no question and not a list (:func:`asks_for_a_list`)."""
    return (
        bool(_ASKING.search(question))
        and not asks_for_a_list(question)
        and not _FINDING.search(question)
    )


def prior_weight(question: str, default: float) -> float:
    """The conclusion prior's weight for ``question``: ``NAMING_PRIOR_WEIGHT`` when it asks for
    a thing by name, ``default`` otherwise (yes/no questions, findings, explanations, lists)."""
    return NAMING_PRIOR_WEIGHT if asks_for_a_name(question) else default
