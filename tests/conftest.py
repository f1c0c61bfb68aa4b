"""Shared fixtures. Tests that need ``../shared/data`` skip with a reason when it is absent."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = Path(os.environ.get("CARQA_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))

# Models come from installed packages; never let a test reach for a hub.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
# One model cache for the session (builds share their ONNX export, as on a user's machine),
# never the user's own ~/.cache/carqa. Subprocesses (carqa build/serve) inherit it.
if "CARQA_MODEL_CACHE_DIR" not in os.environ:
    _model_cache = tempfile.mkdtemp(prefix="carqa-test-models-")
    os.environ["CARQA_MODEL_CACHE_DIR"] = _model_cache
    atexit.register(shutil.rmtree, _model_cache, ignore_errors=True)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The read-only shared data folder, or a skip when this checkout has none beside it."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared data not found at {SHARED_DATA} (set CARQA_SHARED_DATA)")
    return SHARED_DATA


# -- a small built index shared by every test that needs one ---------------------------------

FIXTURE_CORPUS = REPO_ROOT / "tests" / "fixtures" / "car_t_papers.jsonl"


@pytest.fixture(scope="session")
def small_index_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An index dir built once per session from ``tests/fixtures/car_t_papers.jsonl`` (22
    invented CAR T abstracts, one seed review). Treat it as read-only: to test writes, build
    your own with ``tests/index/index_helpers.py`` (it reuses this index's caches)."""
    from carqa.index.corpus.sources import load_sources
    from carqa.index.corpus.store import CorpusStore
    from carqa.index.search.build import build_index

    index_dir = tmp_path_factory.mktemp("small_index")
    corpus = load_sources([FIXTURE_CORPUS])
    with CorpusStore.open(index_dir) as store:
        store.replace_corpus(corpus.papers, seed_pmid=corpus.seed_pmid, source="fixture")
        build_index(store, index_dir)
    return index_dir


@pytest.fixture(scope="session")
def small_index(small_index_dir: Path):  # -> carqa.index.search.reader.Index
    """``Index.open(small_index_dir)``, shared (its query encoder loads once per session)."""
    from carqa.index.search.reader import Index

    return Index.open(small_index_dir)
