"""Optional API keys and the per-client rate limit, as FastAPI dependencies.

Keys come from ``settings.api_keys`` (``CARQA_API_KEYS=key1,key2``); when the list is empty the
API is open. A key is sent as ``X-API-Key: <key>`` or ``Authorization: Bearer <key>``. No key
is 401, a wrong key is 403. Health checks, the widget and the docs never need a key (they are
not guarded), so load balancers and the embed snippet keep working.

Declaring the schemes with FastAPI's security classes puts an "Authorize" button on ``/docs``.
"""

from __future__ import annotations

import hmac

from fastapi import Request, Security
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from api.errors import ApiError
from api.limits import RateLimiter

api_key_header = APIKeyHeader(name="X-API-Key", auto_error=False, scheme_name="ApiKey")
bearer = HTTPBearer(auto_error=False, scheme_name="Bearer")


def client_id(request: Request) -> str:
    """Who counts as one client for rate limiting: the peer address (uvicorn resolves
    ``X-Forwarded-For`` from trusted proxies into it)."""
    return request.client.host if request.client else "unknown"


def require_api_key(
    request: Request,
    header_key: str | None = Security(api_key_header),
    credentials: HTTPAuthorizationCredentials | None = Security(bearer),
) -> None:
    keys: list[str] = request.app.state.settings.api_keys
    if not keys:
        return
    supplied = header_key or (credentials.credentials if credentials else None)
    if not supplied:
        raise ApiError(
            401,
            "unauthorized",
            "An API key is required.",
            hint="Send it as 'X-API-Key: <key>' or 'Authorization: Bearer <key>'.",
            headers={"WWW-Authenticate": "Bearer"},
        )
    # Compare against every key in constant time so timing does not reveal a prefix.
    matches = [hmac.compare_digest(supplied.encode(), key.encode()) for key in keys]
    if not any(matches):
        raise ApiError(403, "forbidden", "The API key is not valid.")


def rate_limit(request: Request) -> None:
    limiter: RateLimiter | None = request.app.state.rate_limiter
    if limiter is not None:
        limiter.check(client_id(request))
