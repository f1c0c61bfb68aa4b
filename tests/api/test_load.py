"""Sustained load on a live ``carqa serve``: no errors, no memory creep.

A real server process (``carqa serve`` on 127.0.0.1, a copy of the session's small index)
answers ``POST /api/query`` from 16 concurrent clients for 60 s — closed loop, each client
sending its next question as soon as it has the answer, every question made unique so the
query-vector cache cannot hide the work. Asserted: not one transport error or non-200 answer,
and the server's resident memory (psutil RSS) grows by less than 10% from after the warm-up
to the end.
"""

from __future__ import annotations

import asyncio
import os
import shutil
from pathlib import Path

import psutil
import pytest

from bench._common import LiveServer, drive_httpx

pytestmark = pytest.mark.slow

CLIENTS = 16
SECONDS = float(os.environ.get("CARQA_LOAD_SECONDS", "60"))
WARMUP_SECONDS = 10.0
MAX_REQUESTS = 200_000  # a bound on the count as well as the time
MAX_RSS_GROWTH = 0.10

QUESTIONS = [
    "Why do patients relapse after CD19 CAR T cell therapy?",
    "What is cytokine release syndrome?",
    "How is neurotoxicity after CAR T cells managed?",
    "Does a 4-1BB costimulatory domain improve CAR T cell persistence?",
    "What causes antigen loss in B cell leukemia?",
    "Can CAR T cells treat solid tumours?",
    "Which toxicities follow CAR T cell infusion?",
    "How does tonic signalling drive T cell exhaustion?",
    "What is the role of tocilizumab?",
    "Do dual-targeting CARs prevent relapse?",
]


def _rss(pid: int) -> int:
    return psutil.Process(pid).memory_info().rss


def test_16_clients_for_60_seconds_without_errors_or_memory_growth(
    small_index_dir: Path, tmp_path: Path
) -> None:
    index_dir = tmp_path / "index"  # the server writes sessions.sqlite: keep the fixture clean
    shutil.copytree(small_index_dir, index_dir, symlinks=True)
    with LiveServer(index_dir) as server:
        assert server.process is not None
        pid = server.process.pid

        _, warm_errors, _ = asyncio.run(
            drive_httpx(
                server.base_url,
                QUESTIONS,
                clients=CLIENTS,
                seconds=WARMUP_SECONDS,
                max_requests=MAX_REQUESTS,
                repeat=False,
                start_at=10**7,
            )
        )
        assert not warm_errors, warm_errors
        rss_after_warmup = _rss(pid)

        latencies, errors, wall = asyncio.run(
            drive_httpx(
                server.base_url,
                QUESTIONS,
                clients=CLIENTS,
                seconds=SECONDS,
                max_requests=MAX_REQUESTS,
                repeat=False,
            )
        )
        rss_end = _rss(pid)
        assert server.process.poll() is None, "the server died under load"

    assert not errors, f"{sum(errors.values())} errors: {dict(errors)}"
    assert wall >= SECONDS * 0.95
    assert len(latencies) >= SECONDS  # at least one answer a second: it did not stall
    growth = (rss_end - rss_after_warmup) / rss_after_warmup
    print(
        f"{len(latencies)} answers in {wall:.1f} s ({len(latencies) / wall:.0f}/s); "
        f"RSS {rss_after_warmup / 2**20:.0f} -> {rss_end / 2**20:.0f} MiB ({growth:+.1%})"
    )
    assert growth < MAX_RSS_GROWTH, f"RSS grew {growth:.1%} under load"
