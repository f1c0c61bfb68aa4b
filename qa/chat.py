"""Multi-turn chat: sessions plus follow-up condensation, on top of :class:`qa.engine.Engine`.

A follow-up like "and in adults?" means nothing to a search index on its own. Before retrieval
it is *condensed* with the conversation into a standalone query:

- with an LLM configured, the model rewrites it (``LLMWriter.condense``);
- otherwise by rule (``condense``): a message that starts with a connector ("and", "what
  about"...), is a bare prepositional phrase ("in adults"), is very short, or leans on a pronoun
  ("does it...") is merged into the previous standalone query — a prepositional phrase replaces
  the previous one with the same preposition ("... in children?" + "and in adults?" →
  "... in adults?"), anything else is appended. Other messages stand alone.

The standalone query is what is searched and what ``Answer.query`` reports, so a user (and the
tests) can see how a follow-up was understood.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from qa.engine import Engine
from qa.sessions import SessionStore, Turn
from qa.types import Answer, AnswerEvent, Filters

HISTORY_TURNS = 4
FLAG_SESSION_EXPIRED = "session_expired"

_CONNECTOR = re.compile(
    r"^(?:(?:and|but|also|so|or|ok|okay|then|well)\b[\s,]*)*"
    r"(?:(?:what|how)\s+about|what\s+of|same\s+(?:for|in)|is\s+that\s+(?:also\s+)?true)?\b[\s,:]*",
    re.IGNORECASE,
)
_STARTS_WITH_CONNECTOR = re.compile(
    r"^(?:and|but|also|or|what\s+about|how\s+about|what\s+of|same\s+(?:for|in))\b", re.IGNORECASE
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
PRONOUNS = frozenset({"it", "its", "they", "them", "their", "this", "that", "these", "those"})
SHORT_FOLLOW_UP_WORDS = 3


def _words(text: str) -> list[str]:
    return re.findall(r"[\w'-]+", text.lower())


def is_follow_up(message: str) -> bool:
    """Whether ``message`` leans on the conversation (see the module doc)."""
    text = message.strip()
    words = _words(text)
    if not words:
        return False
    if _STARTS_WITH_CONNECTOR.match(text) or _STARTS_WITH_PREPOSITION.match(text):
        return True
    if len(words) <= SHORT_FOLLOW_UP_WORDS:
        return True
    return len(words) <= 10 and any(word in PRONOUNS for word in words)


def condense(previous_query: str | None, message: str) -> str:
    """Rule-based standalone query for ``message`` given the previous standalone query."""
    message = " ".join(message.split())
    if not previous_query or not is_follow_up(message):
        return message
    body = _CONNECTOR.sub("", message, count=1).strip().rstrip("?.! ").strip()
    if not body:
        return previous_query
    previous = previous_query.strip().rstrip("?.! ").strip()
    mark = "?" if previous_query.strip().endswith("?") or message.endswith("?") else ""
    start = _STARTS_WITH_PREPOSITION.match(body)
    if start:
        preposition = start.group("prep").split()[0]
        phrases = list(
            re.finditer(
                rf"\b{re.escape(preposition)}\b.*?(?=\s+\b(?:{_PREPOSITION})\b|[,;:]|$)",
                previous,
                re.IGNORECASE,
            )
        )
        if phrases:
            last = phrases[-1]
            return f"{previous[: last.start()]}{body}{previous[last.end() :]}{mark}"
        return f"{previous} {body}{mark}"
    return f"{previous}: {body}{mark}"


class ChatService:
    """Answers chat messages within sessions (see the module doc)."""

    def __init__(self, engine: Engine, sessions: SessionStore) -> None:
        self.engine = engine
        self.sessions = sessions

    def standalone_query(self, history: list[Turn], message: str) -> str:
        if not history:
            return " ".join(message.split())
        if self.engine.llm is not None:
            return self.engine.llm.condense([(t.query, t.answer) for t in history], message)
        return condense(history[-1].query, message)

    def _open(self, session_id: str | None) -> tuple[str, list[Turn], list[str]]:
        if session_id and self.sessions.exists(session_id):
            return session_id, self.sessions.history(session_id, limit=HISTORY_TURNS), []
        flags = [FLAG_SESSION_EXPIRED] if session_id else []
        return self.sessions.create(), [], flags

    def reply(
        self,
        message: str,
        session_id: str | None = None,
        *,
        k: int = 5,
        filters: Filters | None = None,
    ) -> tuple[str, Answer]:
        """(session id, answer). An unknown or expired id starts a new session (flagged)."""
        self.engine.validate(message, k)
        session_id, history, flags = self._open(session_id)
        query = self.standalone_query(history, message)
        answer = self.engine.ask(query, k=k, filters=filters)
        answer.flags = [*answer.flags, *flags]
        self.sessions.append(
            session_id,
            message=message,
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
        a session opened) before the first event."""
        self.engine.validate(message, k)
        session_id, history, flags = self._open(session_id)
        query = self.standalone_query(history, message)
        return self._stream(session_id, message, query, k, filters, flags)

    def _stream(
        self,
        session_id: str,
        message: str,
        query: str,
        k: int,
        filters: Filters | None,
        flags: list[str],
    ) -> Iterator[AnswerEvent]:
        for event in self.engine.ask_stream(query, k=k, filters=filters):
            if event.type == "done":
                data = dict(event.data)
                data["flags"] = [*data.get("flags", []), *flags]
                data["session_id"] = session_id
                self.sessions.append(
                    session_id,
                    message=message,
                    query=data.get("query", query),
                    answer=data.get("answer", ""),
                    abstained=bool(data.get("abstained")),
                )
                yield AnswerEvent("done", data)
            else:
                yield event
