"""The answering services the app shares between requests, and why they may be missing.

The engine (model + index) is loaded once, at start-up, and shared by every request. When the
index is missing or unusable the app still starts: :class:`Services` keeps the error, ``/readyz``
reports it and ``/api/*`` answer 503 with a hint (the details, which name paths on the server, go
to the server log). Loading is retried
(at most every ``retry_seconds``) when a request needs the engine, so a server started before
``carqa build`` finished becomes ready without a restart — and without a crash loop.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from carqa.api.errors import ApiError, carqa_error_status, unavailable_text
from carqa.api.protocols import AnswerEngine, ChatReplier

from carqa.errors import CarqaError
from carqa.settings import Settings

logger = logging.getLogger("carqa.api")

EngineFactory = Callable[[Settings], AnswerEngine]
ChatFactory = Callable[[Any, Settings], ChatReplier]


def open_engine(settings: Settings) -> AnswerEngine:
    """The production engine: ``carqa.qa.engine.Engine.open`` (imported late: it pulls in the
    model)."""
    from carqa.qa.engine import Engine

    return Engine.open(settings)


def open_chat(engine: Any, settings: Settings) -> ChatReplier:
    """The production chat service: sessions in ``settings.sessions_file``, or in memory, with
    a warning, when that file cannot be written. A read-only index directory is a normal
    deployment, and ``/api/query`` needs no sessions: it must not stop the server."""
    from carqa.qa.chat import ChatService
    from carqa.qa.sessions import open_or_in_memory

    path = settings.sessions_file
    sessions, problem = open_or_in_memory(
        path,
        ttl_seconds=settings.session_ttl_seconds,
        max_sessions=settings.max_sessions,
        max_turns=settings.max_turns_per_session,
    )
    if problem is not None:
        logger.warning(
            "cannot write the chat sessions database %s (%s): chat sessions are kept in memory "
            "and will not survive a restart. To keep them, set CARQA_SESSIONS_PATH "
            "(or carqa serve --sessions-path) to a file in a writable directory.",
            path,
            problem,
        )
    return ChatService(engine, sessions)


class Services:
    """The engine and chat service, or the reason they are not available."""

    def __init__(
        self,
        settings: Settings,
        *,
        engine: AnswerEngine | None = None,
        chat: ChatReplier | None = None,
        engine_factory: EngineFactory = open_engine,
        chat_factory: ChatFactory = open_chat,
        retry_seconds: float = 30.0,
    ) -> None:
        self.settings = settings
        self.engine = engine
        self.chat = chat
        self.engine_factory = engine_factory
        self.chat_factory = chat_factory
        self.retry_seconds = retry_seconds
        self.error: CarqaError | None = None
        self._last_attempt = float("-inf")
        self._lock = threading.Lock()

    @property
    def ready(self) -> bool:
        return self.engine is not None and self.chat is not None

    def load(self, *, throttled: bool = False) -> None:
        """Load whatever is missing. Index problems are kept in ``error``, never raised.

        ``throttled``: only if the last attempt is ``retry_seconds`` old, decided under the
        lock, so requests that queued behind one attempt do not each repeat it."""
        with self._lock:
            if self.ready:
                return
            if throttled and time.monotonic() - self._last_attempt < self.retry_seconds:
                return
            self._last_attempt = time.monotonic()
            try:
                if self.engine is None:
                    self.engine = self.engine_factory(self.settings)
                if self.chat is None:
                    self.chat = self.chat_factory(self.engine, self.settings)
            except CarqaError as error:
                self.error = error
                # Not always the index: a misconfigured LLM stops the engine too (the
                # error's text carries its hint).
                logger.warning("not ready to answer: %s", error)
                return
            self.error = None

    def require(self) -> tuple[AnswerEngine, ChatReplier]:
        """The engine and chat service, or a 503 :class:`ApiError` saying how to fix it."""
        if not self.ready and time.monotonic() - self._last_attempt >= self.retry_seconds:
            self.load(throttled=True)
        if self.ready:
            assert self.engine is not None and self.chat is not None
            return self.engine, self.chat
        error = self.error
        if error is None:
            raise ApiError(503, "not_ready", "The index is still loading.", hint="Retry shortly.")
        # The error itself (paths, a damaged file's content) was logged when loading failed.
        status, code = carqa_error_status(error)
        if status != 503:
            code = "unavailable"
        message, hint = unavailable_text(code)
        raise ApiError(503, code, message, hint=hint)
