"""``kill -9`` of ``carqa build`` mid-embedding, seen from a live server: nothing changes.

``tests/index/test_build_kill.py`` kills ``build_index`` at random stages and checks
the index directory: the previous build still opens, the next build cleans up. This test adds
the user's view of the same accident: a ``carqa serve`` keeps answering while a real
``carqa build --from`` runs in the same index directory and is SIGKILLed half-way through
embedding; afterwards the server, and a server restarted from scratch, serve the previous build,
and the vectors embedded before the kill are kept for the next build.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from carqa.index.search.layout import (
    BUILDS_DIR,
    CACHE_DIR,
    EMBEDDING_CACHE,
    TMP_PREFIX,
    current_build,
)

from bench._common import REPO_ROOT, LiveServer

pytestmark = pytest.mark.slow

FIXTURE_CORPUS = REPO_ROOT / "tests" / "fixtures" / "car_t_papers.jsonl"
QUESTION = "Why do patients relapse after CD19 CAR T cell therapy?"
WORDS = [
    *("invented", "cohort", "persistence", "expansion", "antigen", "relapse", "remission"),
    *("toxicity", "cytokine", "marrow", "lymphodepletion", "infusion", "response"),
    *("durable", "exhaustion", "memory", "phenotype", "dose"),
]


def _invented_corpus(path: Path, papers: int = 400) -> Path:
    """The fixture corpus plus ``papers`` generated, invented abstracts (enough new text that
    embedding takes a while, so the kill lands in the middle of it)."""
    lines = FIXTURE_CORPUS.read_text().splitlines()
    for i in range(papers):
        sentences = [
            f"Invented study {i} sentence {j}: "
            + " ".join(WORDS[(i * 7 + j * 3 + k) % len(WORDS)] for k in range(12))
            + "."
            for j in range(6)
        ]
        lines.append(
            json.dumps({"pmid": str(98000000 + i), "year": "2024", "abstract": " ".join(sentences)})
        )
    path.write_text("\n".join(lines) + "\n")
    return path


def _cached_vectors(index_dir: Path) -> int:
    path = index_dir / CACHE_DIR / EMBEDDING_CACHE
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10) as conn:
        return int(conn.execute("SELECT count(*) FROM embeddings").fetchone()[0])


def _stats_and_answer(base_url: str) -> tuple[str, dict]:
    stats = httpx.get(f"{base_url}/api/stats", timeout=30)
    assert stats.status_code == 200, stats.text
    answer = httpx.post(f"{base_url}/api/query", json={"question": QUESTION}, timeout=30)
    assert answer.status_code == 200, answer.text
    return stats.json()["build_id"], answer.json()


def test_killed_build_leaves_the_previous_index_serving(
    small_index_dir: Path, tmp_path: Path
) -> None:
    index_dir = tmp_path / "index"
    shutil.copytree(small_index_dir, index_dir, symlinks=True)
    old_build = current_build(index_dir)
    assert old_build is not None
    vectors_before = _cached_vectors(index_dir)
    corpus = _invented_corpus(tmp_path / "bigger.jsonl")

    with LiveServer(index_dir) as server:
        build_id, before = _stats_and_answer(server.base_url)
        assert build_id == old_build.name and before["citations"]

        command = [sys.executable, "-m", "carqa.cli", "build", "--from", str(corpus)]
        build = subprocess.Popen(
            [*command, "--index-dir", str(index_dir)],
            cwd=REPO_ROOT,
            env={**os.environ, "HF_HUB_OFFLINE": "1"},
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        answered_during_build = 0
        try:
            deadline = time.monotonic() + 600
            # Mid-way: the first batch of new vectors has been committed to the cache.
            while _cached_vectors(index_dir) <= vectors_before:
                assert build.poll() is None, "the build ended before it could be killed"
                assert time.monotonic() < deadline, "the build never started embedding"
                assert _stats_and_answer(server.base_url)[0] == old_build.name
                answered_during_build += 1
                time.sleep(0.5)
        finally:
            if build.poll() is None:
                build.send_signal(signal.SIGKILL)
            build.wait(timeout=60)
        assert build.returncode == -signal.SIGKILL
        assert answered_during_build > 0

        # The running server did not notice.
        build_id, after = _stats_and_answer(server.base_url)
        assert build_id == old_build.name
        assert after["answer"] == before["answer"]

    # Nothing was published; at most a temporary folder is left for the next build to remove.
    assert current_build(index_dir) == old_build
    published = [p for p in (index_dir / BUILDS_DIR).iterdir() if not p.name.startswith(TMP_PREFIX)]
    assert published == [old_build]
    # The vectors embedded before the kill survive, so the next build resumes from them.
    assert _cached_vectors(index_dir) > vectors_before

    # A server started from scratch comes up on the previous build.
    with LiveServer(index_dir) as restarted:
        build_id, again = _stats_and_answer(restarted.base_url)
        assert build_id == old_build.name
        assert again["answer"] == before["answer"]
