"""Multi-turn chat: sessions plus follow-up condensation, on top of :class:`carqa.qa.engine.Engine`.

A follow-up like "and in adults?" means nothing to a search index on its own. Before retrieval
it is *condensed* with the conversation into a standalone query:

- with an LLM configured, the model rewrites it (``LLMWriter.condense``); a reply holding no
  question (empty, invisible characters, a stray "[1]") falls back to the rules;
- otherwise by rule (``condense``), with the conversation's *topic*: the query of the last
  message that stood on its own (each turn records it, see ``carqa.qa.sessions.Turn.topic``).
  Follow-ups attach to the topic, never to the previous condensed query, so a long run of
  follow-ups does not pile up into one ever-longer query: "what about toxicity?" then "and
  neurotoxicity?" search "<topic>: toxicity?" then "<topic>: neurotoxicity?" (and "and in
  adults?" after "what about toxicity?" refines the topic, not the toxicity query: a rule
  cannot tell which earlier follow-up a later one builds on). A prepositional phrase replaces the
  topic's last phrase with the same preposition ("... in children?" + "and in adults?" →
  "... in adults?"), a comparison ("compare that with axi-cel", "how does it compare to
  axi-cel?") becomes the phrase "compared with/to axi-cel"; anything else is appended after a
  colon.

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
   or a pronoun after the message named a subject and went on with "and"/"or"/"but" ("What
   causes CRS and how is it treated?");
3. it names no subject of its own: only stop words, conversational words ("why?", "tell me
   more", "how often?") and aspect words, which ask about an aspect of a subject or narrow it
   to a group of patients ("what dose was used?", "any long-term data?", "what are the side
   effects in children?").

Everything else stands alone, however short: "What is ICANS?" and "Tocilizumab for CRS?" are
new questions, not follow-ups.

The standalone query is what is searched and what ``Answer.query`` reports, so a user (and the
tests) can see how a follow-up was understood. The question length limit
(``max_question_chars``) applies to what the user typed; a condensed query is shortened to fit
it (the topic gives way, the follow-up is kept whole), so it is never rejected for length.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterator, Sequence

from carqa.qa.engine import Engine
from carqa.qa.lexical import STOPWORDS
from carqa.qa.sessions import SessionStore, Turn
from carqa.qa.types import Answer, AnswerEvent, Filters

HISTORY_TURNS = 4
"""Turns an LLM sees when it condenses a follow-up."""
FLAG_SESSION_EXPIRED = "session_expired"
SESSION_EXPIRED_MESSAGE = (
    "This conversation was not found or has expired, so a new one was started."
)

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
            if not (relative or (named and joined)):
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


def next_topic(history: Sequence[Turn], message: str, query: str) -> str:
    """The topic to record with a new turn: its own ``query`` when ``message`` stood on its
    own, otherwise the conversation's, unchanged (so follow-ups never become topics)."""
    if not history or not is_follow_up(message):
        return query
    return topic(history) or query


def shorten(text: str, max_chars: int) -> str:
    """``text`` cut to at most ``max_chars`` characters, at a word boundary when there is one."""
    if len(text) <= max_chars:
        return text
    head = text[: max_chars + 1]
    cut = head.rsplit(" ", 1)[0] if " " in head else head[:max_chars]
    return cut.rstrip(" ,;:") or text[:max_chars]


def condense(topic: str | None, message: str, *, max_chars: int | None = None) -> str:
    """Rule-based standalone query for ``message`` given the conversation's ``topic`` (see the
    module doc), at most ``max_chars`` long when the message itself is."""
    message = _normalise(message)
    if not topic:
        return message
    own = own_question(message)
    if own is not None:
        return own
    if not is_follow_up(message):
        return message
    limit = max_chars if max_chars is not None else sys.maxsize
    body = _CONNECTOR.sub("", message, count=1).strip().rstrip("?.! ").strip()
    body = _COMPARE.sub(r"compared \g<prep>", body, count=1)  # a phrase to add to the topic
    if not body:
        return shorten(topic, limit)
    previous = topic.strip().rstrip("?.! ").strip()
    mark = "?" if topic.strip().endswith("?") or message.endswith("?") else ""
    separator = ": "
    start = _STARTS_WITH_PREPOSITION.match(body)
    if start:
        separator = " "
        body = body[0].lower() + body[1:]  # "In adults?" continues the topic's sentence
        # The topic's phrase starts with the same preposition, or one with the same first
        # word ("compared to" for "compared with"), whole: its "with" does not end it.
        first = start.group("prep").split()[0].lower()
        same = "|".join(p.replace(" ", r"\s+") for p in PREPOSITIONS if p.split()[0] == first)
        phrases = list(
            re.finditer(
                rf"\b(?:{same})\b.*?(?=\s+\b(?:{_PREPOSITION})\b|[,;:]|$)",
                previous,
                re.IGNORECASE,
            )
        )
        if phrases:
            last = phrases[-1]
            replaced = f"{previous[: last.start()]}{body}{previous[last.end() :]}{mark}"
            if len(replaced) <= limit:
                return replaced
    merged = f"{previous}{separator}{body}{mark}"
    if len(merged) <= limit:
        return merged
    # Too long: the follow-up is what was just asked, so the topic gives way.
    room = limit - len(separator) - len(body) - len(mark)
    if room < MIN_TOPIC_CHARS:
        return f"{shorten(body, limit - len(mark))}{mark}"
    return f"{shorten(previous, room)}{separator}{body}{mark}"


def expired_note(message: str, answer_message: str | None) -> str:
    """The reply's ``message`` when the client's session was unknown or expired: say so first,
    so an answer (or an abstention) to a follow-up read without its conversation is not taken
    for an answer in context."""
    note = SESSION_EXPIRED_MESSAGE
    if is_follow_up(message):
        note += " Your message was read on its own, without the earlier questions."
    return f"{note} {answer_message}" if answer_message else note


class ChatService:
    """Answers chat messages within sessions (see the module doc)."""

    def __init__(self, engine: Engine, sessions: SessionStore) -> None:
        self.engine = engine
        self.sessions = sessions

    def standalone_query(self, history: Sequence[Turn], message: str) -> str:
        """What to search for ``message`` (see the module doc); never longer than the question
        length limit, which the user's own message has already passed."""
        limit = self.engine.settings.max_question_chars
        if not history:
            return shorten(_normalise(message), limit)
        if self.engine.llm is not None:
            pairs = [(t.query, t.answer) for t in history]
            condensed = self.engine.llm.condense(pairs, message)
            if condensed:  # else the model wrote no question: the rules below condense
                return shorten(_normalise(condensed), limit)
        return condense(topic(history), message, max_chars=limit)

    def _open(self, session_id: str | None) -> tuple[str | None, list[Turn], bool]:
        """(the live session id or None, its recent turns, whether the given id was unknown
        or expired). A new session is not created here but by :meth:`_record`, once the
        answer is done: an answer that fails (the LLM down, a stream cut off, the client
        gone) leaves no session the client is never told of, and evicts no live one under
        ``max_sessions`` to make room for it."""
        if session_id and self.sessions.exists(session_id):
            return session_id, self.sessions.history(session_id, limit=HISTORY_TURNS), False
        return None, [], bool(session_id)

    def _record(
        self,
        session_id: str | None,
        history: list[Turn],
        message: str,
        *,
        query: str,
        answer: str,
        abstained: bool,
    ) -> str:
        """Record a finished turn, in a new session when ``session_id`` is None; its id."""
        if session_id is None:
            session_id = self.sessions.create()
        self.sessions.append(
            session_id,
            message=message,
            query=query,
            answer=answer,
            abstained=abstained,
            topic=next_topic(history, message, query),
        )
        return session_id

    def reply(
        self,
        message: str,
        session_id: str | None = None,
        *,
        k: int = 5,
        filters: Filters | None = None,
    ) -> tuple[str, Answer]:
        """(session id, answer). An unknown or expired id starts a new session: the answer is
        flagged ``session_expired`` and its ``message`` says so (see ``expired_note``)."""
        message = self.engine.validate(message, k)  # as it reads: condensed, stored
        session_id, history, expired = self._open(session_id)
        query = self.standalone_query(history, message)
        answer = self.engine.ask(query, k=k, filters=filters)
        if expired:
            answer.flags = [*answer.flags, FLAG_SESSION_EXPIRED]
            answer.message = expired_note(message, answer.message)
        session_id = self._record(
            session_id,
            history,
            message,
            query=answer.query,
            answer=answer.answer,
            abstained=answer.abstained,
        )
        return session_id, answer

    def reply_stream(
        self,
        message: str,
        session_id: str | None = None,
        *,
        k: int = 5,
        filters: Filters | None = None,
    ) -> Iterator[AnswerEvent]:
        """The engine's events; ``done`` also carries ``session_id``. Input is validated (and
        the session read) before the first event; a new session is created with ``done``, so
        a stream that ends in an error (or is abandoned) leaves none behind."""
        message = self.engine.validate(message, k)
        session_id, history, expired = self._open(session_id)
        query = self.standalone_query(history, message)
        return self._stream(session_id, history, message, query, k, filters, expired)

    def _stream(
        self,
        session_id: str | None,
        history: list[Turn],
        message: str,
        query: str,
        k: int,
        filters: Filters | None,
        expired: bool,
    ) -> Iterator[AnswerEvent]:
        for event in self.engine.ask_stream(query, k=k, filters=filters):
            if event.type == "done":
                data = dict(event.data)
                if expired:
                    data["flags"] = [*data.get("flags", []), FLAG_SESSION_EXPIRED]
                    data["message"] = expired_note(message, data.get("message"))
                data["session_id"] = self._record(
                    session_id,
                    history,
                    message,
                    query=data.get("query") or query,
                    answer=data.get("answer", ""),
                    abstained=bool(data.get("abstained")),
                )
                yield AnswerEvent("done", data)
            else:
                yield event
