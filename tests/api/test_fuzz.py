"""Property-based fuzzing of the whole API from its own OpenAPI document (schemathesis).

Schemathesis generates valid and invalid requests for every operation and checks that none is
a 5xx, that every status code and body matches what ``/openapi.json`` documents (including
the SSE events), and that schema-violating input is rejected. API keys are on, so it also
checks that requests without a valid key are refused.
"""

from __future__ import annotations

import tempfile

import schemathesis
from carqa.api.app import create_app
from hypothesis import HealthCheck, settings

from carqa.settings import Settings
from tests.api.fakes import FakeChat, FakeEngine
from tests.api.fuzz_support import years_in_order

API_KEY = "fuzz-key"
_engine = FakeEngine()
app = create_app(
    Settings(
        index_dir=tempfile.mkdtemp(prefix="carqa-fuzz-"),
        api_keys=[API_KEY],
        # The fuzzer is one client sending wrong keys on purpose, and expects 401/403 for
        # each: the throttle on wrong keys (a 429 after a few) is tested in test_security.
        auth_failures_per_minute=1_000_000,
    ),
    engine=_engine,
    chat=FakeChat(_engine),
)
schema = schemathesis.openapi.from_asgi("/openapi.json", app)


@schema.parametrize()
@settings(
    max_examples=30,
    deadline=None,
    derandomize=True,  # the same cases every run: CI must not flake on a lucky draw
    database=None,
    suppress_health_check=list(HealthCheck),
)
def test_api_conforms_to_its_schema_and_never_fails(case: schemathesis.Case) -> None:
    years_in_order(case.body)
    case.call_and_validate(headers={"X-API-Key": API_KEY})
