"""carqa.qa.blank: the one rule for blank questions, checked against its definition."""

from __future__ import annotations

import itertools
import re
import unicodedata

import pytest
from carqa.qa.blank import INVISIBLE_RANGES, NOT_BLANK_PATTERN, is_blank, visible_text

INVISIBLE_CATEGORIES = {"Cc", "Cf", "Zs", "Zl", "Zp"}
# Default_Ignorable_Code_Point (Unicode's DerivedCoreProperties.txt) in the BMP, outside the
# categories above: drawn as nothing, like the format characters.
DEFAULT_IGNORABLE_OTHERS = [
    (0x034F, 0x034F),  # Mn combining grapheme joiner
    (0x115F, 0x1160),  # Lo Hangul fillers
    (0x17B4, 0x17B5),  # Mn Khmer inherent vowels
    (0x180B, 0x180D),  # Mn Mongolian free variation selectors
    (0x180F, 0x180F),
    (0x2065, 0x2065),  # Cn reserved
    (0x3164, 0x3164),  # Lo Hangul filler
    (0xFE00, 0xFE0F),  # Mn variation selectors
    (0xFFA0, 0xFFA0),  # Lo halfwidth Hangul filler
    (0xFFF0, 0xFFF8),  # Cn reserved
]
# Prepended_Concatenation_Mark (PropList.txt) in the BMP: Cf, but drawn as visible signs.
VISIBLE_FORMAT = {0x0600, 0x0601, 0x0602, 0x0603, 0x0604, 0x0605, 0x06DD, 0x070F, 0x0890, 0x0891}
VISIBLE_FORMAT |= {0x08E2}
# What ECMA-262 regexes (JSON Schema's dialect) match with \s: WhiteSpace and LineTerminator.
ECMA_SPACE = set(map(ord, "\t\n\x0b\x0c\r \xa0\u1680\u2028\u2029\u202f\u205f\u3000\ufeff"))
ECMA_SPACE |= set(range(0x2000, 0x200B))


def _bmp() -> list[int]:
    return [code for code in range(0x10000) if not 0xD800 <= code <= 0xDFFF]


def _in_ranges(code: int, ranges: list[tuple[int, int]] | tuple[tuple[int, int], ...]) -> bool:
    return any(first <= code <= last for first, last in ranges)


def test_the_written_out_ranges_are_the_documented_rule() -> None:
    """INVISIBLE_RANGES is written out (the OpenAPI pattern must not change with Python's
    Unicode version); this derives it from the rule in the module doc."""
    version = tuple(int(part) for part in unicodedata.unidata_version.split("."))
    assert version >= (14, 0)  # U+0890 and U+0891 exist
    for code in _bmp():
        category = unicodedata.category(chr(code))
        drawn_as_nothing = category in INVISIBLE_CATEGORIES and code not in VISIBLE_FORMAT
        invisible = drawn_as_nothing or _in_ranges(code, DEFAULT_IGNORABLE_OTHERS)
        assert _in_ranges(code, INVISIBLE_RANGES) == invisible, f"U+{code:04X} {category}"


def test_whitespace_to_python_or_to_json_schema_is_blank() -> None:
    for code in _bmp():
        if chr(code).isspace() or code in ECMA_SPACE:
            assert is_blank(chr(code)), f"U+{code:04X}"


def test_the_ranges_are_sorted_and_apart() -> None:
    for (_, last), (first, _) in itertools.pairwise(INVISIBLE_RANGES):
        assert last + 1 < first
    assert all(first <= last <= 0xFFFF for first, last in INVISIBLE_RANGES)


def test_the_pattern_uses_only_escapes_ecma_262_and_python_read_alike() -> None:
    """One negated class of \\uXXXX escapes and ranges: no \\s, \\S or \\w (the dialects read
    them differently), no literal character, nothing above U+FFFF. (The browser tests run it
    in Chromium's ECMA-262 engine too.)"""
    assert re.fullmatch(r"\[\^(?:\\u[0-9a-f]{4}(?:-\\u[0-9a-f]{4})?)+\]", NOT_BLANK_PATTERN)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "   ",
        "\u200b",  # zero-width space
        "\u200c\u200d",  # zero-width non-joiner, joiner
        "\u2060",  # word joiner
        "\u00ad\u00ad",  # soft hyphen
        "\u200e \u200f",  # left-to-right, right-to-left marks
        "\u202e\u2066\u2069",  # bidi override and isolates
        "\x00\x07\x1b\x7f",  # controls
        "\ufeff",  # byte-order mark
        "\u3164",  # Hangul filler
        "\ufe0f",  # variation selector
        " \u200b\t\u2060\n",
    ],
)
def test_invisible_only_text_is_blank(text: str) -> None:
    assert is_blank(text)


@pytest.mark.parametrize(
    "text",
    [
        "Why do patients\u200b relapse after CD19 CAR T?",
        "\u200bCRS?\u200b",
        "re\u00adlapse",
        "\u200fICANS",
        "x",
        "\u0301",  # a combining accent alone is drawn (on a dotted circle)
        "\u0600",  # Arabic number sign: format (Cf), but a visible sign
        "\U0001f9ec",  # an emoji, outside the BMP
        "\U000e0041",  # a tag character: invisible, but outside the BMP (see the module doc)
    ],
)
def test_text_with_anything_visible_is_not_blank(text: str) -> None:
    assert not is_blank(text)


def test_visible_text_drops_invisible_characters_and_collapses_whitespace() -> None:
    assert visible_text("re\u00adlapse after CD\u200b19\u2060 CAR\u00a0T\u2028cells \u200e") == (
        "relapse after CD19 CAR T cells"
    )
    assert visible_text("\u200b\u00ad \u3000") == ""
    # Everything invisible is dropped or becomes a space; visible text is left as it is.
    for first, last in INVISIBLE_RANGES:
        for code in (first, last):
            assert visible_text(f"a{chr(code)}b") in ("ab", "a b")
    assert visible_text("Ünïcödé – “quotes” ½ CD19⁺") == "Ünïcödé – “quotes” ½ CD19⁺"
