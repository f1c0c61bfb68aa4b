"""When a question is blank: one rule for every way in (HTTP API, ``carqa ask``/``chat``/``eval``).

A question is blank when it shows nothing: every character is whitespace or an invisible
character. A zero-width space, a soft hyphen or a right-to-left mark alone is no more a question
than a space alone, and was answered with an abstention where spaces were refused. Invisible
characters *inside* a question ("CD19\\u200b CAR T?") do not make it blank.

Invisible means the Unicode general categories Cc (controls), Cf (format: zero-width space and
joiners, word joiner, bidi marks, soft hyphen, byte-order mark), Zs, Zl and Zp (spaces and
separators), plus the other default-ignorable code points, which fonts draw as nothing too
(Hangul fillers, variation selectors, the combining grapheme joiner, Mongolian free variation
selectors, Khmer inherent vowels, reserved ones); less the Cf "prepended concatenation marks"
(Arabic number sign U+0600 and its kind), which are drawn as signs. That includes everything
Python's ``str.isspace`` and JSON Schema regexes' ``\\s`` call whitespace.

Only characters of the Basic Multilingual Plane count: ``NOT_BLANK_PATTERN`` is also the
OpenAPI document's JSON Schema pattern, and must mean the same in ECMA-262 regexes (with and
without the ``u`` flag) as in Python's :mod:`re`. Python's pattern escape for a character above
U+FFFF (``\\U000E0001``) does not exist in ECMA-262, and without ``u`` such a character is two
UTF-16 surrogates there, so a class naming it would not mean the same. A question made only of
those (tag characters, musical symbol formatting) is therefore not blank; it abstains.
"""

from __future__ import annotations

import re

INVISIBLE_RANGES: tuple[tuple[int, int], ...] = (
    (0x0000, 0x0020),  # C0 controls (tab, line breaks, U+001C-U+001F separators), space
    (0x007F, 0x00A0),  # delete, C1 controls (next line U+0085), no-break space
    (0x00AD, 0x00AD),  # soft hyphen
    (0x034F, 0x034F),  # combining grapheme joiner
    (0x061C, 0x061C),  # Arabic letter mark
    (0x115F, 0x1160),  # Hangul choseong and jungseong fillers
    (0x1680, 0x1680),  # Ogham space mark
    (0x17B4, 0x17B5),  # Khmer inherent vowels
    (0x180B, 0x180F),  # Mongolian free variation selectors, vowel separator
    (0x2000, 0x200F),  # spaces, zero-width space, non-joiner, joiner, LRM, RLM
    (0x2028, 0x202F),  # line and paragraph separators, bidi embeddings, narrow no-break space
    (0x205F, 0x206F),  # medium mathematical space, word joiner, invisible operators, isolates
    (0x3000, 0x3000),  # ideographic space
    (0x3164, 0x3164),  # Hangul filler
    (0xFE00, 0xFE0F),  # variation selectors
    (0xFEFF, 0xFEFF),  # zero-width no-break space (byte-order mark)
    (0xFFA0, 0xFFA0),  # halfwidth Hangul filler
    (0xFFF0, 0xFFFB),  # reserved default-ignorables, interlinear annotation controls
)
"""The invisible characters, as inclusive ranges. Written out rather than computed from
:mod:`unicodedata` at import time, so the documented pattern does not change with Python's
Unicode version; ``tests/qa/test_blank.py`` derives it from the rule above."""


def _escape(code: int) -> str:
    return f"\\u{code:04x}"  # the one escape ECMA-262 and Python's re read alike


NOT_BLANK_PATTERN = (
    "[^"
    + "".join(
        _escape(first) if first == last else f"{_escape(first)}-{_escape(last)}"
        for first, last in INVISIBLE_RANGES
    )
    + "]"
)
"""Matches (``re.search``, JSON Schema's ``pattern``) any text that is not blank: one visible
character is enough. The HTTP API documents it and checks with it; ``api/static/widget.js``
holds the same pattern for its own check."""

_VISIBLE = re.compile(NOT_BLANK_PATTERN)


def is_blank(text: str) -> bool:
    """Whether ``text`` is empty or shows nothing (only whitespace and invisible characters)."""
    return _VISIBLE.search(text) is None


def _visible_table() -> dict[int, str | None]:
    table: dict[int, str | None] = {}
    for first, last in INVISIBLE_RANGES:
        for code in range(first, last + 1):
            table[code] = " " if chr(code).isspace() else None
    return table


_TO_VISIBLE = _visible_table()


def visible_text(text: str) -> str:
    """``text`` as it reads: invisible characters that are not whitespace (zero-width space,
    soft hyphen, joiners, bidi marks, controls) removed, whitespace collapsed to single spaces.

    Why: pasted questions carry them ("CD\\u200b19", "re\\u00adlapse"), and a word with one
    inside is another word to BM25 and another token sequence to the model. The question is
    searched as the reader sees it."""
    return " ".join(text.translate(_TO_VISIBLE).split())
