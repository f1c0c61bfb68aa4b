"""Request limits: a cap on body size, no compressed bodies (ASGI middlewares), and a
per-client rate limit.

The body cap runs before any route reads the body, so an oversized upload is refused with 413
without being buffered: by its ``Content-Length`` when it declares one, otherwise by counting
the bytes as they stream in (chunked uploads declare no length).

The rate limit is a token bucket per client: ``per_minute`` tokens, refilled continuously, so a
client may burst up to its full minute and then gets one request every ``60 / per_minute`` s.
"""

from __future__ import annotations

import json
import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable

from carqa.api.errors import ApiError, error_body
from starlette.types import ASGIApp, Message, Receive, Scope, Send


class BodyTooLarge(ApiError):
    def __init__(self, limit: int) -> None:
        super().__init__(
            413, "body_too_large", f"The request body is larger than the {limit}-byte limit."
        )


class BodySizeLimitMiddleware:
    """Refuse HTTP request bodies larger than ``max_bytes`` with a JSON 413."""

    def __init__(self, app: ASGIApp, *, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or self.max_bytes <= 0:
            await self.app(scope, receive, send)
            return

        declared = _content_length(scope)
        if declared is not None and declared > self.max_bytes:
            await _send_413(send, self.max_bytes)
            return

        received = 0
        response_started = False

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise BodyTooLarge(self.max_bytes)
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal response_started
            if message["type"] == "http.response.start":
                response_started = True
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except BodyTooLarge:
            # Normally the app's error handler already answered; this covers routes that read
            # the body outside FastAPI's request handling.
            if not response_started:
                await _send_413(send, self.max_bytes)


class ContentEncodingMiddleware:
    """Refuse compressed request bodies (``Content-Encoding`` other than ``identity``) with a
    JSON 415 and ``Accept-Encoding: identity``, as RFC 9110 (15.5.16) asks.

    Bodies are never decompressed (a small gzip body can inflate past the size limit), and
    without this a gzip body reached the JSON decoder and came back as "invalid UTF-8".
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            encoding = _header(scope, b"content-encoding")
            if encoding is not None and encoding.strip().lower() not in (b"", b"identity"):
                name = encoding.decode("latin-1").strip()
                await _send_error(
                    send,
                    415,
                    "unsupported_encoding",
                    f"Compressed request bodies are not accepted (Content-Encoding: {name}).",
                    hint="Send the JSON body uncompressed.",
                    headers=[(b"accept-encoding", b"identity")],
                )
                return
        await self.app(scope, receive, send)


def _header(scope: Scope, wanted: bytes) -> bytes | None:
    for name, value in scope.get("headers", ()):
        if name == wanted:
            return bytes(value)
    return None


def _content_length(scope: Scope) -> int | None:
    value = _header(scope, b"content-length")
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        return None


async def _send_413(send: Send, limit: int) -> None:
    await _send_error(
        send,
        413,
        "body_too_large",
        f"The request body is larger than the {limit}-byte limit.",
        headers=[(b"connection", b"close")],
    )


async def _send_error(
    send: Send,
    status: int,
    code: str,
    message: str,
    *,
    hint: str | None = None,
    headers: list[tuple[bytes, bytes]] | None = None,
) -> None:
    """A JSON error answered by a middleware, before any route has seen the request."""
    body = json.dumps(error_body(code, message, hint=hint)).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                *(headers or []),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


OVERFLOW = "\x00overflow"
"""The bucket clients share while the table is full of clients still being limited."""


class RateLimiter:
    """Token buckets keyed by client. Thread-safe; remembers at most ``max_clients`` clients.

    A new client beyond ``max_clients`` takes the place of the least recently seen one only
    if that one's bucket has refilled (forgetting a full bucket changes nothing). Otherwise the
    newcomer shares one overflow bucket with every other newcomer: a flood of made-up client
    identities (addresses) then throttles itself, and cannot push a limited client out of the
    table to give it a fresh bucket."""

    def __init__(
        self,
        per_minute: int,
        *,
        max_clients: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
        what: str = "requests",
    ) -> None:
        self.capacity = float(per_minute)
        self.rate = per_minute / 60.0
        self.max_clients = max_clients
        self.clock = clock
        self.what = what
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()
        self._lock = threading.Lock()

    def _tokens(self, bucket: tuple[float, float], now: float) -> float:
        tokens, last = bucket
        return min(self.capacity, tokens + (now - last) * self.rate)

    def _key(self, client: str, now: float) -> str:
        """``client``, or the overflow bucket when the table is full of limited clients.
        Called with the lock held."""
        if client in self._buckets or len(self._buckets) < self.max_clients:
            return client
        for oldest, bucket in self._buckets.items():
            if oldest != OVERFLOW:
                if self._tokens(bucket, now) >= self.capacity:
                    del self._buckets[oldest]
                    return client
                break
        return OVERFLOW

    def _wait(self, tokens: float) -> float:
        return 0.0 if tokens >= 1.0 else (1.0 - tokens) / self.rate

    def hit(self, client: str) -> float:
        """Take one token for ``client``. Returns 0 when allowed, else seconds until allowed."""
        now = self.clock()
        with self._lock:
            key = self._key(client, now)
            bucket = self._buckets.pop(key, (self.capacity, now))
            tokens = self._tokens(bucket, now)
            wait = self._wait(tokens)
            self._buckets[key] = (tokens - 1.0 if wait == 0 else tokens, now)
        return wait

    def waiting(self, client: str) -> float:
        """Seconds until ``client`` may be served again (0: now), without taking a token."""
        now = self.clock()
        with self._lock:
            key = client if client in self._buckets else None
            if key is None and len(self._buckets) >= self.max_clients:
                key = OVERFLOW if OVERFLOW in self._buckets else None
            if key is None:
                return 0.0
            return self._wait(self._tokens(self._buckets[key], now))

    def error(self, wait: float) -> ApiError:
        """The 429 for a client that must wait ``wait`` seconds."""
        seconds = max(1, math.ceil(wait))
        return ApiError(
            429,
            "rate_limited",
            f"Too many {self.what}: the limit is {int(self.capacity)} per minute.",
            hint=f"Retry after {seconds} s.",
            headers={"Retry-After": str(seconds)},
        )

    def check(self, client: str) -> None:
        """Raise a 429 :class:`ApiError` (with ``Retry-After``) when ``client`` is over limit."""
        wait = self.hit(client)
        if wait > 0:
            raise self.error(wait)
