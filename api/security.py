"""Optional API keys and the per-client rate limit, checked before a route reads its body.

Keys come from ``settings.api_keys`` (``CARQA_API_KEYS=key1,key2``); when the list is empty the
API is open. A key is sent as ``X-API-Key: <key>`` or ``Authorization: Bearer <key>``. No key
is 401, a wrong key is 403. Health checks, the widget and the docs never need a key (they are
not guarded), so load balancers and the embed snippet keep working.

The checks run in :class:`GuardedRoute`, not as FastAPI dependencies: FastAPI decodes a JSON
body *before* it solves a route's dependencies, so a malformed body got its 422 (with the
parser's details) without a key and without counting against the rate limit. The rate limit
comes first, so guessing keys is limited too; and wrong keys are throttled on their own, rate
limit or not: ``auth_failures_per_minute`` per client, then 429 with ``Retry-After`` (the right
key included, until the client's bucket refills).

A client is its peer address. ``X-Forwarded-For`` is believed only from the proxies named in
``forwarded_allow_ips`` (uvicorn resolves it into the peer address): believed from anyone, a
client could pick a new identity, and a fresh bucket, with every request.

Declaring the schemes with FastAPI's security classes (:func:`api_key_schemes`) puts an
"Authorize" button on ``/docs``.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable, Coroutine
from typing import Any

from carqa.api.errors import ApiError
from carqa.api.limits import RateLimiter
from fastapi import Request, Response, Security
from fastapi.routing import APIRoute
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from fastapi.security.utils import get_authorization_scheme_param
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

api_key_header = APIKeyHeader(name="X-API-Key", auto_error=False, scheme_name="ApiKey")
bearer = HTTPBearer(auto_error=False, scheme_name="Bearer")


def client_id(request: Request) -> str:
    """Who counts as one client for rate limiting: the peer address (uvicorn resolves
    ``X-Forwarded-For`` into it, from the configured proxies only)."""
    return request.client.host if request.client else "unknown"


def supplied_key(request: Request) -> str | None:
    """The key a request carries: ``X-API-Key``, else ``Authorization: Bearer``."""
    header_key = request.headers.get("x-api-key")
    if header_key:
        return header_key
    scheme, credentials = get_authorization_scheme_param(request.headers.get("authorization"))
    if scheme.lower() == "bearer" and credentials:
        return credentials
    return None


def require_api_key(request: Request) -> None:
    """401 without a key, 403 with a wrong one, when keys are configured."""
    keys: list[str] = request.app.state.settings.api_keys
    if not keys:
        return
    supplied = supplied_key(request)
    if not supplied:
        raise ApiError(
            401,
            "unauthorized",
            "An API key is required.",
            hint="Send it as 'X-API-Key: <key>' or 'Authorization: Bearer <key>'.",
            headers={"WWW-Authenticate": "Bearer"},
        )
    throttle: RateLimiter = request.app.state.auth_throttle
    client = client_id(request)
    wait = throttle.waiting(client)
    if wait > 0:
        raise throttle.error(wait)
    # Compare against every key in constant time so timing does not reveal a prefix.
    matches = [hmac.compare_digest(supplied.encode(), key.encode()) for key in keys]
    if not any(matches):
        throttle.hit(client)
        raise ApiError(403, "forbidden", "The API key is not valid.")


def rate_limit(request: Request) -> None:
    limiter: RateLimiter | None = request.app.state.rate_limiter
    if limiter is not None:
        limiter.check(client_id(request))


def api_key_schemes(
    header_key: str | None = Security(api_key_header),
    credentials: HTTPAuthorizationCredentials | None = Security(bearer),
) -> None:
    """Declares the two ways to send a key in the OpenAPI document; :class:`GuardedRoute`
    enforces them (before the body is read)."""


class GuardedRoute(APIRoute):
    """A route that checks the rate limit, then the API key, before FastAPI reads the body;
    then that a body is UTF-8."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def guarded(request: Request) -> Response:
            rate_limit(request)
            require_api_key(request)
            await require_utf8(request)
            return await handler(request)

        return guarded


async def require_utf8(request: Request) -> None:
    """422 for a body that is not UTF-8 (RFC 8259 8.1). Python's JSON decoder guesses UTF-16
    and UTF-32 from the bytes, so such a body was accepted while the errors say UTF-8 only.
    The body is read here once; the route reads the same bytes from the request's cache."""
    if request.method not in ("POST", "PUT", "PATCH"):
        return
    body = await request.body()
    try:
        body.decode("utf-8")
        # UTF-16/32 of ASCII text is valid UTF-8 with NUL bytes, which JSON never holds raw.
        utf8 = b"\x00" not in body
    except UnicodeDecodeError:
        utf8 = False
    if not utf8:
        raise ApiError(
            422,
            "invalid_request",
            "The request body must be JSON in UTF-8.",
            hint="Send the body UTF-8 encoded (Content-Type: application/json).",
        )


class NoSniffMiddleware:
    """``X-Content-Type-Options: nosniff`` on every response, errors included: error bodies
    echo client text (an unknown path, field names), and a browser must not guess a type other
    than the declared JSON, JavaScript or HTML. Added outermost, so middleware answers (413,
    415, the 500) get it too."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_header(message: Message) -> None:
            if message["type"] == "http.response.start":
                message.setdefault("headers", [])
                MutableHeaders(scope=message)["X-Content-Type-Options"] = "nosniff"
            await send(message)

        await self.app(scope, receive, send_with_header)
