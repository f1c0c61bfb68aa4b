"""Fixtures of the CLI tests: PubMed faked behind the real Entrez client, the index build
stood in for where a test is about the corpus, not the index, and for ``carqa serve``
uvicorn recorded rather than run and the index opened or built by fakes."""

from __future__ import annotations

import sys
import types
from dataclasses import replace
from pathlib import Path
from typing import Any

import carqa.index.corpus.ingest
import pytest
from carqa.index.corpus.entrez import EntrezClient
from carqa.index.corpus.store import CorpusStore

import carqa.cli.serve as cli_serve
from carqa.errors import IndexNotFound
from carqa.settings import Settings
from tests.api.fakes import FakeEngine
from tests.cli.helpers import Recorder
from tests.index.fixtures.entrez.fake_entrez import FakeClock, FakeEntrez


@pytest.fixture
def fake_pubmed(monkeypatch: pytest.MonkeyPatch) -> FakeEntrez:
    """Route `carqa build`'s PubMed requests to the invented fake, keeping the real client."""
    fake = FakeEntrez()
    real = carqa.index.corpus.ingest.entrez_client

    def client(settings, index_dir: Path) -> EntrezClient:
        clock = FakeClock()
        return replace(real(settings, index_dir), transport=fake, sleep=clock.sleep, clock=clock)

    monkeypatch.setattr(carqa.index.corpus.ingest, "entrez_client", client)
    return fake


@pytest.fixture
def fake_index_builder(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, Path, str]]:
    """Stand in for carqa.index.search.build.build_index: records calls, returns a summary."""
    calls: list[tuple[int, Path, str]] = []

    class Report:
        def __init__(self, papers: int) -> None:
            self.papers = papers

        def as_dict(self) -> dict:  # the shape of carqa.index.search.build.BuildReport.as_dict()
            return {
                "build_id": "b1",
                "up_to_date": False,
                "model": "fake-model",
                "papers": self.papers,
                "chunks": self.papers * 2,
                "sentences": self.papers * 3,
                "texts_embedded": self.papers * 5,
                "texts_cached": 0,
                "embed_backend": "onnx",
                "seconds": 1.5,
            }

    def build_index(
        store: CorpusStore, index_dir: Path, *, model: str, on_progress=None, chunk_settings=None
    ):
        calls.append((store.counts()["papers"], index_dir, model))
        return Report(store.counts()["papers"])

    module = types.ModuleType("carqa.index.search.build")
    module.build_index = build_index  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "carqa.index.search.build", module)
    return calls


@pytest.fixture
def uvicorn_run(monkeypatch: pytest.MonkeyPatch) -> Recorder:
    import uvicorn

    recorder = Recorder()
    monkeypatch.setattr(uvicorn, "run", recorder)
    # uvicorn does not really bind here, so neither does the check (port 8000 may be taken
    # on a shared machine); test_port_in_use_* run the real check.
    monkeypatch.setattr(cli_serve, "check_port_free", lambda host, port: None)
    return recorder


@pytest.fixture
def index_state(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """Fake engine opening: missing until a (fake) build has run."""
    state: dict[str, Any] = {"built": False, "builds": []}

    def fake_open(settings: Settings) -> FakeEngine:
        if not state["built"]:
            raise IndexNotFound(f"No index in {settings.index_dir}.")
        return FakeEngine()

    def fake_build(settings: Settings, *, sources: list[Path] | None = None, **kw: Any) -> None:
        state["builds"].append((settings.index_dir, sources))
        state["built"] = True

    monkeypatch.setattr(cli_serve, "open_engine", fake_open)
    module = types.ModuleType("carqa.index.corpus.pipeline")
    module.build = fake_build  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "carqa.index.corpus.pipeline", module)
    return state
