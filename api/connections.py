"""Connection-level limits for ``carqa serve``: what uvicorn does not bound by itself.

uvicorn times out a keep-alive connection only *after* a response; a client that connects and
sends nothing, or half a request head, is kept forever. Enough of them use up the open-file
limit: then the listening socket cannot accept, ``/healthz`` times out, and asyncio logs
"socket.accept() out of system resource" on every retry. :class:`GuardedH11Protocol` (uvicorn's
h11 protocol, selected by import path) adds two bounds:

- **a request-head timeout** (``header_timeout_seconds``): a connection that has not sent a
  complete request head that long after it opened (or after its last response) is closed;
- **a connection cap** (``max_connections``, by default half the open-file limit, at most
  1000) kept below the file limit: at the cap, a new connection pushes out the oldest one
  that is idle (no request in progress), so slow clients cannot lock out new ones; only when
  every connection is busy answering is the newcomer closed. The listen backlog (how many
  connections are accepted in one go, before the cap can act) is an eighth of the limit.

The accept error is also rate-limited in the log (:class:`AcceptErrorFilter`), should the file
limit still be reached (other files, another process). Request bodies are bounded in size by
:class:`carqa.api.limits.BodySizeLimitMiddleware`. Behind a reverse proxy (nginx, Caddy) the
proxy does this buffering and timing out as well; see docs/serving.md.
"""

from __future__ import annotations

import asyncio
import logging
import resource
import time
from typing import Any

from uvicorn.protocols.http.h11_impl import H11Protocol

from carqa.settings import Settings

PROTOCOL = "carqa.api.connections:GuardedH11Protocol"
"""The import path uvicorn is given (``http=``): a path, not the class, so a reloaded or
spawned worker process imports it too."""
MAX_AUTO_CONNECTIONS = 1000
ACCEPT_ERROR = "socket.accept() out of system resource"
ACCEPT_LOG_EVERY_SECONDS = 60.0

logger = logging.getLogger("carqa.api")


def open_file_limit() -> int:
    """The process's soft limit on open files (``ulimit -n``)."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return soft if soft != resource.RLIM_INFINITY else 1 << 20


def default_max_connections(file_limit: int | None = None) -> int:
    """Half the open-file limit, at most :data:`MAX_AUTO_CONNECTIONS`: the other half stays
    for the index files, the sessions database, the model and the log."""
    limit = open_file_limit() if file_limit is None else file_limit
    return max(8, min(MAX_AUTO_CONNECTIONS, limit // 2))


def accept_backlog(file_limit: int | None = None) -> int:
    """The listen backlog, which is also how many connections asyncio accepts in one go
    (before any of them can be closed by the cap): an eighth of the open-file limit, so cap
    plus one batch stays below it. uvicorn's 2048 took every file of a 256-file process in
    one batch, and then logged the accept error once per remaining connection of the batch."""
    limit = open_file_limit() if file_limit is None else file_limit
    return max(16, min(2048, limit // 8))


def max_connections(settings: Settings) -> int:
    """The configured cap, or the default for this process's file limit. A configured cap
    above the file limit is lowered to the default (and logged): the cap must stay below
    the limit, or the accept errors are back."""
    limit = open_file_limit()
    if settings.max_connections is None:
        return default_max_connections(limit)
    if settings.max_connections >= limit:
        fallback = default_max_connections(limit)
        logger.warning(
            "max_connections %d is not below the open-file limit %d: using %d",
            settings.max_connections,
            limit,
            fallback,
        )
        return fallback
    return settings.max_connections


class GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with a request-head timeout and a connection cap (see the module
    docstring). The limits are set once per process by :meth:`configure`, or read from the
    ``CARQA_*`` settings by the first connection of a process that was not configured."""

    limits: tuple[int, float] | None = None

    @classmethod
    def configure(cls, settings: Settings) -> None:
        cls.limits = (max_connections(settings), settings.header_timeout_seconds)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if GuardedH11Protocol.limits is None:
            GuardedH11Protocol.configure(Settings.load())
        self._opened = time.monotonic()
        self._head_timer: asyncio.TimerHandle | None = None

    def _idle(self) -> bool:
        """No request in progress: waiting for (the rest of) a request head."""
        return self.cycle is None or self.cycle.response_complete

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        cap, _ = self.limits or (MAX_AUTO_CONNECTIONS, 0.0)
        open_now = sum(1 for c in self.connections if not _closing(c))
        if open_now > cap:
            self._make_room()
        if not transport.is_closing():
            self._arm_head_timer()

    def _make_room(self) -> None:
        """Close the oldest idle connection, or this new one if every other is busy."""
        # Connections closed earlier in this turn of the loop are still in the set (they leave
        # it on the next turn): skipping them, each newcomer closes a different one.
        idle = [
            c
            for c in self.connections
            if c is not self and isinstance(c, GuardedH11Protocol) and c._idle() and not _closing(c)
        ]
        victim = min(idle, key=lambda c: c._opened) if idle else self
        victim.transport.abort()  # the file is freed on the loop's next turn

    def _arm_head_timer(self) -> None:
        self._cancel_head_timer()
        _, timeout = self.limits or (0, 0.0)
        if timeout > 0:
            self._head_timer = self.loop.call_later(timeout, self._head_timed_out)

    def _cancel_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if self._idle() and not self.transport.is_closing():
            self.transport.abort()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing():
            self._arm_head_timer()  # the next request's head is bounded the same way

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_head_timer()
        super().connection_lost(exc)


def _closing(connection: Any) -> bool:
    transport = getattr(connection, "transport", None)
    return transport is None or transport.is_closing()


class AcceptErrorFilter(logging.Filter):
    """Lets asyncio's "socket.accept() out of system resource" through once a minute, with
    how many were held back; other records pass untouched."""

    def __init__(self, every_seconds: float = ACCEPT_LOG_EVERY_SECONDS) -> None:
        super().__init__()
        self.every_seconds = every_seconds
        self._last = float("-inf")
        self.suppressed = 0

    def filter(self, record: logging.LogRecord) -> bool:
        if ACCEPT_ERROR not in str(record.msg):
            return True
        now = time.monotonic()
        if now - self._last < self.every_seconds:
            self.suppressed += 1
            return False
        self._last = now
        more = f" ({self.suppressed} more held back)" if self.suppressed else ""
        self.suppressed = 0
        record.msg = (
            f"{ACCEPT_ERROR}: the open-file limit is reached; lower max_connections "
            f"or raise the limit (ulimit -n){more}"
        )
        record.args = ()
        record.exc_info = None  # one line, not a traceback per retry
        return True


def install_accept_log_filter() -> None:
    """Rate-limit the accept error on asyncio's logger (idempotent)."""
    log = logging.getLogger("asyncio")
    if not any(isinstance(f, AcceptErrorFilter) for f in log.filters):
        log.addFilter(AcceptErrorFilter())


def uvicorn_options(settings: Settings) -> dict[str, Any]:
    """The uvicorn settings that bound connections and decide whose address a request has."""
    GuardedH11Protocol.configure(settings)
    install_accept_log_filter()
    return {
        "http": PROTOCOL,
        # X-Forwarded-For / -Proto are believed only from the configured proxies: believed
        # from anyone, a client picks its own address (and so its rate-limit bucket).
        "proxy_headers": bool(settings.forwarded_allow_ips),
        "forwarded_allow_ips": ",".join(settings.forwarded_allow_ips) or None,
        "backlog": accept_backlog(),
        "timeout_keep_alive": 5,
        # Open SSE streams must not hold a shutdown (Ctrl-C) for long.
        "timeout_graceful_shutdown": 5,
    }
