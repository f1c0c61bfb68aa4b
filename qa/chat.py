"""Multi-turn chat: sessions, follow-ups and the papers a conversation is about, on top of
:class:`carqa.qa.engine.Engine`.

Each turn is planned (``ChatService.plan``) from the conversation so far:

- a question about a detail of the papers the conversation is about ("how many patients were
  included?", "where was the study done?", "which dose?"; :func:`carqa.qa.focus.asks_about_focus`)
  is answered from those papers first (:func:`carqa.qa.focus.answer_from_focus`): the sentence that
  holds the detail is quoted. When they do not answer it, the whole corpus is searched with the
  condensed query (the reply is flagged ``focus_widened``), and the engine abstains when nothing
  answers;
- another follow-up ("and in adults?", "what about mesothelin?") is condensed with the
  conversation's topic into a standalone query (:mod:`carqa.qa.followup`) and searched;
- anything else is a new question, searched as it reads.

With an LLM configured, the model condenses follow-ups (``LLMWriter.condense``; a reply holding
no question falls back to the rules), and writes a detail answer from the papers in focus when
they answer it: the same plan, the same focus.

The conversation's *focus* is the papers (and sentences) the last answer cited: each turn
records them (``carqa.qa.sessions.Turn.cited``; an abstention keeps the earlier focus). The reply's
``query`` is what was searched (or asked of the papers in focus) and ``focus_pmids`` the papers
in focus it was answered from (empty when it searched the corpus), so a user and the tests can
see how a message was understood.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from threading import Lock
from typing import Any

from carqa.qa import agreement
from carqa.qa.engine import Engine
from carqa.qa.focus import (
    answer_from_focus,
    asks_about_focus,
    excluding,
    known_words,
    not_about,
    restrict,
)
from carqa.qa.followup import (
    _normalise,
    condense,
    is_follow_up,
    next_topic,
    shorten,
    topic,
)
from carqa.qa.sessions import SessionStore, Turn
from carqa.qa.types import Answer, AnswerEvent, Filters

__all__ = [
    "FLAG_FOCUS_WIDENED",
    "FLAG_SESSION_EXPIRED",
    "ChatService",
    "Plan",
    "condense",
    "expired_note",
    "is_follow_up",
    "next_topic",
    "topic",
]

FOCUS_PAPERS = 6
"""At most this many papers of the conversation are asked a detail question first."""
PAPER_WORDS_CACHE = 4096
"""Papers whose words the chat keeps (to tell a detail question from a new subject)."""
HISTORY_TURNS = 4
"""Turns an LLM sees when it condenses a follow-up."""
FLAG_SESSION_EXPIRED = "session_expired"
FLAG_FOCUS_WIDENED = "focus_widened"
FOCUS_WIDENED_MESSAGE = (
    "The papers discussed so far do not say, so all indexed papers were searched."
)
SESSION_EXPIRED_MESSAGE = (
    "This conversation was not found or has expired, so a new one was started."
)


@dataclass(frozen=True)
class Plan:
    """How a message is answered: ``query`` is searched (and reported); ``follow_up`` says
    whether the message refers back (the conversation's topic is then kept); ``focus`` is the
    papers to answer it from first (empty: search the corpus), ``earlier`` those to try next;
    ``exclude``: the papers a search for it leaves out (those a refinement's new subject rules
    out, ``carqa.qa.focus.not_about``)."""

    query: str
    follow_up: bool
    focus: list[str] = field(default_factory=list)
    earlier: list[str] = field(default_factory=list)
    exclude: list[str] = field(default_factory=list)


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
        self._words: OrderedDict[str, frozenset[str]] = OrderedDict()
        self._lock = Lock()

    def plan(self, history: Sequence[Turn], message: str) -> Plan:
        """How to answer ``message`` after ``history`` (see the module doc). The query is
        never longer than the question length limit, which the user's own message passed."""
        limit = self.engine.settings.max_question_chars
        if not history:
            return Plan(shorten(_normalise(message), limit), follow_up=False)
        # The papers the last answer cited; then those the turns before it cited: a detail the
        # last papers do not give may be in a paper the conversation discussed earlier.
        focus = history[-1].focus[:FOCUS_PAPERS]
        discussed = dict.fromkeys(p for turn in reversed(history) for p in turn.focus)
        earlier = [p for p in discussed if p not in focus][:FOCUS_PAPERS]

        def known() -> set[str]:
            texts = (text for turn in history for text in (turn.message, turn.query))
            papers = (self._paper_words(pmid) for pmid in [*focus, *earlier])
            return known_words(texts).union(*papers)

        about_focus = bool(focus) and asks_about_focus(message, known)
        follow_up = about_focus or is_follow_up(message)
        query = None
        if self.engine.llm is not None:
            pairs = [(t.query, t.answer) for t in history]
            condensed = self.engine.llm.condense(pairs, message)
            if condensed:  # else the model wrote no question: the rules below condense
                query = shorten(_normalise(condensed), limit)
        if query is None:
            query = condense(topic(history), message, max_chars=limit, attach=about_focus)
        if about_focus:
            return Plan(query, follow_up, focus=focus, earlier=earlier)
        # A refinement names something new ("and for mantle cell lymphoma?"): a paper the
        # conversation has cited that does not mention it cannot answer it, however well it
        # matches the topic.
        exclude = not_about(message, discussed, self._paper_words) if follow_up else []
        return Plan(query, follow_up, exclude=exclude)

    def standalone_query(self, history: Sequence[Turn], message: str) -> str:
        """What is searched for ``message`` (``plan(...).query``)."""
        return self.plan(history, message).query

    def _paper_words(self, pmid: str) -> frozenset[str]:
        """The words (stems) of a paper's title and abstract sentences, kept for the next
        turns (the opened index does not change)."""
        with self._lock:
            words = self._words.get(pmid)
            if words is not None:
                self._words.move_to_end(pmid)
                return words
        retriever = self.engine.retriever
        paper = retriever.index.papers.get(pmid)
        texts = [getattr(paper, "title", None) or ""]
        texts.extend(
            retriever.index.sentences[int(i)].text for i in retriever.paper_sentences(pmid)
        )
        words = frozenset(known_words(texts))
        with self._lock:
            self._words[pmid] = words
            while len(self._words) > PAPER_WORDS_CACHE:
                self._words.popitem(last=False)
        return words

    def _from_focus(
        self, history: Sequence[Turn], message: str, plan: Plan, filters: Filters | None
    ) -> tuple[Answer, list[str]] | None:
        """The extractive answer from the paper the last answer led with ("the study"), else
        from the other papers it cited, else from those cited before, and the papers it was
        answered from; None when none answers the message (or it is not about them)."""
        quoted = [text for turn in history for _, text in turn.cited]
        for papers in (plan.focus[:1], plan.focus[1:], plan.earlier):
            if not papers:
                continue
            answer = answer_from_focus(
                self.engine, message, plan.query, papers, quoted=quoted, filters=filters
            )
            if answer is not None:
                return answer, papers
        return None

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
        plan: Plan,
        data: dict[str, Any],
    ) -> str:
        """Record a finished turn (``data``: the answer's dict), in a new session when
        ``session_id`` is None; its id."""
        if session_id is None:
            session_id = self.sessions.create()
        query = data.get("query") or plan.query
        abstained = bool(data.get("abstained"))
        cited = [(str(c["pmid"]), str(c["text"])) for c in data.get("citations") or []]
        if abstained or not cited:  # the conversation is still about the same papers
            cited = list(history[-1].cited) if history else []
        self.sessions.append(
            session_id,
            message=message,
            query=query,
            answer=data.get("answer", ""),
            abstained=abstained,
            topic=next_topic(history, message, query, follow_up=plan.follow_up),
            cited=cited,
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
        plan = self.plan(history, message)
        found = self._from_focus(history, message, plan, filters)
        if found is not None:
            answer, papers = found
            if self.engine.llm is not None:  # the model writes from the papers in focus
                answer = self.engine.ask(plan.query, k=k, filters=restrict(filters, papers))
            answer.focus_pmids = list(papers)
        else:
            answer = self.engine.ask(plan.query, k=k, filters=excluding(filters, plan.exclude))
            answer.focus_pmids = []
            if plan.focus:
                answer.flags = [*answer.flags, FLAG_FOCUS_WIDENED]
                answer.message = _note(FOCUS_WIDENED_MESSAGE, answer.message)
        if expired:
            answer.flags = [*answer.flags, FLAG_SESSION_EXPIRED]
            answer.message = expired_note(message, answer.message)
        recorded = {
            "query": answer.query,
            "answer": answer.answer,
            "abstained": answer.abstained,
            "citations": [{"pmid": c.pmid, "text": c.text} for c in answer.citations],
        }
        session_id = self._record(session_id, history, message, plan, recorded)
        return session_id, answer

    def reply_stream(
        self,
        message: str,
        session_id: str | None = None,
        *,
        k: int = 5,
        filters: Filters | None = None,
    ) -> Iterator[AnswerEvent]:
        """The answer's events (as ``Engine.ask_stream``); ``done`` also carries
        ``session_id``. Input is validated (and the session read) before the first event; a
        new session is created with ``done``, so a stream that ends in an error (or is
        abandoned) leaves none behind."""
        message = self.engine.validate(message, k)
        session_id, history, expired = self._open(session_id)
        plan = self.plan(history, message)
        found = self._from_focus(history, message, plan, filters)
        papers: list[str] = []
        if found is None:
            events = self.engine.ask_stream(
                plan.query, k=k, filters=excluding(filters, plan.exclude)
            )
        elif self.engine.llm is not None:
            papers = found[1]
            events = self.engine.ask_stream(plan.query, k=k, filters=restrict(filters, papers))
        else:
            papers = found[1]
            events = _events(found[0])
        return self._stream(session_id, history, message, plan, events, papers, expired=expired)

    def _stream(
        self,
        session_id: str | None,
        history: list[Turn],
        message: str,
        plan: Plan,
        events: Iterator[AnswerEvent],
        papers: list[str],
        *,
        expired: bool,
    ) -> Iterator[AnswerEvent]:
        """``events`` with ``done`` completed (``papers``: those in focus it was answered from,
        none when it searched the corpus) and the turn recorded."""
        for event in events:
            if event.type == "done":
                data = dict(event.data)
                data["focus_pmids"] = list(papers)
                if plan.focus and not papers:
                    data["flags"] = [*data.get("flags", []), FLAG_FOCUS_WIDENED]
                    data["message"] = _note(FOCUS_WIDENED_MESSAGE, data.get("message"))
                if expired:
                    data["flags"] = [*data.get("flags", []), FLAG_SESSION_EXPIRED]
                    data["message"] = expired_note(message, data.get("message"))
                data["session_id"] = self._record(session_id, history, message, plan, data)
                yield AnswerEvent("done", data)
            else:
                yield event


def _note(note: str, message: str | None) -> str:
    return f"{note} {message}" if message else note


def _events(answer: Answer) -> Iterator[AnswerEvent]:
    """A ready extractive answer as stream events, as ``Engine.ask_stream`` sends one."""
    yield AnswerEvent("sources", {"citations": [c.to_dict() for c in answer.citations]})
    for piece in agreement.sentence_pieces(answer.segments):
        yield AnswerEvent("delta", {"text": piece})
    yield AnswerEvent("done", answer.to_dict())
