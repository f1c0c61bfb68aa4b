"""Helpers for tests that build their own index (they reuse the session index's caches).

Copying ``cache/`` (the embedding cache and the verified ONNX export) from the session's
``small_index_dir`` means a test build of the same corpus embeds nothing and loads no torch,
so these tests take a second or two instead of a model load each.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from carqa.index.corpus.models import Paper, Section
from carqa.index.corpus.sources import load_sources
from carqa.index.corpus.store import CorpusStore
from carqa.index.search.build import BuildReport, build_index
from carqa.index.search.chunking import ChunkSettings

FIXTURE_CORPUS = Path(__file__).resolve().parent.parent / "fixtures" / "car_t_papers.jsonl"


def new_index_dir(small_index_dir: Path, target: Path) -> Path:
    """An index dir with the fixture corpus in its store and a copy of the caches (no build)."""
    target.mkdir(parents=True, exist_ok=True)
    shutil.copytree(small_index_dir / "cache", target / "cache")
    corpus = load_sources([FIXTURE_CORPUS])
    with CorpusStore.open(target) as store:
        store.replace_corpus(corpus.papers, seed_pmid=corpus.seed_pmid, source="fixture")
    return target


def build(index_dir: Path, **kwargs: object) -> BuildReport:
    with CorpusStore.open(index_dir) as store:
        return build_index(store, index_dir, **kwargs)  # type: ignore[arg-type]


def add_papers(index_dir: Path, papers: list[Paper]) -> None:
    with CorpusStore.open(index_dir) as store:
        store.add_papers(papers, source="test")


def invented_paper(pmid: str, topic: str) -> Paper:
    """A small invented abstract (never a real one)."""
    return Paper(
        pmid=pmid,
        title=f"An invented study of {topic} in CAR T cell recipients",
        year=2024,
        sections=[
            Section(f"We studied {topic} in 12 invented patients.", "METHODS", "METHODS"),
            Section(
                f"{topic.capitalize()} was seen in 5 of 12 patients (42%). It resolved in all.",
                "RESULTS",
                "RESULTS",
            ),
        ],
    )


SMALL_CHUNKS = ChunkSettings(chunk_size=200, chunk_overlap=0)
