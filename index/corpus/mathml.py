"""MathML (as PubMed abstracts and titles carry it) → readable plain text.

PubMed XML writes MathML as ``<mml:math>``; Bio.Entrez hands it on as ``<math
xmlns="http://www.w3.org/1998/Math/MathML">`` with unprefixed children, pretty-printed. Only
the tokens' text counts (layout whitespace between elements is not text), and no spaces are
put between the parts of one expression:

* ``mmultiscripts`` with ``mprescripts``: prescripts before the base — ``³He``, ``¹²⁹Xe``;
* ``msup`` / ``msub`` / ``msubsup``: Unicode superscript / subscript characters when every
  character has one (digits, ``+ − = ( )``, and ``n``, ``i`` for superscripts) — ``x²``,
  ``CO₂``, ``Ca²⁺``; otherwise a superscript is ``^x`` or ``^(…)`` and a subscript is written
  on the line (``Cmax``, as ``<sub>`` is); primes, ``*`` and ``°`` stay as they are (``x′``);
* ``mfrac``: ``a/b``, with parentheses around a part that is not a single term;
* ``msqrt`` / ``mroot``: ``√x``, ``³√x``; ``mfenced``: its fences and separators;
  ``mover`` with an accent: the combining character (``x̄``); ``semantics``: its first child;
  ``mphantom``, ``annotation``: nothing; an explicit space (``mtext`` of blanks, ``mspace``):
  one space; invisible operators (U+2061–U+2064) are dropped.

Anything else renders as its children's text. A fragment that does not parse as XML returns
None, and the caller falls back to plain tag stripping.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

MATH = re.compile(r"<(?:mml:)?math\b[^>]*>.*?</(?:mml:)?math>", re.DOTALL)

_SUPERSCRIPTS = str.maketrans("0123456789+-−=()ni", "⁰¹²³⁴⁵⁶⁷⁸⁹⁺⁻⁻⁼⁽⁾ⁿⁱ")
_SUBSCRIPTS = str.maketrans("0123456789+-−=()", "₀₁₂₃₄₅₆₇₈₉₊₋₋₌₍₎")
_SUPERSCRIPT_SOURCE = frozenset("0123456789+-−=()ni")
_SUBSCRIPT_SOURCE = frozenset("0123456789+-−=()")
# Scripts written as they are: a superscript prime is just a prime.
_AS_IS_SCRIPTS = frozenset({"′", "″", "‴", "'", "*", "∗", "°", "†", "‡"})
_ACCENTS = {
    "¯": "\u0304",
    "‾": "\u0305",
    "―": "\u0304",
    "^": "\u0302",
    "ˆ": "\u0302",
    "~": "\u0303",
    "˜": "\u0303",
    "˙": "\u0307",
    "¨": "\u0308",
    "→": "\u20d7",
    "⃗": "\u20d7",
}
_INVISIBLE = str.maketrans("", "", "\u2061\u2062\u2063\u2064")
_TERM = re.compile(r"[\w.,′″'°\u00b2\u00b3\u00b9\u2070-\u209f\u0300-\u036f\u20d0-\u20ff]+")
_SKIPPED = frozenset({"mphantom", "annotation", "annotation-xml", "mprescripts", "none"})
_TOKENS = frozenset({"mi", "mn", "mo", "mtext", "ms"})


def render(fragment: str) -> str | None:
    """Plain text for one ``<math>…</math>`` fragment (XML-escaped text, as Bio.Entrez gives
    it with ``escape=True``); None when it is not well-formed."""
    fragment = re.sub(r"<(/?)mml:", r"<\1", fragment)
    fragment = re.sub(r"\sxmlns(?::\w+)?=\"[^\"]*\"", "", fragment)
    try:
        root = ET.fromstring(fragment)
    except ET.ParseError:
        return None
    return _render(root).translate(_INVISIBLE)


def _name(element: ET.Element) -> str:
    return element.tag.rpartition("}")[2] if isinstance(element.tag, str) else ""


def _render(element: ET.Element) -> str:
    name = _name(element)
    children = list(element)
    if name in _SKIPPED:
        return ""
    if name in _TOKENS or (not children and element.text):
        return _token(element.text or "")
    if name == "mspace":
        return " "
    parts = [_render(child) for child in children]
    if name in ("msup", "msub", "msubsup") and len(parts) >= 2:
        base, *scripts = parts
        if name == "msup":
            return base + _sup(scripts[0])
        if name == "msub":
            return base + _sub(scripts[0])
        return base + _sub(scripts[0]) + _sup(scripts[1] if len(scripts) > 1 else "")
    if name == "mmultiscripts" and parts:
        return _multiscripts(children)
    if name == "mfrac" and len(parts) == 2:
        return f"{_grouped(parts[0])}/{_grouped(parts[1])}"
    if name == "msqrt":
        return "√" + _grouped("".join(parts))
    if name == "mroot" and len(parts) == 2:
        return _sup(parts[1]) + "√" + _grouped(parts[0])
    if name == "mover" and len(parts) == 2 and parts[1].strip() in _ACCENTS:
        return parts[0] + _ACCENTS[parts[1].strip()]
    if name == "semantics":
        return parts[0] if parts else ""
    if name == "mfenced":
        return _fenced(element, parts)
    if name == "mtr" or name == "mlabeledtr":
        return " ".join(part for part in parts if part)
    if name == "mtable":
        return "; ".join(part for part in parts if part)
    return "".join(parts)


def _token(text: str) -> str:
    """A token's text, trimmed as MathML does; a token of blanks is an explicit space."""
    stripped = " ".join(text.split())
    return stripped if stripped else (" " if text else "")


def _multiscripts(children: list[ET.Element]) -> str:
    base, *rest = children
    names = [_name(child) for child in rest]
    split = names.index("mprescripts") if "mprescripts" in names else len(rest)
    post, pre = rest[:split], rest[split + 1 :]
    prescripts = "".join(
        _sup(_render(pre[i + 1]) if i + 1 < len(pre) else "") + _sub(_render(pre[i]))
        for i in range(0, len(pre), 2)
    )
    postscripts = "".join(
        _sub(_render(post[i])) + _sup(_render(post[i + 1]) if i + 1 < len(post) else "")
        for i in range(0, len(post), 2)
    )
    return prescripts + _render(base) + postscripts


def _sup(text: str) -> str:
    text = text.strip()
    if not text:
        return ""
    if set(text) <= _SUPERSCRIPT_SOURCE:
        return text.translate(_SUPERSCRIPTS)
    if set(text) <= _AS_IS_SCRIPTS:
        return text
    return "^" + (text if len(text) == 1 else f"({text})")


def _sub(text: str) -> str:
    text = text.strip()
    if text and set(text) <= _SUBSCRIPT_SOURCE:
        return text.translate(_SUBSCRIPTS)
    return text


def _grouped(text: str) -> str:
    text = text.strip()
    return text if not text or _TERM.fullmatch(text) else f"({text})"


def _fenced(element: ET.Element, parts: list[str]) -> str:
    opening = element.get("open", "(")
    closing = element.get("close", ")")
    separators = "".join(element.get("separators", ",").split()) or ""
    text = ""
    for index, part in enumerate(parts):
        if index and separators:
            text += separators[min(index - 1, len(separators) - 1)]
        text += part
    return f"{opening}{text}{closing}"
