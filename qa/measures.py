"""Answer-quality measures for topical questions with several relevant papers (BioASQ style).

Defined once, here, so ``carqa eval`` and any script comparing systems score answers alike.
Every function takes plain values (ranked pmids, cited sentences, answer text), not engine
objects: an answer from any system can be scored.

- ``average_precision_at_10``: AP over the first 10 ranked papers, divided by
  ``min(|gold|, 10)`` (BioASQ's MAP@10 per question);
- ``success_at_1``: the top paper is gold;
- ``snippet_hit``: one of the first three cited sentences overlaps a gold snippet — shared word
  tokens at least ``SNIPPET_OVERLAP`` of the shorter of the two (a sentence is usually shorter
  than its snippet, and a snippet can be a part of a sentence);
- ``exact_score``: factoid — some synonym of the answer occurs in the answer text; list — the
  share of items of which some synonym occurs (lower-cased, punctuation-insensitive, whole words);
- ``rouge2``: recall of the reference answer's word bigrams (counted with multiplicity) by the
  answer text;
- ``cite_precision``: share of cited sentences that come from a gold paper.

The answer text is scored without its ``[n]`` citation markers.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Sequence
from itertools import pairwise

SNIPPET_OVERLAP = 0.6
RANKED = 10

_MARKER = re.compile(r"\s*\[\d+(?:\s*[,-]\s*\d+)*\]")
_WORD = re.compile(r"[a-z0-9]+")


def plain_answer(text: str) -> str:
    """The answer text without its ``[n]`` markers."""
    return _MARKER.sub("", text)


def words(text: str) -> list[str]:
    """Lower-cased alphanumeric tokens: punctuation and case do not matter."""
    return _WORD.findall(text.lower())


def average_precision_at_10(ranked: Sequence[str], gold: Iterable[str]) -> float:
    """AP of the first ``RANKED`` papers over ``gold``, normalised by ``min(|gold|, 10)``."""
    wanted = set(gold)
    if not wanted:
        return 0.0
    hits, total, seen = 0, 0.0, set()
    for i, pmid in enumerate(ranked[:RANKED], 1):
        if pmid in wanted and pmid not in seen:
            hits += 1
            total += hits / i
        seen.add(pmid)
    return total / min(len(wanted), RANKED)


def success_at_1(ranked: Sequence[str], gold: Iterable[str]) -> float:
    return 1.0 if ranked and ranked[0] in set(gold) else 0.0


def token_overlap(a: str, b: str) -> float:
    """Shared distinct word tokens as a share of the shorter text's distinct tokens."""
    left, right = set(words(a)), set(words(b))
    if not left or not right:
        return 0.0
    return len(left & right) / min(len(left), len(right))


def snippet_hit(cited: Sequence[str], snippets: Sequence[str], first: int = 3) -> float:
    """1.0 when one of the first ``first`` cited sentences overlaps some gold snippet."""
    return float(
        any(
            token_overlap(sentence, snippet) >= SNIPPET_OVERLAP
            for sentence in cited[:first]
            for snippet in snippets
        )
    )


def _phrase_in(phrase: str, haystack: str) -> bool:
    needle = " ".join(words(phrase))
    return bool(needle) and f" {needle} " in haystack


def exact_score(text: str, kind: str, exact: object) -> float | None:
    """Factoid: 1.0 if a synonym occurs in ``text``; list: share of items found. None for other
    kinds (yes/no and summary questions have no exact answer to find in a text)."""
    if kind not in ("factoid", "list") or not isinstance(exact, list) or not exact:
        return None
    haystack = f" {' '.join(words(plain_answer(text)))} "
    items = [item if isinstance(item, list) else [item] for item in exact]
    found = [any(_phrase_in(str(s), haystack) for s in synonyms) for synonyms in items]
    if kind == "factoid":
        return float(any(found))
    return sum(found) / len(found)


def _bigrams(tokens: Sequence[str]) -> Counter[tuple[str, str]]:
    return Counter(pairwise(tokens))


def rouge2(text: str, reference: str) -> float:
    """Recall of ``reference``'s word bigrams by ``text`` (clipped counts)."""
    wanted = _bigrams(words(reference))
    if not wanted:
        return 0.0
    have = _bigrams(words(plain_answer(text)))
    return sum(min(n, have[b]) for b, n in wanted.items()) / sum(wanted.values())


def cite_precision(cited_pmids: Sequence[str], gold: Iterable[str]) -> float | None:
    """Share of cited sentences from a gold paper (None when nothing is cited)."""
    if not cited_pmids:
        return None
    wanted = set(gold)
    return sum(1 for pmid in cited_pmids if pmid in wanted) / len(cited_pmids)
