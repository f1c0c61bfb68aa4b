"""Questions about the papers a conversation is about, answered from those papers first.

In a chat people ask about "the study" they were just shown: "how many students took part?",
"where was the study done?", "what PCR primers were used?". Searched on its own such a question
finds whichever paper of the corpus best matches "how many students", and glued to the topic
it finds the paper again but quotes its conclusion again. So a conversation keeps its *focus*:
the papers (and sentences) the last answer cited (``carqa.qa.sessions.Turn.cited``).

``asks_about_focus`` decides whether a message asks about them. A refinement does not ("and
in adults?", "in Denmark?", "and imaging in children?", "what about mesothelin?" when no paper
in focus mentions mesothelin): it changes the subject and is searched (:mod:`carqa.qa.followup`),
without the papers already cited that do not mention what it names (``not_about``). A message
asks about the focus when it

- is a follow-up by the rules of :mod:`carqa.qa.followup` and names nothing the papers in focus
  and the conversation do not ("what dose was used?", "why?", "and siltuximab?" when a paper
  in focus mentions siltuximab); or
- is "which X?" / "what X?" about an X the papers in focus or the conversation spoke of
  ("which cytokines?" after "Can CRS be predicted from cytokine levels?"); or
- is a short question (at most ``DETAIL_WORDS`` words) about something that happened in a
  study — past tense ("how many students took part?", "which HPV type was found?") or the
  study's people or papers ("what surgery had the patients undergone?") — every word of which
  is study vocabulary or appears in the papers in focus or the conversation. A question about
  a named trial ("What did the ZUMA-1 trial show?") is a new question, and so is a general
  one in the present tense ("What are the factors that predict CRS?").

``answer_from_focus`` answers it from the papers in focus: each of their sentences gets its
cosine with the message, plus ``CUE_BONUS`` when it holds the kind of detail asked for
(``detail_kind``: a count, a place, a design, a dose, a duration, a method, a rate, a time, an
age; for "the main finding", how likely the sentence is to state it, ``carqa.qa.priors``),
more (``COUNTED_BONUS``) for a number right before the thing counted ("207 medical students"
for "how many students took part?"), plus a share of the message's own words it contains,
minus ``RANK_PENALTY`` per paper after the first (the paper the last answer led with is "the
study"), minus ``REPEAT_PENALTY`` for a sentence the conversation already quoted (a detail
answer quotes the sentence that holds the detail, not the paper's conclusion again). When no
sentence holds the detail asked for (or, for a question of no known kind, none is close in
meaning: ``MIN_SIMILARITY``), the papers in focus do not answer it and the caller widens the
search to the corpus, which abstains when nothing answers.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import replace

from carqa.qa import agreement
from carqa.qa import answer as extractive
from carqa.qa.engine import Engine
from carqa.qa.followup import (
    is_follow_up,
    message_words,
    names_a_part,
    names_subject,
    own_question,
    starts_with_preposition,
    without_connector,
)
from carqa.qa.lexical import STOPWORDS
from carqa.qa.types import Answer, Filters, joined

DETAIL_WORDS = 12
"""A longer message names its own subject: it is searched, not asked of the papers in focus."""
CUE_BONUS = 0.3
"""Added to a sentence's cosine when it holds the kind of detail asked for."""
COUNTED_BONUS = 0.45
"""... for "how many X", a number right before X ("30 children"): the answer itself."""
WEAK_CUE_BONUS = 0.12
"""... when it counts people, but not the ones asked about ("30 patients" for "how many
children?")."""
WORD_BONUS = 0.15
"""Times the share of the message's own words the sentence contains."""
RANK_PENALTY = 0.1
"""Per paper after the first in focus."""
REPEAT_PENALTY = 0.2
"""For a sentence the conversation already quoted."""
MIN_SIMILARITY = 0.45
"""A question of no known kind is answered from the focus only this close in meaning."""
MAX_SENTENCES = 2
MIN_EVIDENCE_WORDS = 4
"""A fragment shorter than this is no evidence (as in :mod:`carqa.qa.retrieve`)."""

_NUMBER_WORDS = (
    "one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|thirteen|fourteen|fifteen"
    "|sixteen|seventeen|eighteen|nineteen|twenty|thirty|forty|fifty|sixty|seventy|eighty"
    "|ninety|hundred|thousand"
)
_NUMBER = rf"(?:\d[\d,.\s]*\d|\d|(?:{_NUMBER_WORDS})(?:[\s-]+(?:{_NUMBER_WORDS}|and))*)"
_CAPITAL = "[A-ZÀ-ÖØ-Þ]"
"""A capital letter, accented ones too ("Gülhane", "Århus")."""
_UNIT_TIME = r"(?:hours?|hrs?|h|days?|weeks?|wk|months?|years?|yrs?|minutes?|min)"

KINDS: dict[str, tuple[re.Pattern[str], re.Pattern[str]]] = {
    # kind: (how a question asks for it, what a sentence holding it looks like)
    "dose": (
        re.compile(r"\b(?:dose|doses|dosage|dosing|how much .*(?:given|take|receive))\b"),
        re.compile(
            r"\d\s*(?:mg|g|µg|μg|mcg|microg|ng|iu|units?|ml|gy|mmol)\b|\bdoses?\b|\bdaily\b",
            re.IGNORECASE,
        ),
    ),
    "duration": (
        re.compile(r"\bhow long\b|\bduration\b|\bfor how many (?:days|weeks|months|years)\b"),
        re.compile(rf"\b{_NUMBER}[\s-]*{_UNIT_TIME}\b|\bfollow(?:ed)?[- ]up\b", re.IGNORECASE),
    ),
    "rate": (
        re.compile(r"\bhow (?:often|common|frequent)\b|\b(?:rate|incidence|proportion)\b"),
        re.compile(r"\d\s*%|\bpercent\b|\b\d+ of \d+\b|\bincidence\b|\brate\b", re.IGNORECASE),
    ),
    "count": (
        re.compile(r"\bhow many\b|\bnumber of\b|\bsample size\b|\bhow much\b"),
        re.compile(rf"\b{_NUMBER}\b", re.IGNORECASE),
    ),
    "place": (
        re.compile(r"\bwhere\b|\b(?:which|what) (?:country|countries|city|hospital|setting)\b"),
        re.compile(
            r"\b(?i:in|at|from)\s+(?:the\s+)?(?:(?i:north|south|east|west)\w*\s+)?"
            rf"{_CAPITAL}[^\W\d_]{{2,}}"
            r"|\b(?i:hospitals?|universit\w*|institut\w*|cent(?:re|er)s?|clinics?|academy"
            r"|registry|registries|database|nationwide|counties|county|province|region)\b"
            rf"|\b{_CAPITAL}[^\W\d_]+(?:ish|ian|ese)\b",
        ),
    ),
    "design": (
        re.compile(
            r"\bdesign\b|\b(?:kind|type|sort) of (?:study|trial|research)\b"
            r"|\bprospective\b|\bretrospective\b|\brandomi[sz]ed\b|\bblinded\b"
        ),
        re.compile(
            r"\b(?:randomi[sz]ed|randomly|controlled|double-blind\w*|blinded|placebo"
            r"|prospective\w*|retrospective\w*|cohort|case-control|case-referent|cross-sectional"
            r"|observational|meta-analys[ie]s|systematic review|crossover|single-arm|open-label"
            r"|phase\s+(?:[1-4]|i{1,3}v?)|descriptive|pilot|multi-?cent\w*|survey|trial)\b",
            re.IGNORECASE,
        ),
    ),
    "method": (
        re.compile(
            r"\b(?:method|methods|technique|primers?|pcr|assay|how (?:was|were) \w+ "
            r"(?:measured|assessed|detected|determined|diagnosed|tested))\b"
        ),
        re.compile(
            r"\b(?:pcr|primers?|assays?|elisa|microdialysis|immuno\w+|in situ|sequencing"
            r"|measured|using|technique|questionnaires?|scann\w*|biops\w+|cultures?"
            r"|spectrometry|chromatography|hybridi[sz]ation|microscopy|imaging)\b",
            re.IGNORECASE,
        ),
    ),
    "time": (
        re.compile(r"^\W*when\b"),
        re.compile(
            r"\b(?:19|20)\d\d\b|\b(?:january|february|march|april|may|june|july|august"
            r"|september|october|november|december)\b",
            re.IGNORECASE,
        ),
    ),
    "age": (
        re.compile(r"\bhow old\b|\bwhat age\b|\bages?\b"),
        re.compile(r"\baged?\b|\byears old\b|\bages\b", re.IGNORECASE),
    ),
    "finding": (
        re.compile(
            r"\b(?:main |key )?(?:finding|findings|results?|conclusions?|conclude)\b"
            r"|\bwhat did (?:it|they|the \w+) (?:show|find)\b"
        ),
        re.compile(r".", re.DOTALL),  # any sentence: the conclusion prior decides
    ),
}
"""In order: the first kind whose question pattern matches is the one asked for."""

STUDY_WORDS = frozenset(
    {
        *("patients", "patient", "participants", "subjects", "people", "persons", "cases"),
        *("individuals", "volunteers", "controls", "students", "specimens", "samples"),
        *("sample", "women", "men", "children", "infants", "group", "groups", "arm", "arms"),
        *("study", "trial", "paper", "authors", "researchers", "investigators", "cohort"),
        *("design", "method", "methods", "technique", "dose", "doses", "kind", "type", "sort"),
        *("place", "country", "city", "hospital", "setting", "centre", "center", "site"),
        *("take", "took", "taken", "part", "done", "carried", "out", "run", "ran", "stay"),
        *("included", "enrolled", "recruited", "randomised", "randomized", "treated"),
        *("tested", "studied", "analysed", "analyzed", "examined", "followed", "screened"),
        *("found", "performed", "conducted", "scanned", "reviewed", "described", "compared"),
        *("measured", "pooled", "received", "receive", "assessed", "observed", "selected"),
        *("operated", "undergone", "underwent", "get", "got", "long", "daily", "old", "age"),
        *("main", "primary", "prospective", "retrospective", "come", "came", "last", "lasted"),
        *("period", "operation", "surgery", "procedure", "drug", "drugs", "frequent"),
        *("recommend", "recommended", "effective", "data", "number", "size", "trials"),
        *("exam", "examination", "test", "questionnaire", "survey", "interview", "visit"),
        *("operations", "procedures", "hospitals", "centres", "centers", "sites", "result"),
        *("form", "forms", "formulation", "preparation", "route", "regimen", "schedule"),
    }
)
"""Words a question about a study uses without naming a new subject."""

_QUESTION_START = re.compile(
    r"^\W*(?:how|what|which|where|when|who|whom|whose|was|were|did|had|is|are|do|does|has"
    r"|have|in what|at what|from where)\b",
    re.IGNORECASE,
)
_PAST = re.compile(
    r"\b(?:was|were|did|had|took|used|given|included|enrolled|randomi[sz]ed|recruited"
    r"|treated|tested|studied|analy[sz]ed|followed|screened|found|done|carried|performed"
    r"|conducted|scanned|reviewed|described|compared|measured|pooled|received|examined"
    r"|assessed|observed|selected|operated|undergone|underwent|got|came|lasted|ran)\b",
    re.IGNORECASE,
)
_STUDY_REFERENCE = re.compile(
    r"\b(?:they|them|their|it|its)\b|\b(?:the|this|that|these|those)\s+(?:study|studies|trial"
    r"|paper|authors|researchers|patients|participants|subjects|women|men|children|students"
    r"|cohort|sample|groups?|exam|operation|surgery|treatment|data)\b",
    re.IGNORECASE,
)
_BARE_WHICH = re.compile(
    r"^\W*(?:which|what)\s+(?:(?:kind|type|sort|form)s?\s+of\s+)?[\w-]+\W*$", re.IGNORECASE
)
""""which X?", "what kind of X?": it asks which of something the conversation spoke of."""
_NAMED_TRIAL = re.compile(r"\b[A-Z][A-Za-z]*[-\d]*[A-Z\d][A-Za-z\d-]*\s+(?:trial|study)\b")
"""A trial by name ("the ZUMA-1 trial", "the ELIANA study"): a question about it is new."""


def _stem(word: str) -> str:
    """A crude stem, the same for a word's plural and verb forms ("included", "includes",
    "include"; "listening", "listened"): enough to tell whether a paper uses a word."""
    word = word.lower().removesuffix("'s")
    if len(word) > 4 and word.endswith("ies"):
        word = word[:-3] + "y"
    elif len(word) > 3 and word.endswith("s") and not word.endswith("ss"):
        word = word[:-1]
    if len(word) > 5 and word.endswith("ing"):
        word = word[:-3]
    elif len(word) > 4 and word.endswith("ed"):
        word = word[:-2]
    if len(word) > 3 and word.endswith("e"):
        word = word[:-1]
    return word


_STUDY_STEMS = frozenset(_stem(word) for word in STUDY_WORDS)
_COUNTED_PEOPLE = frozenset(
    _stem(word)
    for word in (
        *("patients", "participants", "subjects", "individuals", "people", "persons"),
        *("cases", "women", "men", "children", "adults", "infants", "volunteers", "students"),
    )
)
"""What a study counts when it says how many took part."""


def _stems(text: str) -> set[str]:
    return {_stem(word) for word in message_words(text)}


def _own_words(message: str) -> list[str]:
    """The words of ``message`` that could name something (see ``carqa.qa.followup``)."""
    return [
        word
        for word in message_words(message)
        if names_subject(word) and word not in STUDY_WORDS and _stem(word) not in _STUDY_STEMS
    ]


def grounded(message: str, known: Callable[[], set[str]]) -> bool:
    """Whether every word of ``message`` that could name a subject is in ``known()`` (stems of
    the papers in focus and the conversation) or is study vocabulary."""
    own = {_stem(word) for word in _own_words(message)}
    return not own or own <= known()


def asks_about_focus(message: str, known: Callable[[], set[str]]) -> bool:
    """Whether ``message`` asks about the papers in focus (see the module doc); ``known``
    gives the stems of their text and of the conversation (``known_words``), called only when
    the message's form leaves the question open."""
    text = message.strip()
    words = message_words(text)
    if not words or len(words) > DETAIL_WORDS:
        return False
    if own_question(text) is not None or _NAMED_TRIAL.search(text):
        return False
    if is_follow_up(text):
        body = without_connector(text)
        if starts_with_preposition(body) or names_a_part(body):  # "and imaging in children?"
            return False
        return grounded(body, known)
    if _BARE_WHICH.match(text):  # "which cytokines?", "what dose?"
        return grounded(text, known)
    if not _QUESTION_START.match(text):
        return False
    if not (_PAST.search(text) or _STUDY_REFERENCE.search(text)):
        return False
    return grounded(text, known)


def known_words(texts: Iterable[str]) -> set[str]:
    """Stems of ``texts`` (the papers in focus, the conversation's messages and queries)."""
    known: set[str] = set()
    for text in texts:
        known |= _stems(text)
    return known


def detail_kind(message: str) -> str | None:
    """The kind of detail ``message`` asks for (a key of ``KINDS``), or None."""
    text = message.lower()
    for kind, (question, _) in KINDS.items():
        if question.search(text):
            return kind
    return None


def _counted(message: str) -> list[str]:
    """The stems of what "how many ..." counts ("how many students took part?" → student)."""
    match = re.search(r"\b(?:how many|number of)\s+([\w-]+)(?:\s+([\w-]+))?", message.lower())
    if not match:
        return []
    return [_stem(word) for word in match.groups() if word and word not in STOPWORDS]


def cue_score(kind: str | None, sentence: str, counted: Sequence[str]) -> float:
    """How much ``sentence`` looks like it holds the detail asked for (0 when it does not)."""
    if kind is None:
        return 0.0
    if not KINDS[kind][1].search(sentence):
        return 0.0
    if kind == "count":
        # A count is a number of something: "30 children", "seven stations" (not "100 mg").
        best = 0.0
        for match in re.finditer(rf"\b{_NUMBER}\b", sentence, re.IGNORECASE):
            after = [_stem(w) for w in message_words(sentence[match.end() :])[:4]]
            if any(stem in after for stem in counted):
                return COUNTED_BONUS
            if any(stem in _COUNTED_PEOPLE for stem in after):
                best = WEAK_CUE_BONUS
        return best
    return CUE_BONUS


def not_about(
    message: str, pmids: Iterable[str], words_of: Callable[[str], frozenset[str]]
) -> list[str]:
    """The papers of ``pmids`` (``words_of``: pmid → the stems of its text) that do not
    mention every word a follow-up names of its own ("and for mantle cell lymphoma?": a paper
    on large B cell lymphoma does not say "mantle"); none when it names nothing ("and in
    adults?")."""
    own = {_stem(word) for word in _own_words(without_connector(message))}
    if not own:
        return []
    return [pmid for pmid in pmids if not own <= words_of(pmid)]


def excluding(filters: Filters | None, pmids: Sequence[str]) -> Filters | None:
    """``filters`` that also leave ``pmids`` out (a copy; ``filters`` itself when none)."""
    if not pmids:
        return filters
    base = filters or Filters()
    return replace(base, exclude_pmids=[*(base.exclude_pmids or []), *pmids])


def restrict(filters: Filters | None, focus: Sequence[str]) -> Filters:
    """``filters`` narrowed to the papers in focus (a copy; the caller's stays as it was)."""
    pmids = list(focus)
    if filters is None:
        return Filters(pmids=pmids)
    allowed = pmids if filters.pmids is None else [p for p in pmids if p in filters.pmids]
    return replace(filters, pmids=allowed)


def answer_from_focus(
    engine: Engine,
    message: str,
    query: str,
    focus: Sequence[str],
    *,
    quoted: Iterable[str] = (),
    filters: Filters | None = None,
) -> Answer | None:
    """The answer to ``message`` from the papers in ``focus`` (first = the paper the
    conversation is about), or None when they do not answer it (see the module doc).
    ``query`` is what the answer reports it searched; ``quoted``: sentences already quoted."""
    started = time.perf_counter()
    retriever = engine.retriever
    allowed = retriever.mask(restrict(filters, focus))
    papers = [p for p in focus if p in retriever.position and allowed[retriever.position[p]]]
    if not papers:
        return None
    kind = detail_kind(message)
    # A question of a known kind is matched on its own words ("how many students took
    # part?"); another ("why?", "and siltuximab?") needs the topic it is asked about.
    vector = retriever.encode(message if kind is not None else query)
    matrix = engine.index.sentence_matrix
    counted = _counted(message)
    own = {_stem(word) for word in _own_words(message)}
    seen = {" ".join(text.split()) for text in quoted}
    scored: list[tuple[float, extractive.Evidence]] = []
    for rank, pmid in enumerate(papers):
        ids = retriever.paper_sentences(pmid)
        similarities = matrix[ids] @ vector if len(ids) else []
        for sentence_id, similarity in zip(ids.tolist(), similarities, strict=True):
            # A short question ("what design was it?") is close in meaning to no sentence: for
            # a known kind, what the sentence holds decides.
            if kind is None and similarity < MIN_SIMILARITY:
                continue
            row = engine.index.sentences[sentence_id]
            if len(message_words(row.text)) < MIN_EVIDENCE_WORDS:
                continue
            cue = cue_score(kind, row.text, counted)
            if kind is not None and cue <= 0:
                continue
            share = len(own & _stems(row.text)) / len(own) if own else 0.0
            # Asked for the finding, the sentence likeliest to state it wins, quoted or not.
            prior = float(retriever.sentence_priors[sentence_id]) if kind == "finding" else 0.0
            value = float(similarity) + cue + prior + WORD_BONUS * share - RANK_PENALTY * rank
            if kind != "finding" and " ".join(row.text.split()) in seen:
                value -= REPEAT_PENALTY
            evidence = extractive.Evidence(
                sentence_id=sentence_id,
                pmid=pmid,
                paper_rank=rank,
                text=row.text,
                section=row.section_label or row.section_category,
                similarity=float(similarity),
                prior=prior,
            )
            scored.append((value, evidence))
    if not scored:
        return None
    scored.sort(key=lambda pair: pair[0], reverse=True)
    best_value, best = scored[0]
    chosen = [best]
    for value, evidence in scored[1:]:
        if len(chosen) >= MAX_SENTENCES:
            break
        if evidence.pmid == best.pmid and value >= best_value - 0.1 and kind is not None:
            chosen.append(evidence)
    citations, segments = agreement.cited(engine.retriever, chosen, [])
    return Answer(
        answer=joined(segments),
        segments=segments,
        abstained=False,
        citations=citations,
        took_ms=(time.perf_counter() - started) * 1000,
        query=query,
    )
