"""PubMed misbehaving mid-build: 429 storms, truncated XML, timeouts.

Each fault is injected through the fake E-utilities transport (``FakeEntrez``) into the real
client, pipeline and CLI (``carqa build``), with a fake clock so retries and back-off take no
time. What must hold every time: the build stops with one clear error and a hint (no
traceback), the corpus already in the store is untouched, and the next run with a healthy
PubMed resumes — it refetches only what failed, everything before the fault comes from the
response cache (asserted on the transport's own call log).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import carqa.index.corpus.ingest
import pytest
from carqa.index.corpus.entrez import EntrezClient
from carqa.index.corpus.pipeline import build
from carqa.index.corpus.store import CorpusStore
from typer.testing import CliRunner

from carqa.cli import app
from carqa.errors import SourceError
from carqa.settings import Settings
from tests.index.fixtures.entrez.fake_entrez import (
    SEED_DOI,
    SEED_PMID,
    FakeClock,
    FakeEntrez,
    fixture,
    seed_routes,
    transient,
)

CAR_T = Path(__file__).resolve().parents[1] / "fixtures" / "car_t_papers.jsonl"
ALL_ENDPOINTS = ["esearch", "efetch", "esearch", "ecitmatch", "elink", "efetch"]
"""The healthy seed flow's requests, in order: seed DOI search, seed record, a reference's
DOI search, ECitMatch, elink, then the cited records (one efetch batch)."""

Handler = Callable[[str, dict[str, list[str]]], bytes]
REAL_CLIENT = carqa.index.corpus.ingest.entrez_client


def is_cited_batch(endpoint: str, params: dict[str, list[str]]) -> bool:
    return endpoint == "efetch" and params["id"] != [SEED_PMID]


def failing_on(predicate: Callable[[str, dict[str, list[str]]], bool], fault: Handler) -> Handler:
    """The invented seed scenario, except that requests matching ``predicate`` get ``fault``."""

    def handler(endpoint: str, params: dict[str, list[str]]) -> bytes:
        if predicate(endpoint, params):
            return fault(endpoint, params)
        return seed_routes(endpoint, params)

    return handler


def raising(error: Exception) -> Handler:
    def fault(endpoint: str, params: dict[str, list[str]]) -> bytes:
        raise error

    return fault


def truncated(endpoint: str, params: dict[str, list[str]]) -> bytes:
    data = fixture("efetch_cited.xml")
    return data[: len(data) // 2]


class Run:
    """One `build` against the fake PubMed: the transport, its clock and the client."""

    def __init__(self, handler: Handler = seed_routes) -> None:
        self.fake = FakeEntrez(handler=handler)
        self.clock = FakeClock()
        self.client: EntrezClient | None = None

    def make_client(self, settings: Settings, index_dir: Path) -> EntrezClient:
        self.client = replace(
            REAL_CLIENT(settings, index_dir),
            transport=self.fake,
            sleep=self.clock.sleep,
            clock=self.clock,
        )
        return self.client

    def build(self, index_dir: Path) -> carqa.index.corpus.ingest.PipelineReport:
        settings = Settings.load(index_dir=index_dir, seed_doi=SEED_DOI, ncbi_email="d@e.org")
        client = self.make_client(settings, index_dir)
        return build(settings, client=client, build_index=False)

    @property
    def endpoints(self) -> list[str]:
        return [call.endpoint for call in self.fake.calls]


def _existing_corpus(index_dir: Path) -> dict[str, int]:
    """Put a corpus in the store first, so we can check a failed build leaves it alone."""
    settings = Settings.load(index_dir=index_dir)
    build(settings, sources=[CAR_T], build_index=False)
    with CorpusStore.open(index_dir) as store:
        return store.counts()


def _assert_untouched(index_dir: Path, before: dict[str, int]) -> None:
    with CorpusStore.open(index_dir) as store:
        assert store.counts() == before
        assert store.seed_pmid() == "90000001"  # still the fixture corpus's seed


def _resume(index_dir: Path, refetched: list[str]) -> None:
    """A healthy run fetches exactly ``refetched`` and takes the rest from the cache."""
    healthy = Run()
    report = healthy.build(index_dir)
    assert healthy.endpoints == refetched
    assert report.requests == {
        "cached": len(ALL_ENDPOINTS) - len(refetched),
        "fetched": len(refetched),
        "retries": 0,
    }
    assert report.counts["papers"] == 6 and report.seed_pmid == "90200001"
    # And a third run needs no network at all.
    offline = Run(handler=lambda *_: pytest.fail("the network was used"))
    assert offline.build(index_dir).requests == {"cached": 6, "fetched": 0, "retries": 0}


def test_healthy_flow_makes_the_requests_the_fault_tests_expect(tmp_path: Path) -> None:
    run = Run()
    run.build(tmp_path)
    assert run.endpoints == ALL_ENDPOINTS


def test_429_storm_longer_than_the_retries_fails_clearly_then_resumes(tmp_path: Path) -> None:
    before = _existing_corpus(tmp_path)
    storm = Run(failing_on(is_cited_batch, raising(transient(429, retry_after=7))))
    with pytest.raises(SourceError) as raised:
        storm.build(tmp_path)
    assert "kept failing with HTTP 429 after 5 tries" in raised.value.message
    assert "--api-key" in (raised.value.hint or "")
    assert storm.endpoints == ALL_ENDPOINTS[:-1] + ["efetch"] * 5  # 5 tries, then it gives up
    assert storm.client is not None and storm.client.stats.retries == 4
    assert storm.clock.sleeps.count(7) >= 3  # Retry-After honoured over the 1-2-4 s back-off
    assert max(storm.clock.sleeps) <= 60  # and the back-off is capped
    _assert_untouched(tmp_path, before)
    _resume(tmp_path, refetched=["efetch"])


def test_429s_within_the_retries_are_absorbed_and_reported(tmp_path: Path) -> None:
    bursts = {"esearch": 2, "efetch": 3}

    def handler(endpoint: str, params: dict[str, list[str]]) -> bytes:
        if bursts.get(endpoint, 0) > 0:
            bursts[endpoint] -= 1
            raise transient(429)
        return seed_routes(endpoint, params)

    run = Run(handler)
    report = run.build(tmp_path)
    assert report.requests == {"cached": 0, "fetched": 6, "retries": 5}
    assert report.counts["papers"] == 6


def test_truncated_xml_fails_clearly_is_not_cached_then_resumes(tmp_path: Path) -> None:
    before = _existing_corpus(tmp_path)
    broken = Run(failing_on(is_cited_batch, truncated))
    with pytest.raises(SourceError) as raised:
        broken.build(tmp_path)
    assert "unreadable efetch response" in raised.value.message
    assert "run the same command again" in (raised.value.hint or "")
    assert broken.endpoints == ALL_ENDPOINTS  # a parse failure is not retried in a loop
    _assert_untouched(tmp_path, before)
    _resume(tmp_path, refetched=["efetch"])


def test_truncated_xml_in_the_middle_of_the_flow(tmp_path: Path) -> None:
    # The seed's own record arrives cut off: nothing after it can run.
    broken = Run(failing_on(lambda e, p: e == "efetch" and p["id"] == [SEED_PMID], truncated))
    with pytest.raises(SourceError, match="unreadable efetch response"):
        broken.build(tmp_path)
    assert broken.endpoints == ["esearch", "efetch"]
    _resume(tmp_path, refetched=ALL_ENDPOINTS[1:])


def test_timeouts_fail_as_unreachable_then_resume(tmp_path: Path) -> None:
    before = _existing_corpus(tmp_path)
    slow = Run(failing_on(lambda e, p: e == "elink", raising(transient(None))))
    with pytest.raises(SourceError) as raised:
        slow.build(tmp_path)
    assert "unreachable" in raised.value.message and "tried 5 times" in raised.value.message
    assert "--from" in (raised.value.hint or "")
    assert slow.endpoints == ALL_ENDPOINTS[:4] + ["elink"] * 5
    # exponential back-off between the tries (the short pauses are the 3/s rate limit)
    assert [s for s in slow.clock.sleeps if s >= 1] == [1, 2, 4, 8]
    _assert_untouched(tmp_path, before)
    _resume(tmp_path, refetched=["elink", "efetch"])


# -- the same faults through `carqa build`: one clear message, no traceback ---------------


@pytest.mark.parametrize(
    ("fault", "message"),
    [
        (raising(transient(429)), "kept failing with HTTP 429 after 5 tries"),
        (truncated, "unreadable efetch response"),
        (raising(transient(None)), "is unreachable"),
    ],
    ids=["429-storm", "truncated-xml", "timeouts"],
)
def test_cli_reports_the_fault_without_traceback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fault: Handler, message: str
) -> None:
    run = Run(failing_on(is_cited_batch, fault))
    monkeypatch.setattr(carqa.index.corpus.ingest, "entrez_client", run.make_client)
    result = CliRunner().invoke(
        app,
        ["build", "--doi", SEED_DOI, "--index-dir", str(tmp_path), "--no-index"],
        env={"COLUMNS": "250"},
    )
    assert result.exit_code == 1
    assert "Error:" in result.output and message in result.output
    assert "Hint:" in result.output
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
