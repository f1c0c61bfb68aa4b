"""CAR T vocabulary: many names for one thing, used to expand lexical (BM25) queries.

The literature calls one product "tisagenlecleucel", "Kymriah" and "CTL019"; dense retrieval
often bridges such names, BM25 never does. The lexicon (``qa/data/lexicon.json``, facts we wrote)
lists groups of equivalent names; when a question mentions one name, the others are added to the
lexical query. Matching is deliberately simple and explainable:

- case-insensitive, with hyphens, slashes and runs of spaces treated alike
  ("CAR-T" == "car t"), on whole words only;
- a term that is one all-capital word of at most five letters ("ALL", "CRS", "MM") only matches
  in capitals, so the ordinary words "all" or "mm" never trigger an expansion.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

from carqa.errors import InputError

_SEPARATORS = re.compile(r"[\s\-/]+")
_ACRONYM = re.compile(r"[A-Z]{1,5}")


def _normalise(text: str, *, lower: bool) -> str:
    text = _SEPARATORS.sub(" ", text).strip()
    return text.lower() if lower else text


def _is_case_sensitive(term: str) -> bool:
    return _ACRONYM.fullmatch(term) is not None


_WORD = re.compile(r"\w+")


class _Matcher:
    """Finds the terms of a table in a text on whole words, longest first at each position,
    never overlapping: what one regular expression ``(?<!\\w)(?:t1|t2|...)(?!\\w)`` does, but
    by looking up the runs of words that start at each word (a term that starts and ends with
    a word character can only match such a run). With the abbreviations of a corpus the
    lexicon has thousands of terms, and an alternation of them tried every term at every
    position of every question."""

    def __init__(self, terms: list[str]) -> None:
        self.terms: frozenset[str] = frozenset()
        self.max_words = 0
        regular: list[str] = []
        others: list[str] = []
        for term in set(terms):
            if term and _is_word(term[0]) and _is_word(term[-1]):
                regular.append(term)
                self.max_words = max(self.max_words, len(_WORD.findall(term)))
            else:
                others.append(term)  # "Na+", "(R)-...": found the regular-expression way
        self.terms = frozenset(regular)
        body = "|".join(re.escape(t) for t in sorted(others, key=len, reverse=True))
        self.others = re.compile(rf"(?<![\w])(?:{body})(?![\w])") if others else None

    def find(self, text: str) -> list[str]:
        """The terms found in ``text``, in order of position."""
        found: list[tuple[int, str]] = []
        if self.terms:
            words = [(m.start(), m.end()) for m in _WORD.finditer(text)]
            k = 0
            while k < len(words):
                start = words[k][0]
                longest = None
                for j in range(k, min(len(words), k + self.max_words)):
                    span = text[start : words[j][1]]
                    if span in self.terms:
                        longest = (j, span)
                if longest is None:
                    k += 1
                    continue
                found.append((start, longest[1]))
                k = longest[0] + 1
        if self.others is not None:
            found.extend((m.start(), m.group(0)) for m in self.others.finditer(text))
            found.sort()
        return [term for _, term in found]


def _is_word(char: str) -> bool:
    return _WORD.match(char) is not None


@dataclass(frozen=True)
class Lexicon:
    """Groups of equivalent terms and two compiled matchers (case-insensitive, acronyms)."""

    groups: tuple[tuple[str, ...], ...]
    concepts: tuple[str, ...]

    def __post_init__(self) -> None:
        folded: dict[str, set[int]] = {}
        exact: dict[str, set[int]] = {}
        for number, terms in enumerate(self.groups):
            for term in terms:
                if _is_case_sensitive(term):
                    exact.setdefault(term, set()).add(number)
                else:
                    folded.setdefault(_normalise(term, lower=True), set()).add(number)
        object.__setattr__(self, "_folded", folded)
        object.__setattr__(self, "_exact", exact)
        object.__setattr__(self, "_folded_matcher", _Matcher(list(folded)))
        object.__setattr__(self, "_exact_matcher", _Matcher(list(exact)))
        # Retrieval asks about the same question several times (BM25, coverage, bridging).
        object.__setattr__(self, "matched_groups", lru_cache(maxsize=2048)(self._matched_groups))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Lexicon:
        groups: list[tuple[str, ...]] = []
        concepts: list[str] = []
        for group in data.get("groups", []):
            terms = tuple(str(term).strip() for term in group.get("terms", []) if str(term).strip())
            if len(terms) < 2:
                raise InputError(
                    f"lexicon group {group.get('concept')!r} needs at least two terms",
                    hint="Each group lists equivalent names; a single name expands to nothing.",
                )
            groups.append(terms)
            concepts.append(str(group.get("concept") or terms[0]))
        return cls(groups=tuple(groups), concepts=tuple(concepts))

    @classmethod
    def load(cls, path: Path | None = None) -> Lexicon:
        """The lexicon in ``path``, or the one shipped in ``qa/data/lexicon.json``."""
        try:
            if path is None:
                text = resources.files("carqa.qa").joinpath("data/lexicon.json").read_text("utf-8")
            else:
                text = Path(path).read_text("utf-8")
            return cls.from_dict(json.loads(text))
        except (OSError, json.JSONDecodeError) as error:
            raise InputError(
                f"cannot read the lexicon {path or 'qa/data/lexicon.json'}: {error}",
                hint='The lexicon is a JSON file: {"groups": [{"concept": ..., "terms": [...]}]}.',
            ) from error

    def _matched_groups(self, text: str) -> tuple[int, ...]:
        """Indexes of the groups with a term occurring in ``text``, in first-mention order."""
        found: list[int] = []
        for matcher, table, lower in (
            (self._folded_matcher, self._folded, True),  # type: ignore[attr-defined]
            (self._exact_matcher, self._exact, False),  # type: ignore[attr-defined]
        ):
            for term in matcher.find(_normalise(text, lower=lower)):
                for number in sorted(table[term]):
                    if number not in found:
                        found.append(number)
        return tuple(found)

    def matched_groups(self, text: str) -> tuple[int, ...]:  # replaced by a cached version
        return self._matched_groups(text)

    def expansions(self, text: str) -> list[str]:
        """The equivalent terms ``text`` does not already contain, for the lexical query."""
        extra: list[str] = []
        for _, missing in self.group_terms(text):
            extra.extend(term for term in missing if term not in extra)
        return extra

    def group_terms(self, text: str) -> list[tuple[tuple[str, ...], tuple[str, ...]]]:
        """Per group ``text`` names, in first-mention order: (its terms ``text`` contains, its
        terms ``text`` does not contain). Retrieval needs both: the terms typed are what was
        asked; the others only find papers that name the same thing another way."""
        present = _normalise(text, lower=True)
        result: list[tuple[tuple[str, ...], tuple[str, ...]]] = []
        for number in self.matched_groups(text):
            typed: list[str] = []
            missing: list[str] = []
            for term in self.groups[number]:
                folded = _normalise(term, lower=True)
                found = re.search(rf"(?<![\w]){re.escape(folded)}(?![\w])", present)
                (typed if found else missing).append(term)
            result.append((tuple(typed), tuple(missing)))
        return result


@lru_cache(maxsize=1)
def default_lexicon() -> Lexicon:
    """The shipped lexicon, parsed once per process."""
    return Lexicon.load()
