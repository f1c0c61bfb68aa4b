"""``carqa build --runner ray`` (Ray's local mode) builds what the in-process build builds.

Skipped when Ray is not installed (it is the optional ``[scale]`` extra; CI installs it).
"""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path
from typing import Any

import numpy as np
import pytest

ray = pytest.importorskip("ray", reason='Ray is not installed (pip install "carqa[scale]")')

from carqa.index.corpus.pipeline import build  # noqa: E402
from carqa.index.search import vectors as vector_index  # noqa: E402
from carqa.index.search.layout import CACHE_DIR, EMBEDDING_CACHE  # noqa: E402
from carqa.index.search.reader import Index  # noqa: E402

from carqa.settings import Settings  # noqa: E402

# Three builds of the MEDLINE file (in-process, Ray, and a killed and resumed Ray build): far
# past the suite's default timeout on a loaded 2-core machine.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(3600)]

RUNNER_FIELDS = {"runner", "build_id", "created_at", "build_seconds", "files"}
"""Manifest fields that differ between two builds of the same corpus by design (the files'
checksums: FAISS files hold the float32 vectors, equal to 1e-5, not bit for bit)."""


@pytest.fixture(scope="module")
def local_ray() -> Any:
    """One local Ray for the module (each build would otherwise start and stop its own)."""
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def medline_builds(shared_data: Path, local_ray: Any, tmp_path_factory: Any) -> dict[str, Any]:
    """The shared MEDLINE excerpt built in-process and with Ray, each with a fresh cache."""
    source = shared_data / "medline" / "medline16n0902.xml.gz"
    out: dict[str, Any] = {}
    for runner in ("in-process", "ray"):
        index_dir = tmp_path_factory.mktemp(runner)
        report = build(
            Settings.load(index_dir=index_dir),
            sources=[source],
            runner=runner,
        )
        out[runner] = (index_dir, report)
    return out


def _tables(path: Path) -> dict[str, list[tuple[Any, ...]]]:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        names = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        return {
            name: conn.execute(f"SELECT * FROM {name} ORDER BY 1, 2").fetchall()
            for name in names
            if name != "meta"  # the store's bookkeeping (build times, source path)
        }
    finally:
        conn.close()


def test_ray_build_stores_and_indexes_exactly_what_the_in_process_build_does(
    medline_builds: dict[str, Any],
) -> None:
    (local_dir, local_report), (ray_dir, ray_report) = (
        medline_builds["in-process"],
        medline_builds["ray"],
    )
    assert local_report.index["texts_embedded"] > 1000
    assert ray_report.index["texts_embedded"] == local_report.index["texts_embedded"]
    assert ray_report.counts == local_report.counts
    assert ray_report.deletions == local_report.deletions

    # The corpus store: the same papers, sections and references.
    assert _tables(ray_dir / "corpus.sqlite") == _tables(local_dir / "corpus.sqlite")

    local, ray_built = Index.open(local_dir), Index.open(ray_dir)
    # meta.sqlite: papers, sections, chunks and sentences with the same ids and texts.
    assert _tables(ray_built.folder / "meta.sqlite") == _tables(local.folder / "meta.sqlite")
    assert len(ray_built.sentences) == len(local.sentences) > 1000
    # The vectors, by id.
    np.testing.assert_allclose(ray_built.sentence_matrix, local.sentence_matrix, atol=1e-5)
    ids = list(range(len(local.chunks)))
    np.testing.assert_allclose(
        vector_index.vectors_by_id(ray_built.chunk_index, ids),
        vector_index.vectors_by_id(local.chunk_index, ids),
        atol=1e-5,
    )
    # The manifests, but for what differs between any two builds and the runner itself.
    assert local.manifest["runner"] == "in-process"
    assert ray_built.manifest["runner"] == "ray"

    def comparable(manifest: dict[str, Any]) -> dict[str, Any]:
        kept = {k: v for k, v in manifest.items() if k not in RUNNER_FIELDS}
        kept.pop("int8_check", None)  # measured on the vectors: compared below, to 1e-3
        return kept

    assert comparable(ray_built.manifest) == comparable(local.manifest)
    checks = local.manifest["int8_check"], ray_built.manifest["int8_check"]
    assert checks[0]["passed"] == checks[1]["passed"]
    assert sorted(ray_built.manifest["files"]) == sorted(local.manifest["files"])


def test_a_killed_ray_build_continues_from_the_embedding_cache(
    medline_builds: dict[str, Any], tmp_path: Path
) -> None:
    """A build killed mid-way leaves part of the texts in the cache; the next Ray build embeds
    only the rest, and ends with the same vectors."""
    ray_dir, ray_report = medline_builds["ray"]
    index_dir = tmp_path / "resumed"
    index_dir.mkdir()
    shutil.copy(ray_dir / "corpus.sqlite", index_dir / "corpus.sqlite")
    (index_dir / CACHE_DIR).mkdir()
    cache = index_dir / CACHE_DIR / EMBEDDING_CACHE
    shutil.copy(ray_dir / CACHE_DIR / EMBEDDING_CACHE, cache)
    conn = sqlite3.connect(cache)
    with conn:
        total = conn.execute("SELECT count(*) FROM embeddings").fetchone()[0]
        conn.execute(
            "DELETE FROM embeddings WHERE text_hash IN "
            "(SELECT text_hash FROM embeddings ORDER BY text_hash LIMIT ?)",
            (total // 3,),
        )
        kept = conn.execute("SELECT count(*) FROM embeddings").fetchone()[0]
    conn.close()

    from carqa.index.corpus.pipeline import index_stored

    report = index_stored(Settings.load(index_dir=index_dir), runner="ray")
    assert report.index["texts_embedded"] == total - kept > 0
    resumed, whole = Index.open(index_dir), Index.open(ray_dir)
    np.testing.assert_allclose(resumed.sentence_matrix, whole.sentence_matrix, atol=1e-5)
    manifest = json.loads((resumed.folder / "manifest.json").read_text())
    assert manifest["runner"] == "ray"
    assert ray_report.index["texts_embedded"] == total


KILLED_CHILD = """
import sys
from pathlib import Path
from carqa.index.corpus.pipeline import build
from carqa.settings import Settings

build(Settings.load(index_dir=Path(sys.argv[1])), sources=[Path(sys.argv[2])], runner="ray")
print("finished", flush=True)
"""


def _cached(cache: Path) -> int:
    if not cache.exists():
        return 0
    conn = sqlite3.connect(f"file:{cache}?mode=ro", uri=True)
    try:
        return int(conn.execute("SELECT count(*) FROM embeddings").fetchone()[0])
    except sqlite3.OperationalError:  # the table is not created yet
        return 0
    finally:
        conn.close()


def test_a_ray_build_killed_mid_embedding_continues_from_the_cache(
    shared_data: Path, medline_builds: dict[str, Any], tmp_path: Path
) -> None:
    """A real kill: the Ray build runs in its own process group, which is killed (SIGKILL,
    the driver and the local Ray it started) once the first batches of vectors are in the
    cache. The next build embeds only the texts the killed one did not store."""
    import os
    import signal
    import subprocess
    import sys
    import time

    source = shared_data / "medline" / "medline16n0902.xml.gz"
    ray_dir, ray_report = medline_builds["ray"]
    total = ray_report.index["texts_embedded"]
    index_dir = tmp_path / "killed"
    cache = index_dir / CACHE_DIR / EMBEDDING_CACHE
    repo = Path(__file__).resolve().parents[2]
    child = subprocess.Popen(
        [sys.executable, "-c", KILLED_CHILD, str(index_dir), str(source)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env={**os.environ, "PYTHONPATH": str(repo), "HF_HUB_OFFLINE": "1"},
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 900
        while _cached(cache) == 0 and child.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
    finally:
        os.killpg(child.pid, signal.SIGKILL)
        out, _ = child.communicate(timeout=120)
    assert "finished" not in out, "the build ended before it could be killed"
    kept = _cached(cache)
    assert 0 < kept < total

    from carqa.index.corpus.pipeline import index_stored

    report = index_stored(Settings.load(index_dir=index_dir), runner="ray")
    assert report.index["texts_embedded"] == total - kept
    np.testing.assert_allclose(
        Index.open(index_dir).sentence_matrix, Index.open(ray_dir).sentence_matrix, atol=1e-5
    )
