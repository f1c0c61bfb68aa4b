"""``carqa.api.limits`` on its own: the token bucket with a fake clock, and the two body
middlewares around a bare Starlette app that echoes the size of what it read."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from carqa.api.errors import ApiError
from carqa.api.limits import BodySizeLimitMiddleware, ContentEncodingMiddleware, RateLimiter
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.testclient import TestClient


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_client_may_burst_its_minute_then_waits_for_refill() -> None:
    clock = Clock()
    limiter = RateLimiter(6, clock=clock)  # one token every 10 s
    assert [limiter.hit("a") for _ in range(6)] == [0.0] * 6
    assert limiter.hit("a") == pytest.approx(10.0)
    clock.now += 4
    assert limiter.hit("a") == pytest.approx(6.0)  # refilled 0.4 of a token meanwhile
    clock.now += 6
    assert limiter.hit("a") == 0.0
    assert limiter.hit("b") == 0.0  # buckets are per client


def test_tokens_never_pile_up_beyond_one_minute() -> None:
    clock = Clock()
    limiter = RateLimiter(2, clock=clock)
    clock.now += 3600
    assert [limiter.hit("a") > 0 for _ in range(3)] == [False, False, True]


def test_over_the_limit_is_a_429_with_retry_after() -> None:
    clock = Clock()
    limiter = RateLimiter(1, clock=clock)
    limiter.check("a")
    with pytest.raises(ApiError) as raised:
        limiter.check("a")
    assert raised.value.status_code == 429
    assert raised.value.headers == {"Retry-After": "60"}


def test_a_full_table_forgets_refilled_clients_never_limited_ones() -> None:
    clock = Clock()
    limiter = RateLimiter(1, max_clients=2, clock=clock)
    for client in ("a", "b", "c"):
        limiter.hit(client)
    assert limiter.hit("c") > 0  # a newcomer in a table of limited clients: the overflow bucket
    assert limiter.hit("a") > 0  # still remembered: a fresh bucket would let it through
    clock.now += 60  # everyone refilled
    limiter.hit("d")
    assert limiter.hit("d") > 0  # remembered in its own bucket
    assert len(limiter._buckets) <= 3  # two clients and the overflow bucket


async def _echo(request: Request) -> JSONResponse:
    return JSONResponse({"read": len(await request.body())})


@pytest.fixture
def client() -> Iterator[TestClient]:
    app = Starlette(routes=[Route("/echo", _echo, methods=["POST"])])
    app.add_middleware(BodySizeLimitMiddleware, max_bytes=100)
    app.add_middleware(ContentEncodingMiddleware)
    with TestClient(app) as test_client:
        yield test_client


def test_a_body_within_the_limit_reaches_the_app(client: TestClient) -> None:
    assert client.post("/echo", content=b"x" * 100).json() == {"read": 100}


def test_a_declared_oversized_body_is_refused_before_it_is_read(client: TestClient) -> None:
    response = client.post("/echo", content=b"x" * 101)
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "body_too_large"


def test_an_undeclared_body_is_counted_as_it_streams(client: TestClient) -> None:
    def chunks() -> Iterator[bytes]:
        for _ in range(5):
            yield b"x" * 30  # no Content-Length: sent chunked

    response = client.post("/echo", content=chunks())
    assert response.status_code == 413


def test_a_compressed_body_is_refused_and_identity_is_asked_for(client: TestClient) -> None:
    response = client.post("/echo", content=b"\x1f\x8b", headers={"Content-Encoding": "gzip"})
    assert response.status_code == 415
    assert response.headers["accept-encoding"] == "identity"
    assert response.json()["error"]["code"] == "unsupported_encoding"
    plain = client.post("/echo", content=b"{}", headers={"Content-Encoding": "identity"})
    assert plain.json() == {"read": 2}
