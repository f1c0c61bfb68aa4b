"""How likely a sentence is to state a paper's conclusion — a prior for evidence selection.

A question is best answered by what a study *concluded*, not by its background or methods; among
sentences that match a question about equally, we want the conclusion. Two sources of evidence:

- **Labelled abstracts**: the publisher's section says it. A sentence in a CONCLUSIONS section gets
  prior 1; RESULTS (findings) get a smaller prior; background, objective and methods get 0.
- **Unlabelled abstracts** (many Nature/Science abstracts have no labels): the conclusion is at
  the end, and it is phrased as a conclusion ("these findings suggest", "may", "should"). The
  prior is the probability that a sentence belongs to the conclusion given its position from the
  end of the abstract and whether it contains a conclusion cue. We estimated that table on the
  1,000 labelled PubMedQA abstracts (their conclusion section known, their text split as if
  unlabelled); the numbers below are those estimates, rounded. The same table held within ±0.05
  when estimated on either half of the dev questions' papers.

The prior is computed once per index (a vector over all sentences), so using it costs nothing
per question.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Protocol

import numpy as np

CONCLUSION_CUES = re.compile(
    r"\b(?:suggests?|suggested|conclu\w*|these (?:results|findings|data|observations)"
    r"|our (?:results|findings|data)|this study (?:shows|demonstrates|suggests)"
    r"|may|might|should|could|indicat\w*|support\w*|warrant\w*"
    r"|further (?:studies|research|investigation|trials)|recommend\w*|implication\w*"
    r"|in summary|taken together|appears?|seems?)\b",
    re.IGNORECASE,
)

# P(sentence is in the conclusion | sentences from the end, has a cue): rows 0, 1, 2, 3, 4+.
POSITION_CUE_PRIOR = np.array(
    [
        [0.99, 0.99],
        [0.58, 0.89],
        [0.18, 0.59],
        [0.03, 0.22],
        [0.00, 0.00],
    ],
    dtype=np.float32,
)

SECTION_PRIOR: dict[str, float] = {
    "CONCLUSIONS": 1.0,
    "RESULTS": 0.25,
}
"""Prior by NLM section category in an abstract that has a CONCLUSIONS section."""

MIN_SENTENCE_CHARS = 25
SHORT_PENALTY = 0.5
"""Fragments ("1.", "(ABSTRACT TRUNCATED)") are poor answers on their own; so is boilerplate
that closes many abstracts (trial registration, funding, copyright)."""
BOILERPLATE = re.compile(
    r"^\W*(?:trial registration|clinical ?trials?\.gov|registration(?: number)?:|funding\b"
    r"|copyright\b|©|level of evidence|keywords?:|\(?abstract truncated)",
    re.IGNORECASE,
)


class SentenceLike(Protocol):
    pmid: str
    section_category: str | None
    position: int
    count: int
    text: str


def has_conclusion_cue(text: str) -> bool:
    return CONCLUSION_CUES.search(text) is not None


def sentence_priors(sentences: Sequence[SentenceLike]) -> np.ndarray:
    """The prior of every sentence (float32, one per sentence, same order)."""
    labelled = {s.pmid for s in sentences if (s.section_category or "").upper() == "CONCLUSIONS"}
    priors = np.zeros(len(sentences), dtype=np.float32)
    for i, sentence in enumerate(sentences):
        if sentence.pmid in labelled:
            prior = SECTION_PRIOR.get((sentence.section_category or "").upper(), 0.0)
        else:
            from_end = min(max(sentence.count - 1 - sentence.position, 0), 4)
            prior = float(POSITION_CUE_PRIOR[from_end, int(has_conclusion_cue(sentence.text))])
        if len(sentence.text.strip()) < MIN_SENTENCE_CHARS or BOILERPLATE.match(sentence.text):
            prior -= SHORT_PENALTY
        priors[i] = prior
    return priors
