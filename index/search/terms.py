"""The words BM25 counts: one tokenizer for the build (postings written with the index) and for
questions (:mod:`carqa.qa.lexical`), so both sides always analyse text alike.

Why our own tokenizer: biomedical names carry hyphens and digits ("CAR-T", "IL-6", "4-1BB"),
which we keep both split and joined ("il", "6", "il6") so every spelling meets; words are
Snowball-stemmed (PyStemmer) so "prostatic" meets "prostate" and "relapses" meets "relapse".
"""

from __future__ import annotations

import logging
import re
from functools import lru_cache

import Stemmer
from bm25s.stopwords import STOPWORDS_EN, STOPWORDS_EN_PLUS

# bm25s sets its own logger to DEBUG when imported, which overrides the application's level:
# as soon as anything installs a root handler (onnxruntime's quantiser logs through the root
# logger during a build, which calls logging.basicConfig), every start printed
# "DEBUG:bm25s:Building index from tokens". NOTSET makes it follow the root level like any
# library's logger.
logging.getLogger("bm25s").setLevel(logging.NOTSET)

# Question words carry no topic; "patients" is in nearly every abstract. Chat-style requests
# ("Can you tell me about ...", "What is known about ...", "Explain ...") add words no abstract
# uses: as terms they lowered the word share that abstention reads and refused clear questions.
# bm25s's longer English list (STOPWORDS_EN_PLUS: "me", "you", "about", ...) covers most.
STOPWORDS = (
    frozenset(STOPWORDS_EN)
    | frozenset(STOPWORDS_EN_PLUS)
    | {
        "does",
        "do",
        "did",
        "is",
        "are",
        "was",
        "were",
        "can",
        "could",
        "what",
        "which",
        "who",
        "whom",
        "how",
        "why",
        "when",
        "where",
        "whether",
        "there",
        "any",
        "patients",
        "tell",
        "explain",
        "describe",
        "define",
        "summarise",
        "summarize",
        "please",
        "know",
        "known",
    }
)
_TOKEN = re.compile(r"[a-z0-9]+(?:[-/][a-z0-9]+)*")
_JOINERS = re.compile(r"[-/]")


@lru_cache(maxsize=1)
def _stemmer() -> Stemmer.Stemmer:
    return Stemmer.Stemmer("english")


def tokenize(text: str) -> list[str]:
    """Lowercased, stop-word-free, stemmed tokens; hyphenated words also appear joined."""
    words: list[str] = []
    for match in _TOKEN.findall(text.lower()):
        parts = _JOINERS.split(match)
        candidates = [*parts, "".join(parts)] if len(parts) > 1 else parts
        for word in candidates:
            if word in STOPWORDS or (len(word) < 2 and not word.isdigit()):
                continue
            words.append(word)
    return _stemmer().stemWords(words)
