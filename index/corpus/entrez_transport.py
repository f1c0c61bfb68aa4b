"""The E-utilities client's transport layer: one HTTP exchange, the response cache, the pace.

What :class:`carqa.index.corpus.entrez.EntrezClient` sends each request through, kept apart
from what the client asks PubMed: a **transport** is a callable ``(url, params, post) ->
bytes`` (:func:`urllib_transport` in production, a fake in tests) that raises
:class:`TransportError` saying whether a retry may help; :class:`ResponseCache` keeps every
raw answer on disk under :func:`request_key` (credentials left out) so an interrupted build
resumes without refetching; :class:`RateLimiter` keeps to NCBI's requests per second.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import re
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable
from pathlib import Path
from urllib.parse import urlencode

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})

Params = list[tuple[str, str]]
Transport = Callable[[str, Params, bool], bytes]
"""``(url, params, post) -> response body``; raises :class:`TransportError` on failure."""


class TransportError(Exception):
    """A request failed. ``status`` is the HTTP status, or None for timeouts/connection
    errors; ``retry_after`` is the server's Retry-After in seconds when it sent one."""

    def __init__(
        self, message: str, *, status: int | None = None, retry_after: float | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after

    @property
    def transient(self) -> bool:
        return self.status is None or self.status in RETRY_STATUSES


def urllib_transport(url: str, params: Params, post: bool, *, timeout: float = 30.0) -> bytes:
    """The real transport: one HTTP request with the standard library."""
    # ECitMatch wants literal "|" separators; they are harmless unescaped elsewhere too.
    query = urlencode(params, safe="|")
    if post:
        request = urllib.request.Request(url, data=query.encode(), method="POST")
    else:
        request = urllib.request.Request(f"{url}?{query}", method="GET")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.read()
    except urllib.error.HTTPError as error:
        retry_after = seconds(error.headers.get("Retry-After")) if error.headers else None
        message = f"HTTP {error.code} {error.reason}"
        reason = ncbi_reason(_read_quietly(error))
        raise TransportError(
            f"{message}: {reason}" if reason else message,
            status=error.code,
            retry_after=retry_after,
        ) from None
    except (urllib.error.URLError, TimeoutError, OSError) as error:
        reason = getattr(error, "reason", error)
        raise TransportError(f"{reason}") from None
    except http.client.HTTPException as error:
        # The connection broke off mid-response (IncompleteRead) or answered garbage
        # (BadStatusLine): as transient as a timeout.
        raise TransportError(f"the connection broke off ({error!r})") from None


def _read_quietly(error: urllib.error.HTTPError, limit: int = 4096) -> bytes:
    try:
        return error.read(limit) or b""
    except Exception:  # the body of an error is a courtesy; never fail on it
        return b""


_ERROR_ELEMENT = re.compile(rb"<ERROR>\s*([^<]{1,300}?)\s*</ERROR>")


def ncbi_reason(body: bytes) -> str | None:
    """NCBI's own explanation in an error body: ``{"error": "API key invalid", ...}`` (the
    JSON also echoes the API key, which is never kept) or ``<ERROR>...</ERROR>``."""
    text = body.strip()
    if text.startswith(b"{"):
        try:
            reason = json.loads(text).get("error")
        except (ValueError, AttributeError):
            return None
        return " ".join(reason.split())[:300] if isinstance(reason, str) and reason else None
    match = _ERROR_ELEMENT.search(text)
    if match is None:
        return None
    return " ".join(match.group(1).decode("utf-8", "replace").split()) or None


def seconds(value: str | None) -> float | None:
    """``value`` as a number (a Retry-After header, a link score), or None if it is not one."""
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


class ResponseCache:
    """Raw responses on disk, one file per request key, written atomically."""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)

    def _path(self, endpoint: str, key: str) -> Path:
        stem = endpoint.split(".")[0]
        return self.directory / stem / f"{key}.raw"

    def get(self, endpoint: str, key: str) -> bytes | None:
        path = self._path(endpoint, key)
        try:
            return path.read_bytes()
        except FileNotFoundError:
            return None

    def put(self, endpoint: str, key: str, data: bytes) -> None:
        path = self._path(endpoint, key)
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        try:
            with os.fdopen(handle, "wb") as out:
                out.write(data)
            os.replace(temp, path)
        except BaseException:
            Path(temp).unlink(missing_ok=True)
            raise

    def discard(self, endpoint: str, key: str) -> None:
        self._path(endpoint, key).unlink(missing_ok=True)


class RateLimiter:
    """Spaces calls at least ``1/per_second`` apart (NCBI counts requests per second)."""

    def __init__(
        self,
        per_second: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.interval = 1.0 / per_second
        self._clock = clock
        self._sleep = sleep
        self._next: float | None = None

    def wait(self) -> None:
        now = self._clock()
        if self._next is not None and now < self._next:
            self._sleep(self._next - now)
            now = self._next
        self._next = now + self.interval


def request_key(endpoint: str, params: Iterable[tuple[str, str]]) -> str:
    """Cache key of a request: its endpoint and parameters, without credentials (so a new
    email or API key does not invalidate the cache)."""
    payload = [endpoint, [[k, v] for k, v in params if k not in ("email", "api_key", "tool")]]
    return hashlib.sha256(json.dumps(payload).encode()).hexdigest()
