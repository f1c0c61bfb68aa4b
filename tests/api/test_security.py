"""API keys, the per-client rate limit and CORS."""

from __future__ import annotations

import httpx
import pytest
from carqa.api.limits import RateLimiter
from fastapi.testclient import TestClient

from tests.api.conftest import MakeClient
from tests.api.inprocess import in_process_server

QUERY = {"question": "cd19 relapse"}


def test_api_keys_are_required_when_configured(make_client: MakeClient) -> None:
    client = make_client(api_keys=["k-one", "k-two"])

    missing = client.post("/api/query", json=QUERY)
    assert missing.status_code == 401
    assert missing.json()["error"]["code"] == "unauthorized"
    assert missing.headers["www-authenticate"] == "Bearer"

    wrong = client.post("/api/query", json=QUERY, headers={"X-API-Key": "k-three"})
    assert wrong.status_code == 403
    assert wrong.json()["error"]["code"] == "forbidden"

    assert client.post("/api/query", json=QUERY, headers={"X-API-Key": "k-one"}).status_code == 200
    bearer = {"Authorization": "Bearer k-two"}
    assert client.post("/api/query", json=QUERY, headers=bearer).status_code == 200
    assert client.get("/api/stats", headers=bearer).status_code == 200
    assert client.get("/api/stats").status_code == 401
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", headers=bearer).status_code == 200


@pytest.mark.parametrize(
    "path", ["/healthz", "/readyz", "/", "/widget.js", "/docs", "/openapi.json"]
)
def test_public_paths_need_no_key(make_client: MakeClient, path: str) -> None:
    client = make_client(api_keys=["secret"])
    assert client.get(path).status_code == 200


def test_api_keys_from_environment(
    monkeypatch: pytest.MonkeyPatch, make_client: MakeClient
) -> None:
    from carqa.settings import Settings

    monkeypatch.setenv("CARQA_API_KEYS", "alpha, beta")
    assert Settings().api_keys == ["alpha", "beta"]


def test_no_keys_means_open_api(client: TestClient) -> None:
    assert client.post("/api/query", json=QUERY).status_code == 200


def test_rate_limit_per_client(make_client: MakeClient) -> None:
    client = make_client(rate_limit_per_minute=3)
    statuses = [client.post("/api/query", json=QUERY).status_code for _ in range(4)]
    assert statuses == [200, 200, 200, 429]
    limited = client.post("/api/query", json=QUERY)
    assert limited.json()["error"]["code"] == "rate_limited"
    assert int(limited.headers["retry-after"]) >= 1
    # Health checks and the widget are not rate limited.
    assert client.get("/healthz").status_code == 200
    assert client.get("/widget.js").status_code == 200


def test_rate_limit_applies_before_auth_so_key_guessing_is_limited(
    make_client: MakeClient,
) -> None:
    client = make_client(rate_limit_per_minute=2, api_keys=["secret"])
    statuses = [
        client.post("/api/query", json=QUERY, headers={"X-API-Key": f"guess{i}"}).status_code
        for i in range(3)
    ]
    assert statuses == [403, 403, 429]


def test_token_bucket_refills_and_separates_clients() -> None:
    now = [0.0]
    limiter = RateLimiter(60, clock=lambda: now[0])  # one token per second, burst of 60
    assert all(limiter.hit("a") == 0 for _ in range(60))
    wait = limiter.hit("a")
    assert 0 < wait <= 1.0
    assert limiter.hit("b") == 0  # another client has its own bucket
    now[0] += 1.0
    assert limiter.hit("a") == 0
    assert limiter.hit("a") > 0


def test_token_bucket_table_stays_bounded_and_forgets_refilled_clients() -> None:
    now = [0.0]
    limiter = RateLimiter(1, max_clients=2, clock=lambda: now[0])
    assert limiter.hit("a") == 0
    now[0] += 60.0  # "a" has refilled: forgetting it changes nothing
    for client in ("b", "c"):
        assert limiter.hit(client) == 0
    assert "a" not in limiter._buckets
    assert len(limiter._buckets) == 2


def test_rotating_identities_cannot_evict_a_limited_client() -> None:
    """The table full of limited clients: newcomers share one bucket and throttle each other;
    the limited client is not forgotten (a fresh bucket would let it through)."""
    limiter = RateLimiter(2, max_clients=100, clock=lambda: 0.0)
    assert limiter.hit("limited") == 0 and limiter.hit("limited") == 0
    assert limiter.hit("limited") > 0
    newcomers = [limiter.hit(f"10.0.{i // 256}.{i % 256}") for i in range(1000)]
    assert limiter.hit("limited") > 0
    assert sum(1 for wait in newcomers if wait == 0) < 100 + 2
    assert len(limiter._buckets) <= 101


def test_wrong_keys_are_throttled_without_a_rate_limit(make_client: MakeClient) -> None:
    client = make_client(api_keys=["secret"], auth_failures_per_minute=5)
    guesses = [
        client.post("/api/query", json=QUERY, headers={"X-API-Key": f"guess{i}"}) for i in range(7)
    ]
    assert [r.status_code for r in guesses] == [403] * 5 + [429] * 2
    assert int(guesses[-1].headers["retry-after"]) >= 1
    assert guesses[-1].json()["error"]["code"] == "rate_limited"
    # Throttled means throttled: the right key waits too, or guessing would go on unnoticed.
    assert client.post("/api/query", json=QUERY, headers={"X-API-Key": "secret"}).status_code == 429
    # Other clients are not affected, and a missing key is not a guess.
    other = TestClient(client.app, client=("192.0.2.9", 50000))
    assert other.post("/api/query", json=QUERY, headers={"X-API-Key": "secret"}).status_code == 200
    assert other.post("/api/query", json=QUERY).status_code == 401


@pytest.mark.parametrize("trusted", [False, True])
def test_forwarded_addresses_are_believed_only_from_configured_proxies(trusted: bool) -> None:
    """Behind no configured proxy, a client rotating ``X-Forwarded-For`` is still one client;
    from a configured proxy, each forwarded address is its own client."""
    overrides: dict[str, object] = {"rate_limit_per_minute": 2}
    if trusted:
        overrides["forwarded_allow_ips"] = ["127.0.0.1"]
    with in_process_server(**overrides) as port:
        statuses = [
            httpx.get(
                f"http://127.0.0.1:{port}/api/stats",
                headers={"X-Forwarded-For": f"203.0.113.{i}"},
                timeout=10,
            ).status_code
            for i in range(4)
        ]
    assert statuses == ([200] * 4 if trusted else [200, 200, 429, 429])


def test_cors_allow_list(make_client: MakeClient) -> None:
    client = make_client(cors_origins=["https://blog.example"])
    preflight = client.options(
        "/api/chat",
        headers={
            "Origin": "https://blog.example",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type",
        },
    )
    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] == "https://blog.example"

    allowed = client.post("/api/query", json=QUERY, headers={"Origin": "https://blog.example"})
    assert allowed.headers["access-control-allow-origin"] == "https://blog.example"

    other = client.post("/api/query", json=QUERY, headers={"Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in other.headers
    denied = client.options(
        "/api/chat",
        headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"},
    )
    assert denied.status_code == 400


def test_cors_headers_on_errors_too(make_client: MakeClient) -> None:
    client = make_client(cors_origins=["https://blog.example"], max_body_bytes=100)
    response = client.post(
        "/api/query",
        json={"question": "x" * 500},
        headers={"Origin": "https://blog.example"},
    )
    assert response.status_code == 413
    assert response.headers["access-control-allow-origin"] == "https://blog.example"


def test_no_cors_by_default(client: TestClient) -> None:
    response = client.post("/api/query", json=QUERY, headers={"Origin": "https://blog.example"})
    assert "access-control-allow-origin" not in response.headers


MALFORMED = {"content": b'{"question": ', "headers": {"Content-Type": "application/json"}}


@pytest.mark.parametrize("path", ["/api/query", "/api/chat"])
def test_key_is_checked_before_the_body_is_read(make_client: MakeClient, path: str) -> None:
    # FastAPI decodes a JSON body before it runs a route's dependencies: a malformed body got
    # its 422 (with parser details) without any key, and never counted against the limit.
    client = make_client(api_keys=["secret"])
    assert client.post(path, **MALFORMED).status_code == 401
    wrong = client.post(path, content=MALFORMED["content"], headers={"X-API-Key": "guess"})
    assert wrong.status_code == 403
    right = {**MALFORMED["headers"], "X-API-Key": "secret"}
    assert client.post(path, content=MALFORMED["content"], headers=right).status_code == 422


def test_malformed_bodies_count_against_the_rate_limit(make_client: MakeClient) -> None:
    client = make_client(rate_limit_per_minute=2)
    statuses = [client.post("/api/query", **MALFORMED).status_code for _ in range(3)]
    assert statuses == [422, 422, 429]
    assert client.post("/api/query", json=QUERY).status_code == 429


def test_key_guessing_on_metrics_is_rate_limited(make_client: MakeClient) -> None:
    # /metrics takes the same keys as /api/*: without the limit it was an unthrottled oracle.
    client = make_client(rate_limit_per_minute=2, api_keys=["secret"])
    statuses = [
        client.get("/metrics", headers={"X-API-Key": f"guess{i}"}).status_code for i in range(3)
    ]
    assert statuses == [403, 403, 429]


def test_metrics_with_a_key_still_reports_requests(make_client: MakeClient) -> None:
    client = make_client(api_keys=["secret"])
    client.post("/api/query", json=QUERY, headers={"X-API-Key": "secret"})
    metrics = client.get("/metrics", headers={"X-API-Key": "secret"})
    assert metrics.status_code == 200
    assert metrics.headers["content-type"].startswith("text/plain")
    assert 'handler="/api/query"' in metrics.text
    assert 'handler="/metrics"' not in metrics.text


def test_retry_after_is_readable_by_a_cross_origin_page(make_client: MakeClient) -> None:
    # Retry-After is not a CORS-safelisted response header: unless it is exposed, a page on
    # another origin sees the 429 but cannot read when to retry.
    client = make_client(cors_origins=["https://blog.example"], rate_limit_per_minute=1)
    origin = {"Origin": "https://blog.example"}
    assert client.post("/api/query", json=QUERY, headers=origin).status_code == 200
    limited = client.post("/api/query", json=QUERY, headers=origin)
    assert limited.status_code == 429
    exposed = limited.headers["access-control-expose-headers"].lower().split(", ")
    assert "retry-after" in exposed


@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", "/"), ("GET", "/widget.js"), ("GET", "/healthz"), ("POST", "/api/query")],
)
def test_responses_are_not_content_sniffed(client: TestClient, method: str, path: str) -> None:
    # An error echoes the client's text (the unknown path, the field names): without nosniff
    # a browser may guess a type other than the declared one.
    response = client.request(method, path, json=QUERY if method == "POST" else None)
    assert response.headers["x-content-type-options"] == "nosniff"


def test_error_responses_are_not_content_sniffed_either(make_client: MakeClient) -> None:
    client = make_client(api_keys=["secret"], max_body_bytes=10)
    assert client.get("/no/<b>such</b>").headers["x-content-type-options"] == "nosniff"
    assert client.get("/api/stats").headers["x-content-type-options"] == "nosniff"
    too_big = client.post("/api/query", json=QUERY)
    assert too_big.status_code == 413
    assert too_big.headers["x-content-type-options"] == "nosniff"


def test_demo_page_cannot_be_framed(client: TestClient) -> None:
    # Clickjacking: another site could frame the demo page and steer clicks into the widget.
    page = client.get("/")
    assert page.headers["x-frame-options"] == "DENY"
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
