"""Split abstract text into sentences, with character offsets, without any downloaded model.

Why our own splitter: answers cite *sentences*, so a bad split shows up as a half-sentence in
an answer. NLTK's punkt and spaCy need downloads we cannot rely on (no network at run time),
and generic regex splitters break biomedical prose at "et al.", "e.g.", "vs.", "Fig. 2",
"No. 5", initials ("J. Smith", "E. coli"), "P < .001" and full stops inside parentheses.

The rule is deliberately explicit: a sentence ends at ``.``, ``!`` or ``?`` (plus any closing
quotes/brackets) followed by whitespace and then something that can start a sentence — an
uppercase letter, a digit, an opening bracket or quote, or a lowercase token with an uppercase
letter or digit in it ("mRNA", "p53", "miR-21"), a Greek letter ("β-blockers") or a bullet; a
newline also ends a sentence, and so does a full stop glued to a capitalised word or an inline
section label ("respectively.Mean", "relevant.AIM: To test"). A candidate is rejected when the
word before the full stop is a known abbreviation, a lowercase dotted one ("s.c.", "i.v.") or
an initial, when it closes an enumeration label ("Aims: 1. To test"), or when it sits inside a
short parenthetical. Three exceptions make it a sentence end after all: a closed-class opener
follows ("in group B. The", "in the U.S. This"), an abbreviation that often ends sentences
("spp.", "min.", "Inc.") precedes a capitalised word, or the "abbreviation" is an upper-case
acronym ("in MS. Furthermore") or the end of a unit ("200 mL/min. Serial").
"""

from __future__ import annotations

import re
from dataclasses import dataclass

RULES_VERSION = 2
"""Bumped whenever the rules change how some text splits. It is part of the chunk settings an
index records (``ChunkSettings.splitter``), so the next ``carqa build`` of an index made with
older rules rebuilds it instead of calling it up to date; only sentences whose text changed
are embedded again (the cache is keyed by text)."""

# Abbreviations (lowercased, without their final ".") after which a full stop does not end a
# sentence, even before a capital: "et al. (2019)", "e.g. CD19", "vs. Placebo", "Fig. 2".
ABBREVIATIONS = frozenset(
    {
        "al",
        "e.g",
        "eg",
        "i.e",
        "ie",
        "cf",
        "vs",
        "v",
        "viz",
        "etc",
        "approx",
        "ca",
        "resp",
        "fig",
        "figs",
        "tab",
        "no",
        "nos",
        "nr",
        "vol",
        "pp",
        "p",
        "ref",
        "refs",
        "eq",
        "eqs",
        "dr",
        "drs",
        "prof",
        "mr",
        "mrs",
        "ms",
        "jr",
        "sr",
        "st",
        "inc",
        "ltd",
        "co",
        "corp",
        "dept",
        "univ",
        "est",
        "min",
        "max",
        "avg",
        "std",
        "var",
        "spp",
        "sp",
        "subsp",
        "ser",
        "jan",
        "feb",
        "mar",
        "apr",
        "jun",
        "jul",
        "aug",
        "sep",
        "sept",
        "oct",
        "nov",
        "dec",
        "u.s",
        "u.k",
        "e.u",
    }
)

# Longest parenthetical inside which we never split (longer ones are probably unbalanced).
MAX_PARENTHETICAL = 400

_CANDIDATE = re.compile(
    r"""
    [.!?]+                 # the terminator(s)
    ['"”’)\]]*             # closing quotes / brackets that belong to this sentence
    (?P<space>\s+)         # whitespace
    (?=(?P<next>\S+))      # the next token, looked at but not consumed
    """,
    re.VERBOSE,
)
# A full stop with no space after it, between a word and a capitalised word or an inline
# section label — a typo, or lost markup: "... in hospice.The prescribing ...", "... (LMICs).This
# study ...", "... is relevant.AIM: To test ...", "... lesions.STUDY DESIGN/ A total ...". Three
# lowercase letters (or a bracket) before it keep product names ("Epi.Lens"), initials
# ("e.g.The") and chemistry ("lip.PZQ+HBO") out.
_GLUED = re.compile(
    r"""
    (?:[a-z]{3}|\))[.!?]
    (?=(?P<next>
        [A-Z][a-z]+\b
      | [A-Z]{2,}(?:[ ][A-Z]{2,})*(?:\(S\))?[ ]?[:/&-][ ]*\S   # "AIM: ", "MATERIALS & "
    ))
    """,
    re.VERBOSE,
)
_WORD_BEFORE = re.compile(r"([\w.\-]+)[.!?]+['\"”’)\]]*$")
_WORD_WINDOW = 100  # characters before a full stop in which to look for its word
_OPENERS = "([{\"'“‘"
_BULLETS = "•▪◦‣"

# Abbreviations that often end a sentence too ("... Lactobacillus spp. The ...", "... for 30
# min. From ...", "... Acme, Inc. He ..."): their full stop ends the sentence when the next
# word is an ordinary capitalised word, and not before a number ("min. 5") or a lowercase word.
SENTENCE_FINAL_ABBREVIATIONS = frozenset(
    {"spp", "sp", "ssp", "subsp", "etc", "inc", "ltd", "corp", "min", "max", "resp", "a.m", "p.m"}
)
_CAPITALISED_WORD = re.compile(r"[A-Z][a-z]+\b")

# Words that open a sentence and never continue a name or an abbreviation: after "Group B.",
# "the U.S.", "A. gambiae s.l." or "et al." they mean a new sentence ("... in Group B. The ...").
SENTENCE_OPENERS = frozenset(
    {
        "The",
        "This",
        "These",
        "Those",
        "There",
        "Their",
        "They",
        "It",
        "Its",
        "We",
        "Our",
        "In",
        "However",
        "Thus",
        "Therefore",
        "Moreover",
        "Furthermore",
        "Finally",
        "Overall",
        "Both",
        "All",
        "Most",
        "Only",
        "After",
        "During",
        "When",
        "While",
        "Although",
        "Among",
    }
)

# "s.c.", "i.v.", "i.c.v.", "s.l.", "n.s.": lowercase single letters joined by full stops.
_DOTTED_LOWERCASE = re.compile(r"(?:[a-z]\.)+[a-z]")
# An enumeration label opening a sentence or following ":"/";": "1.", "ii.", "a." — the full
# stop after it ends no sentence ("Aims: 1. To test safety. 2. To test efficacy.").
_LABEL_AT_END = re.compile(r"(?:^|[:;]\s)\s*\(?(?:\d{1,2}|[ivxIVX]{1,4}|[a-z])\.$")


@dataclass(frozen=True)
class Sentence:
    """One sentence: its text (stripped) and where it sits in the input, ``text[start:end]``."""

    text: str
    start: int
    end: int


def split_sentences(text: str) -> list[Sentence]:
    """Sentences of ``text`` in order; offsets index into ``text``. Empty input gives []."""
    boundaries = _boundaries(text)
    sentences: list[Sentence] = []
    start = 0
    for cut in [*boundaries, len(text)]:
        piece = text[start:cut]
        stripped = piece.strip()
        if stripped:
            offset = start + (len(piece) - len(piece.lstrip()))
            sentences.append(Sentence(stripped, offset, offset + len(stripped)))
        start = cut
    return sentences


def _boundaries(text: str) -> list[int]:
    """Character positions where a new sentence starts (sorted, unique)."""
    protected = _parenthetical_spans(text)
    cuts: set[int] = set()
    last_cut = 0
    for match in _CANDIDATE.finditer(text):
        end_of_sentence = match.start("space")
        if _inside(end_of_sentence, protected):
            continue
        following = match.group("next")
        if not _can_start_sentence(following):
            continue
        if _ends_with_abbreviation(text[:end_of_sentence], following):
            continue
        piece_start = max(last_cut, text.rfind("\n", 0, end_of_sentence) + 1)
        if _LABEL_AT_END.search(text[piece_start:end_of_sentence]):
            continue
        last_cut = match.end()
        cuts.add(last_cut)
    for match in _GLUED.finditer(text):
        if not _inside(match.end(), protected) and not _ends_with_abbreviation(
            text[: match.end()], match.group("next")
        ):
            cuts.add(match.end())
    for match in re.finditer(r"\n\s*", text):
        if match.end() < len(text) and not _inside(match.start(), protected):
            cuts.add(match.end())
    return sorted(cuts)


def _can_start_sentence(token: str) -> bool:
    first = token[0]
    if first.isupper() or first.isdigit() or first in _OPENERS or first in _BULLETS:
        return True
    if "α" <= first <= "ω" or token == ":":
        # "β-blockers are ...", and a section whose label was stripped: "... 2000. : Logistic"
        return True
    # Lowercase-initial gene/RNA names start sentences too: "mRNA levels ...", "p53 was ...".
    word = re.match(r"[\w\-]+", token)
    return bool(word) and any(c.isupper() or c.isdigit() for c in word.group(0)[1:])


def _ends_with_abbreviation(before: str, following: str) -> bool:
    """Whether the full stop ending ``before`` belongs to an abbreviation or an initial,
    ``following`` being the next token."""
    if not before.rstrip("'\"”’)]").endswith("."):
        return False  # "!" and "?" always end a sentence
    # Only the tail is searched: a "$"-anchored search of the whole prefix made the splitter
    # quadratic in the length of the text.
    match = _WORD_BEFORE.search(before, max(0, len(before) - _WORD_WINDOW))
    if match is None:
        return False
    word = match.group(1).rstrip(".")
    if not word:
        return False
    if match.start(1) and before[match.start(1) - 1] in "/&":
        return False  # the end of a unit or a name: "200 mL/min.", "40 UI/L.", "IM&A."
    if following.rstrip(",;:") in SENTENCE_OPENERS:
        return False
    lower = word.lower()
    if lower in ABBREVIATIONS or _DOTTED_LOWERCASE.fullmatch(word):
        if word.isupper() and len(word) > 1 and "." not in word and not following[0].isdigit():
            return False  # an acronym, not an abbreviation: "... in MS. Furthermore ..."
        # "spp. The", "min. From": these abbreviations end sentences before a capitalised word.
        return not (lower in SENTENCE_FINAL_ABBREVIATIONS and _CAPITALISED_WORD.match(following))
    last = word.rsplit(".", 1)[-1]
    if not (len(last) == 1 and last.isupper()):
        return False
    if "." in word or following[0] == "(":
        return True  # "U.S.", "A.B." — a run of initials; "S. (Chirostilbia) species"
    # A lone capital is an initial inside a name ("John F. Kennedy", "A. B. Smith") but ends
    # the sentence after an ordinary word ("vitamin D. Patients", "hepatitis B. We"). After
    # a sentence end it opens a name ("... found it. A. B. Jones").
    previous = before[: match.start(1)].rstrip().rsplit(None, 1)
    return not previous or previous[-1][:1].isupper() or previous[-1][-1] in ".!?"


def _parenthetical_spans(text: str) -> list[tuple[int, int]]:
    """(start, end) of balanced, short ``(...)``/``[...]`` groups: no splitting inside them."""
    spans: list[tuple[int, int]] = []
    stack: list[int] = []
    pairs = {")": "(", "]": "["}
    for i, char in enumerate(text):
        if char in "([":
            stack.append(i)
        elif char in ")]" and stack:
            start = stack.pop()
            if text[start] == pairs[char] and i - start <= MAX_PARENTHETICAL:
                spans.append((start, i))
    return spans


def _inside(position: int, spans: list[tuple[int, int]]) -> bool:
    return any(start < position < end for start, end in spans)
