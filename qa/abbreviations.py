"""Abbreviations the corpus defines itself, as lexicon groups ("amyotrophic lateral sclerosis"
= "ALS").

Abstracts define their abbreviations once ("... amyotrophic lateral sclerosis (ALS) ...") and
then use them; questions use either. BM25 never matches one against the other, so a question
naming "ALS" missed the papers that only wrote the words out, and the other way round. The
shipped lexicon knows CAR T names only; this finds the pairs of any field in the indexed text.

Detection follows Schwartz & Hearst (PSB 2003), "A simple algorithm for identifying abbreviation
definitions in biomedical text": a short form in parentheses after a long form, where every
character of the short form occurs in the long form in order, its first character starting a
word, and the long form has at most ``min(len + 5, 2 * len)`` words. An abbreviation used with
several long forms in the corpus is kept only when one of them is most of its uses
(``MIN_AGREEMENT``): "AD" is Alzheimer's disease in one field and atopic dermatitis in another.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from collections.abc import Iterable

from carqa.qa.lexicon import Lexicon

MIN_AGREEMENT = 0.7
"""Share of an abbreviation's definitions that must agree on one long form."""
MAX_SHORT_CHARS = 10
_PAREN = re.compile(r"\(([^()]{2,10})\)")
_SHORT = re.compile(r"[A-Za-z0-9][\w\-/]*")
_WORD = re.compile(r"\S+")


def _is_short_form(text: str) -> bool:
    """A plausible abbreviation: one token, 2-10 characters, a letter first or some capital,
    not all digits."""
    if not _SHORT.fullmatch(text) or len(text) > MAX_SHORT_CHARS or text.isdigit():
        return False
    return any(c.isupper() for c in text) and sum(c.isalpha() for c in text) >= 2


def _long_form(short: str, before: str) -> str | None:
    """The long form of ``short`` at the end of ``before`` (Schwartz-Hearst), or None."""
    words = _WORD.findall(before)
    limit = min(len(short) + 5, 2 * len(short))
    candidate = " ".join(words[-limit:])
    s_index, l_index = len(short) - 1, len(candidate) - 1
    while s_index >= 0:
        char = short[s_index].lower()
        if not char.isalnum():
            s_index -= 1
            continue
        while l_index >= 0 and (
            candidate[l_index].lower() != char
            or (s_index == 0 and l_index > 0 and candidate[l_index - 1].isalnum())
        ):
            l_index -= 1
        if l_index < 0:
            return None
        l_index -= 1
        s_index -= 1
    start = candidate.rfind(" ", 0, l_index + 1) + 1
    long_form = candidate[start:].strip(" ,;:-")
    if len(long_form) <= len(short) or short.lower() in long_form.lower().split():
        return None
    return long_form


def find_definitions(texts: Iterable[str]) -> Counter[tuple[str, str]]:
    """(short form, lower-cased long form) pairs defined in ``texts``, with their counts."""
    found: Counter[tuple[str, str]] = Counter()
    for text in texts:
        if "(" not in text:
            continue
        for match in _PAREN.finditer(text):
            short = match.group(1).strip()
            if not _is_short_form(short):
                continue
            long_form = _long_form(short, text[: match.start()])
            if long_form is not None:
                found[(short, long_form.lower())] += 1
    return found


def abbreviation_groups(texts: Iterable[str]) -> list[tuple[str, str]]:
    """(long form, short form) for every abbreviation the texts define consistently."""
    by_short: dict[str, Counter[str]] = defaultdict(Counter)
    for (short, long_form), count in find_definitions(texts).items():
        by_short[short][long_form] += count
    groups: list[tuple[str, str]] = []
    for short, forms in sorted(by_short.items()):
        long_form, count = forms.most_common(1)[0]
        if count / sum(forms.values()) >= MIN_AGREEMENT:
            groups.append((long_form, short))
    return groups


def with_abbreviations(lexicon: Lexicon, texts: Iterable[str]) -> Lexicon:
    """``lexicon`` plus one group per abbreviation the texts define that it does not cover."""
    known = {term.lower() for group in lexicon.groups for term in group}
    extra = [
        (long_form, short)
        for long_form, short in abbreviation_groups(texts)
        if short.lower() not in known and long_form not in known
    ]
    if not extra:
        return lexicon
    return Lexicon(
        groups=(*lexicon.groups, *extra),
        concepts=(*lexicon.concepts, *(long_form for long_form, _ in extra)),
    )
