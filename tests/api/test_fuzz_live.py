"""Schemathesis against a live ``carqa serve``: the real engine behind the documented schema.

``test_fuzz.py`` fuzzes the app in-process over a fake engine (fast, with API keys on). This
file points schemathesis at the OpenAPI document a real server publishes (``carqa serve`` on
127.0.0.1, a copy of the session's small index, real model and retrieval) and sends at least
:data:`MIN_REQUESTS` generated requests in total, valid and invalid, over real HTTP. Asserted:
no 5xx, ever, and every response conforms to the documented schema.
"""

from __future__ import annotations

import shutil
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.config import SchemathesisConfig

from bench._common import LiveServer
from tests.api.fuzz_support import years_in_order

pytestmark = pytest.mark.slow

EXAMPLES = 300
"""Per operation and mode (valid / invalid input); the parameterless GETs stop far earlier."""
MIN_REQUESTS = 2000
API_KEY = "fuzz-live-key"
"""Keys on, as in a deployment: schemathesis also checks that requests without one are refused."""

sent: Counter[str] = Counter()


@pytest.fixture(scope="module")
def live_server(
    small_index_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveServer]:
    index_dir = tmp_path_factory.mktemp("fuzz-live") / "index"
    shutil.copytree(small_index_dir, index_dir, symlinks=True)  # chat writes sessions.sqlite
    # One client sending wrong keys on purpose (see test_fuzz.py): not throttled here.
    env = {"CARQA_API_KEYS": API_KEY, "CARQA_AUTH_FAILURES_PER_MINUTE": "1000000"}
    with LiveServer(index_dir, env=env) as server:
        yield server


MODES = (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
CONFIG = SchemathesisConfig.from_str(
    """
[checks.negative_data_rejection]
expected-statuses = [400, 401, 403, 404, 405, 406, 409, 413, 415, 422, 428, 429, "5xx"]
"""
)
"""Schemathesis's defaults plus 413: an invalid body can also be too large (over
``CARQA_MAX_BODY_BYTES``), and the body-size limit refuses it before anything parses it."""


def _fuzz(operation: Any, mode: GenerationMode, base_url: str) -> None:
    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        derandomize=True,  # the same cases every run: CI must not flake on a lucky draw
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    def run(case: schemathesis.Case) -> None:
        years_in_order(case.body)
        response = case.call(base_url=base_url, headers={"X-API-Key": API_KEY}, timeout=60)
        sent["requests"] += 1
        sent[f"{mode.value} {case.method} {operation.path}"] += 1
        sent[f"{response.status_code // 100}xx"] += 1
        assert response.status_code < 500, f"{case.method} {case.formatted_path}: {response.text}"
        case.validate_response(response)

    run()


@pytest.mark.timeout(1800)  # ~1,000 requests per mode over real HTTP and the real engine
@pytest.mark.parametrize("mode", MODES, ids=[m.value for m in MODES])
def test_live_api_never_answers_5xx(live_server: LiveServer, mode: GenerationMode) -> None:
    schema = schemathesis.openapi.from_url(f"{live_server.base_url}/openapi.json", config=CONFIG)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 6
    for operation in operations:
        has_input = any(True for _ in operation.iter_parameters()) or len(operation.body) > 0
        if mode is GenerationMode.NEGATIVE and not has_input:
            continue  # nothing to make invalid (e.g. GET /healthz)
        _fuzz(operation, mode, live_server.base_url)


def test_enough_requests_were_generated() -> None:
    if not sent["requests"]:
        pytest.skip("the fuzzing tests above did not run in this session")
    assert sent["requests"] >= MIN_REQUESTS, dict(sent)
    assert sent["5xx"] == 0, dict(sent)
    print(f"live fuzzing: {dict(sent)}")
