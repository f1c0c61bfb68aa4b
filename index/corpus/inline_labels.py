"""Structured abstracts flattened into one string: "BACKGROUND: ... METHODS: ... RESULTS: ...".

PubMed XML keeps an abstract's sections apart (``AbstractText Label=... NlmCategory=...``), but
many exports do not: MEDLINE text format's ``AB`` field, spreadsheets, and JSONL corpora built
from them (the BioASQ corpus has about 1,900 such abstracts) join the sections, each after its
label in capitals. Left as they are, the labels are quoted as part of the first sentence of
each section ("RESULTS: Overall survival was better ...") and the conclusion prior
(:mod:`carqa.qa.priors`) cannot tell the conclusion from the background. So a flat abstract is
split back into sections at its labels.

A label is only recognised as one where a section starts (at the beginning of the abstract or
right after a sentence's end), written in capitals, ending with a colon, and made of the words
structured abstracts use (``LABEL_WORDS``): "BACKGROUND AND AIMS:" is a
label, "HIV:" or "BRCA1:" is not. Its NLM category follows its first word that names one
(``CATEGORY_OF``), as NLM's own mapping of labels does for the common ones; a label naming none
("UNLABELLED", "ABSTRACT") keeps its text as a label with no category.
"""

from __future__ import annotations

import re

from carqa.index.corpus.models import Section

CATEGORY_OF: dict[str, str] = {
    "BACKGROUND": "BACKGROUND",
    "INTRODUCTION": "BACKGROUND",
    "CONTEXT": "BACKGROUND",
    "RATIONALE": "BACKGROUND",
    "IMPORTANCE": "BACKGROUND",
    "OBJECTIVE": "OBJECTIVE",
    "OBJECTIVES": "OBJECTIVE",
    "PURPOSE": "OBJECTIVE",
    "AIM": "OBJECTIVE",
    "AIMS": "OBJECTIVE",
    "GOAL": "OBJECTIVE",
    "GOALS": "OBJECTIVE",
    "METHODS": "METHODS",
    "METHOD": "METHODS",
    "MATERIALS": "METHODS",
    "MATERIAL": "METHODS",
    "PATIENTS": "METHODS",
    "DESIGN": "METHODS",
    "SETTING": "METHODS",
    "PARTICIPANTS": "METHODS",
    "SUBJECTS": "METHODS",
    "INTERVENTIONS": "METHODS",
    "MEASUREMENTS": "METHODS",
    "RESULTS": "RESULTS",
    "FINDINGS": "RESULTS",
    "CONCLUSIONS": "CONCLUSIONS",
    "CONCLUSION": "CONCLUSIONS",
    "INTERPRETATION": "CONCLUSIONS",
    "IMPLICATIONS": "CONCLUSIONS",
    "SUMMARY": "CONCLUSIONS",
}
"""A label's category is that of its first word found here ("PATIENTS AND METHODS" → METHODS,
"BACKGROUND AND AIMS" → BACKGROUND)."""

LABEL_WORDS = frozenset(CATEGORY_OF) | {
    "AND",
    "OF",
    "THE",
    "FOR",
    "IN",
    "STUDY",
    "MAIN",
    "OUTCOME",
    "OUTCOMES",
    "MEASURE",
    "MEASURES",
    "PRIMARY",
    "SECONDARY",
    "KEY",
    "RECENT",
    "REVIEW",
    "AREAS",
    "COVERED",
    "EXPERT",
    "OPINION",
    "CLINICAL",
    "RELEVANCE",
    "SIGNIFICANCE",
    "EVIDENCE",
    "ACQUISITION",
    "SYNTHESIS",
    "DATA",
    "SOURCES",
    "SELECTION",
    "EXTRACTION",
    "LIMITATIONS",
    "DISCUSSION",
    "HYPOTHESIS",
    "PROCEDURES",
    "PRINCIPAL",
    "EXPERIMENTAL",
    "APPROACH",
    "TRIAL",
    "REGISTRATION",
    "FUNDING",
    "UNLABELLED",
    "ABSTRACT",
    "PRESENTATION",
    "CASE",
    "REPORT",
}
"""Words a structured abstract's labels are made of."""

_LABEL = re.compile(r"(?:^|(?<=[.!?]\s))([A-Z][A-Z &/,-]{1,80}?):\s+")


def _is_label(text: str) -> bool:
    words = [word for word in re.split(r"[\s&/,-]+", text) if word]
    return bool(words) and all(word in LABEL_WORDS for word in words)


def category_of(label: str) -> str | None:
    """The NLM category of ``label`` (its first word that names one), else None."""
    for word in re.split(r"[\s&/,-]+", label.upper()):
        if word in CATEGORY_OF:
            return CATEGORY_OF[word]
    return None


def inline_sections(abstract: str) -> list[Section]:
    """``abstract`` as sections, split at its inline labels; one unlabelled section when it
    has none. Text before the first label is kept, as an unlabelled section (an excerpt that
    starts inside an abstract: "... were enrolled. CONCLUSIONS: ...")."""
    text = abstract.strip()
    if not text:
        return []
    starts = [m for m in _LABEL.finditer(text) if _is_label(m.group(1))]
    if not starts:
        return [Section(text=text)]
    sections: list[Section] = []
    before = text[: starts[0].start()].strip()
    if before:
        sections.append(Section(text=before))
    for i, match in enumerate(starts):
        end = starts[i + 1].start() if i + 1 < len(starts) else len(text)
        body = text[match.end() : end].strip()
        if body:
            label = " ".join(match.group(1).split())
            sections.append(Section(text=body, label=label, category=category_of(label)))
    return sections or [Section(text=text)]
