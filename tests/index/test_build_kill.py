"""A build killed (SIGKILL) at a random point leaves the previous index loadable and serving."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from carqa.index.search.layout import BUILDS_DIR, TMP_PREFIX, current_build
from carqa.index.search.reader import Index

from tests.index.index_helpers import add_papers, build, invented_paper, new_index_dir

REPO_ROOT = Path(__file__).resolve().parents[2]
STAGES = ["resolve", "chunk", "embed", "query-encoder", "write", "manifest", "publish", "done"]

CHILD = """
import sys
from pathlib import Path
from carqa.index.search.build import build_index
from carqa.index.corpus.store import CorpusStore

def stage(name):
    print(name, flush=True)

index_dir = Path(sys.argv[1])
with CorpusStore.open(index_dir) as store:
    build_index(store, index_dir, on_stage=stage)
print("finished", flush=True)
"""


def _build_and_kill(index_dir: Path, stage: str, delay: float) -> list[str]:
    """Run a build in a subprocess; SIGKILL it ``delay`` s after it reports ``stage``."""
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "HF_HUB_OFFLINE": "1"}
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(index_dir)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=env,
    )
    seen: list[str] = []
    assert child.stdout is not None
    try:
        for line in child.stdout:
            seen.append(line.strip())
            if line.strip() == stage:
                time.sleep(delay)
                child.send_signal(signal.SIGKILL)
                break
    finally:
        child.wait(timeout=120)
    return seen


@pytest.mark.slow
def test_killing_a_build_leaves_the_previous_index_serving(
    small_index_dir: Path, tmp_path: Path
) -> None:
    seed = int(os.environ.get("CARQA_KILL_SEED", time.time_ns() % 10_000))
    rng = random.Random(seed)
    index_dir = new_index_dir(small_index_dir, tmp_path / "idx")
    build(index_dir)
    query = "How often was prolonged cytopenia seen?"

    for round_ in range(3):
        old = current_build(index_dir)
        assert old is not None
        # each round adds a paper, so the child has new text to embed and a new build to publish
        add_papers(index_dir, [invented_paper(f"9910000{round_}", f"prolonged cytopenia {round_}")])
        stage = rng.choice(STAGES)
        delay = rng.uniform(0, 0.05)
        seen = _build_and_kill(index_dir, stage, delay)
        context = f"seed={seed} round={round_} killed {delay:.3f}s after {stage!r}; saw {seen}"

        now = current_build(index_dir)
        assert now is not None, context
        # Either the old build still serves, or the new one was completely published.
        if now != old:
            assert "publish" in seen, context
        index = Index.open(index_dir)  # checksums verified: nothing half-written is served
        hits = index.search_sentences(index.encode_query(query), 3)
        assert len(hits) == 3, context
        assert np.isfinite([score for _, score in hits]).all(), context

        # The next build cleans up after the killed one and publishes normally.
        report = build(index_dir)
        assert not list((index_dir / BUILDS_DIR).glob(f"{TMP_PREFIX}*")), context
        assert Index.open(index_dir).build_id == report.build_id, context
        assert len(Index.open(index_dir).papers) == 23 + round_, context
