"""Follow-up rules: which chat messages refer back to the conversation, and the standalone
query a follow-up is condensed into (used by :mod:`carqa.qa.chat`; no index, no model).

A follow-up like "and in adults?" means nothing to a search index on its own. Before retrieval
it is *condensed* with the conversation into a standalone query, by rule (``condense``) when no
LLM is configured, with the conversation's *topic*: the query of the last message that stood
on its own (each turn records it, see ``carqa.qa.sessions.Turn.topic``). Follow-ups attach to the
topic, never to the previous condensed query, so a long run of follow-ups does not pile up into
one ever-longer query: "what about toxicity?" then "and neurotoxicity?" search "<topic>:
toxicity?" then "<topic>: neurotoxicity?" (and "and in adults?" after "what about toxicity?"
refines the topic, not the toxicity query: a rule cannot tell which earlier follow-up a later
one builds on). A comparison ("compare that with axi-cel", "how does it compare to axi-cel?")
becomes the phrase "compared with/to axi-cel"; anything else that is not a prepositional phrase
is appended after a colon.

A prepositional phrase ("and in adults?", "and for mantle cell lymphoma?", "in Denmark?")
changes one part of the topic's subject and keeps the rest (``replace_phrase``). What the
phrase names up to its own next preposition decides which part (``phrase_kind``; "in patients
with kidney disease" names patients): a disease replaces the topic's disease (an "of" phrase
counts: "the management of rectal cancer"), a group of people its group ("in healthy people"
→ "in patients with kidney disease"), a place its place, whatever preposition each came with
("... after axi-cel in large B cell lymphoma?" + "and for mantle cell lymphoma?" → "... after
axi-cel in mantle cell lymphoma?"); a phrase of a kind the topic does not have is added ("Is
HPV involved in pterygium?" + "in Denmark?" → "Is HPV involved in pterygium in Denmark?", the
disease kept). A phrase of no known kind replaces the topic's last phrase with the same preposition
that is of no known kind either ("... with axi-cel?" + "and with tisa-cel?"), else is added.

What counts as a follow-up (``is_follow_up``) — a message that refers back to the conversation:

1. it starts with a connector ("and", "but", "also", "or", "what/how about", "same for",
   "compare (that) with"...), possibly after "ok"/"so"/"well"/"then", or with a preposition
   ("in adults?"); except "and", "but", "also" or "or" before a question that would stand
   alone by these rules ("And what is cytokine release syndrome?"): that is a new question,
   searched without the connector (``own_question``), while "and what about BCMA?", "and how
   is it treated?" and "and what dose was used?" are follow-ups;
2. it is short (at most ``ANAPHORA_WORDS`` words) and refers back (``refers_back``): with a
   pronoun ("how is it treated?", "Is ide-cel approved for it?"), "which one" or "the same"
   ("Is the same true for solid tumours?"). A pronoun that points into the message itself does
   not count: "that" after a noun ("the factors that predict CRS", "evidence that 4-1BB ..."),
   "its"/"their" after the message named a subject ("Do tuberculosis patients in China stick
   to their treatment?"), or a pronoun after the message named a subject and went on with
   "and"/"or"/"but" ("What causes CRS and how is it treated?");
3. it names no subject of its own: only stop words, conversational words ("why?", "tell me
   more", "how often?") and aspect words, which ask about an aspect of a subject or narrow it
   to a group of patients ("what dose was used?", "any long-term data?", "what are the side
   effects in children?").

Everything else stands alone by these rules, however short: "What is ICANS?" and "Tocilizumab
for CRS?" are new questions. A question about a detail of the papers the conversation is about
("how many students took part?") can also be a follow-up: :mod:`carqa.qa.focus` decides that with
the papers' text, and condenses it with ``condense(..., attach=True)``.

The standalone query is what is searched and what ``Answer.query`` reports, so a user (and the
tests) can see how a follow-up was understood. The question length limit
(``max_question_chars``) applies to what the user typed; a condensed query is shortened to fit
it (the topic gives way, the follow-up is kept whole), so it is never rejected for length.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Sequence

from carqa.qa.lexical import STOPWORDS
from carqa.qa.sessions import Turn

_LEAD_IN = r"(?:(?:ok|okay|so|well|then)\b[\s,]*)*"
_CONNECTOR = re.compile(
    r"^(?:(?:and|but|also|so|or|ok|okay|then|well)\b[\s,]*)*"
    r"(?:(?:what|how)\s+about|what\s+of|same\s+(?:for|in)"
    r"|is\s+(?:that|this|the\s+same)\s+(?:also\s+)?true)?\b[\s,:]*",
    re.IGNORECASE,
)
_THAT = r"(?:it|that|this|they|them|these|those)"
_COMPARE = re.compile(
    rf"^(?:how\s+(?:does|do|did)\s+{_THAT}\s+)?compare(?:\s+{_THAT})?\s+(?P<prep>with|to)\b",
    re.IGNORECASE,
)
"""A comparison with the topic: "compare that with axi-cel", "how does it compare to ..."."""
_STARTS_WITH_CONNECTOR = re.compile(
    rf"^{_LEAD_IN}(?:and|but|also|or|what\s+about|how\s+about|what\s+of|same\s+(?:for|in)"
    rf"|compare(?:\s+{_THAT})?\s+(?:with|to))\b",
    re.IGNORECASE,
)
_CONJUNCTION_QUESTION = re.compile(
    rf"^{_LEAD_IN}(?:and|but|also|or)\b[\s,]*(?P<rest>(?:what|which|who|how|why|when|where|is"
    r"|are|was|were|does|do|did|can|could|should|will|would|has|have)\b.*)$",
    re.IGNORECASE | re.DOTALL,
)
PREPOSITIONS = (
    "compared with",
    "compared to",
    "in",
    "for",
    "among",
    "with",
    "without",
    "after",
    "before",
    "during",
    "at",
    "on",
    "versus",
    "vs",
    "by",
    "from",
)
_PREPOSITION = "|".join(p.replace(" ", r"\s+") for p in PREPOSITIONS)
_STARTS_WITH_PREPOSITION = re.compile(rf"^(?P<prep>{_PREPOSITION})\b", re.IGNORECASE)
_LEADS_WITH_PREPOSITION = re.compile(rf"^{_LEAD_IN}(?:{_PREPOSITION})\b", re.IGNORECASE)
PRONOUNS = frozenset({"it", "its", "they", "them", "their", "this", "that", "these", "those"})
POSSESSIVES = frozenset({"its", "their"})
"""After a subject the message named, these point to it ("Do tuberculosis patients in China
stick to their treatment?"), not back into the conversation."""
_REFERRING = re.compile(
    r"\b(?:which|that|this)\s+ones?\b(?!\s+of\b)"  # not "which one of CD28 and 4-1BB"
    r"|\bthe\s+(?:former|latter)\b|\bthe\s+same\b(?!.*\bas\b)",  # not "the same ... as X"
    re.IGNORECASE,
)
_CONJUNCTIONS = frozenset({"and", "or", "but"})
ANAPHORA_WORDS = 10
"""A message this short that uses a pronoun refers back ("how is it treated?"); a longer one
usually names its own subject."""
CONVERSATIONAL_WORDS = frozenset(
    {
        *("about", "again", "also", "else", "more", "much", "many", "often", "long", "other"),
        *("others", "one", "ones", "same", "so", "too", "really", "exactly", "true", "sure"),
        *("tell", "me", "us", "you", "explain", "elaborate", "please", "detail", "details"),
        *("example", "examples", "mean", "meant", "ok", "okay", "yes", "thanks"),
        *("has", "have", "had", "should", "would"),
    }
)
"""Words that carry no topic in a chat message. A message made only of these, search stop
words (``carqa.qa.lexical.STOPWORDS``: question words, articles...) and pronouns ("why?", "tell me
more", "how often?") can only be about the conversation."""
ASPECT_WORDS = frozenset(
    {
        *("dose", "doses", "dosing", "dosage", "used", "use", "given", "data", "evidence"),
        *("result", "results", "outcome", "outcomes", "finding", "findings", "show", "showed"),
        *("shown", "study", "studies", "trial", "trials", "follow-up", "long-term", "short-term"),
        *("side", "effect", "effects", "adverse", "events", "risk", "risks", "factor", "factors"),
        *("rate", "rates", "response", "responses", "survival", "efficacy", "effective"),
        *("safety", "safe", "mechanism", "mechanisms", "cause", "causes", "treatment"),
        *("treatments", "treat", "treated", "managed", "management", "prevented", "prevention"),
        *("target", "targets", "targeted", "antigen", "antigens", "benefit", "benefits", "work"),
        *("works", "best", "better", "worse", "last", "lasts", "durable", "happen", "happens"),
        *("occur", "occurs", "incidence", "frequency", "common", "difference", "differences"),
        *("children", "child", "adults", "adult", "paediatric", "pediatric", "elderly"),
        *("older", "younger", "young", "adolescents", "infants", "women", "men"),
    }
)
"""Words that ask about an aspect of a subject ("what dose was used?", "any long-term data?",
"what are the side effects?") or narrow it to a group of patients ("in children"), without
naming a subject: a message whose only words of its own are these is about the conversation's
subject."""
MIN_TOPIC_CHARS = 20
"""Below this much room for the topic, a too-long follow-up is searched on its own."""


def _words(text: str) -> list[str]:
    return re.findall(r"[\w'-]+", text.lower())


def _normalise(text: str) -> str:
    return " ".join(text.split())


def _names(word: str) -> bool:
    """Whether ``word`` names a subject: not a stop, conversational, aspect word or pronoun."""
    return (
        word not in STOPWORDS
        and word not in CONVERSATIONAL_WORDS
        and word not in ASPECT_WORDS
        and word not in PRONOUNS
    )


def message_words(text: str) -> list[str]:
    """The words of ``text``, lower-cased, as the rules read them."""
    return _words(text)


def names_subject(word: str) -> bool:
    """Whether the (lower-case) ``word`` could name a subject (see ``_names``)."""
    return _names(word)


def without_connector(message: str) -> str:
    """A follow-up without its connector and final mark ("and in Denmark?" → "in Denmark")."""
    return _CONNECTOR.sub("", message.strip(), count=1).strip().rstrip("?.! ").strip()


def starts_with_preposition(text: str) -> bool:
    """Whether ``text`` is a prepositional phrase ("in Denmark", "for mantle cell lymphoma")."""
    return _STARTS_WITH_PREPOSITION.match(text) is not None


def has_topic_word(message: str) -> bool:
    """Whether ``message`` names something of its own (a word that is neither a stop word, a
    conversational word, an aspect word nor a pronoun)."""
    return any(_names(word) for word in _words(message))


def is_follow_up(message: str) -> bool:
    """Whether ``message`` refers back to the conversation (the rules in the module doc)."""
    text = message.strip()
    words = _words(text)
    if not words:
        return False
    if _STARTS_WITH_CONNECTOR.match(text) or _LEADS_WITH_PREPOSITION.match(text):
        return own_question(text) is None
    if len(words) <= ANAPHORA_WORDS and refers_back(text):
        return True
    return not has_topic_word(text)


def own_question(message: str) -> str | None:
    """The question after a leading "and"/"but"/"also"/"or" when it would stand alone ("And
    what is cytokine release syndrome?" → "What is cytokine release syndrome?"), else None."""
    match = _CONJUNCTION_QUESTION.match(message.strip())
    if not match or is_follow_up(match.group("rest")):
        return None
    rest = match.group("rest")
    return rest[0].upper() + rest[1:]


def refers_back(message: str) -> bool:
    """Whether ``message`` uses a pronoun, or "which one" / "the same", for something earlier
    in the conversation rather than for something it names itself (rule 2 in the module doc)."""
    words = _words(_REFERRING.sub(" it ", message))
    named = joined = False
    for i, word in enumerate(words):
        if word in PRONOUNS:
            relative = word == "that" and i > 0 and _names_or_asks(words[i - 1])
            owner = word in POSSESSIVES and named  # "Do TB patients ... stick to their ...?"
            if not (relative or owner or (named and joined)):
                return True
        elif _names(word):
            named = True
        elif named and word in _CONJUNCTIONS:
            joined = True
    return False


def _names_or_asks(word: str) -> bool:
    return _names(word) or word in ASPECT_WORDS


def topic(history: Sequence[Turn]) -> str | None:
    """The conversation's topic: the one the last turn recorded (for a turn recorded before
    topics were, its query); None for no history."""
    if not history:
        return None
    return history[-1].topic or history[-1].query


def next_topic(
    history: Sequence[Turn], message: str, query: str, *, follow_up: bool | None = None
) -> str:
    """The topic to record with a new turn: its own ``query`` when ``message`` stood on its
    own, otherwise the conversation's, unchanged (so follow-ups never become topics).
    ``follow_up`` says which it was when the caller decided (None: ``is_follow_up``)."""
    if follow_up is None:
        follow_up = is_follow_up(message)
    if not history or not follow_up:
        return query
    return topic(history) or query


def shorten(text: str, max_chars: int) -> str:
    """``text`` cut to at most ``max_chars`` characters, at a word boundary when there is one."""
    if len(text) <= max_chars:
        return text
    head = text[: max_chars + 1]
    cut = head.rsplit(" ", 1)[0] if " " in head else head[:max_chars]
    return cut.rstrip(" ,;:") or text[:max_chars]


def condense(
    topic: str | None, message: str, *, max_chars: int | None = None, attach: bool = False
) -> str:
    """Rule-based standalone query for ``message`` given the conversation's ``topic`` (see the
    module doc), at most ``max_chars`` long when the message itself is. ``attach`` reads the
    message as a follow-up even when the rules alone would not (a question about a detail of
    the papers in focus, see :mod:`carqa.qa.focus`)."""
    message = _normalise(message)
    if not topic:
        return message
    own = own_question(message)
    if own is not None:
        return own
    if not attach and not is_follow_up(message):
        return message
    limit = max_chars if max_chars is not None else sys.maxsize
    body = _CONNECTOR.sub("", message, count=1).strip().rstrip("?.! ").strip()
    body = _COMPARE.sub(r"compared \g<prep>", body, count=1)  # a phrase to add to the topic
    if not body:
        return shorten(topic, limit)
    previous = topic.strip().rstrip("?.! ").strip()
    mark = "?" if topic.strip().endswith("?") or message.endswith("?") else ""
    separator = ": "
    if _STARTS_WITH_PREPOSITION.match(body):
        separator = " "
        body = body[0].lower() + body[1:]  # "In adults?" continues the topic's sentence
        replaced = replace_phrase(previous, body)
        if replaced is not None and len(replaced) + len(mark) <= limit:
            return f"{replaced}{mark}"
    merged = f"{previous}{separator}{body}{mark}"
    if len(merged) <= limit:
        return merged
    # Too long: the follow-up is what was just asked, so the topic gives way.
    room = limit - len(separator) - len(body) - len(mark)
    if room < MIN_TOPIC_CHARS:
        return f"{shorten(body, limit - len(mark))}{mark}"
    return f"{shorten(previous, room)}{separator}{body}{mark}"


# -- what a prepositional phrase names ---------------------------------------------------------

_PHRASE = re.compile(
    rf"\b(?P<prep>{_PREPOSITION}|of)\s+(?P<object>.+?)(?=\s+\b(?:{_PREPOSITION}|of)\b|[,;:]|$)",
    re.IGNORECASE,
)
"""A prepositional phrase of a topic: "of" counts here ("the management of rectal cancer")
though a follow-up cannot start with it."""
_HEAD = re.compile(rf"\s+\b(?:{_PREPOSITION}|of)\b.*$", re.IGNORECASE)
_DISEASE = re.compile(
    r"\b(?:\w+(?:omas?|itis|a?emias?|osis|pathy|plasia|algia)|cancers?|tumou?rs?|diseases?"
    r"|syndromes?|disorders?|infections?|leuka?emias?|lymphomas?|myelomas?|diabetes|asthma"
    r"|strokes?|failure|injur(?:y|ies)|fractures?|malignanc(?:y|ies)|pterygi(?:um|a))\b",
    re.IGNORECASE,
)
_POPULATION = re.compile(
    r"\b(?:children|child|kids|adults?|elderly|older|younger|young|women|men|woman|man|girls"
    r"|boys|infants?|neonates?|newborns?|adolescents?|teenagers|pregnan(?:t|cy)|paediatric"
    r"|pediatric|students|smokers|patients|people|veterans|athletes)\b",
    re.IGNORECASE,
)
_PLACE_WORDS = re.compile(
    r"\b(?:countr(?:y|ies)|cit(?:y|ies)|count(?:y|ies)|provinces?|regions?|villages?|rural"
    r"|urban|nationwide|europe|africa|asia|america|scandinavia)\b",
    re.IGNORECASE,
)
_TITLE_WORD = re.compile(r"\b[A-Z][a-z]{2,}\b")


def phrase_kind(words: str) -> str | None:
    """What the object of a prepositional phrase names: "disease" ("mantle cell lymphoma"),
    "population" ("adults", "pregnant women"), "place" ("Denmark", "northern Israel", "rural
    areas"), or None (a product, an antigen, anything else)."""
    if _DISEASE.search(words):
        return "disease"
    if _POPULATION.search(words):
        return "population"
    if _PLACE_WORDS.search(words) or _TITLE_WORD.search(words):
        return "place"
    return None


def names_a_part(text: str) -> bool:
    """Whether ``text`` holds a prepositional phrase naming a disease, a group of people or a
    place ("imaging in children", "the dose for myeloma"): a part of a subject it changes."""
    return any(phrase_kind(_HEAD.sub("", p.group("object"))) for p in _PHRASE.finditer(text))


def replace_phrase(topic: str, phrase: str) -> str | None:
    """``topic`` (no final "?") with the prepositional ``phrase`` in place of the part it
    replaces (see the module doc), or None when it replaces nothing and is to be added."""
    start = _STARTS_WITH_PREPOSITION.match(phrase)
    if start is None:
        return None
    words = phrase[start.end() :].strip()
    kind = phrase_kind(_HEAD.sub("", words))  # "patients with kidney disease": patients
    phrases = list(_PHRASE.finditer(topic))
    if kind is not None:
        # The topic's phrase of the same kind keeps its preposition and takes the new words.
        same_kind = [p for p in phrases if phrase_kind(p.group("object")) == kind]
        if not same_kind:
            return None
        last = same_kind[-1]
        return f"{topic[: last.start('object')]}{words}{topic[last.end('object') :]}"
    # The topic's phrase with the same preposition, or one with the same first word
    # ("compared to" for "compared with"), whole: its "with" does not end it.
    first = start.group("prep").split()[0].lower()
    same = [
        p
        for p in phrases
        if p.group("prep").split()[0].lower() == first and phrase_kind(p.group("object")) is None
    ]
    if not same:
        return None
    last = same[-1]
    return f"{topic[: last.start()]}{phrase}{topic[last.end() :]}"
