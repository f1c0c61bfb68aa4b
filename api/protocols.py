"""What the HTTP layer needs from the answering services: two small Protocols.

The app is given an engine and a chat service (opened at start-up from the settings, or passed
in by the CLI and by tests). Typing them as Protocols rather than the concrete
:class:`carqa.qa.engine.Engine` and :class:`carqa.qa.chat.ChatService` says exactly which calls
the routes make, and lets tests check that their stand-ins (``tests/api/fakes.py``) offer the
same calls as the real classes (``tests/api/test_protocols.py``).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Protocol, runtime_checkable

from carqa.qa.types import Answer, AnswerEvent, Filters


@runtime_checkable
class AnswerEngine(Protocol):
    """Answers one question; describes the indexed papers (``/api/query``, ``/api/papers``,
    ``/api/stats``)."""

    def ask(self, question: str, *, k: int = 5, filters: Filters | None = None) -> Answer: ...

    def paper(self, pmid: str) -> dict[str, Any] | None: ...

    def stats(self) -> dict[str, Any]: ...


@runtime_checkable
class ChatReplier(Protocol):
    """Answers one chat turn in the context of its session (``/api/chat``)."""

    def reply(
        self,
        message: str,
        session_id: str | None = None,
        *,
        k: int = 5,
        filters: Filters | None = None,
    ) -> tuple[str, Answer]: ...

    def reply_stream(
        self,
        message: str,
        session_id: str | None = None,
        *,
        k: int = 5,
        filters: Filters | None = None,
    ) -> Iterator[AnswerEvent]: ...
