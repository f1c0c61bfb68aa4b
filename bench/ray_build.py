"""The in-process build and the Ray build (local mode) of the same files, in the same run.

Usage (from the repository root, with the ``[scale]`` extra installed)::

    .venv/bin/python bench/ray_build.py --from CORPUS.jsonl [--limit N] [--warm] --json

Each build gets a fresh index folder and a fresh embedding cache (``--warm``: the Ray build
reuses the in-process build's cache; ``--cache FILE``: both start from a copy of that cache — then
only reading, chunking, the query encoder's check and writing are compared); the
ONNX export is prepared once beforehand in a shared model cache, so neither build pays for it.
Reports the wall time of each build, texts embedded per second, the machine's 1-minute load
average sampled during each build (mean, min, max), and whether the two builds are equal:
papers, sections, chunk and sentence ids and texts, sentence and chunk vectors (largest
difference), manifests but for the runner fields.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sqlite3
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # for bench._common

import bench._common  # noqa: F401  (offline model, repository on sys.path)


def subset(source: Path, limit: int | None, folder: Path) -> Path:
    """The first ``limit`` lines of a JSONL corpus (the file itself without a limit)."""
    if not limit:
        return source
    target = folder / f"first-{limit}.jsonl"
    with source.open(encoding="utf-8") as handle, target.open("w", encoding="utf-8") as out:
        for number, line in enumerate(handle):
            if number >= limit:
                break
            out.write(line)
    return target


def rows(folder: Path, table: str) -> list[tuple[Any, ...]]:
    conn = sqlite3.connect(f"file:{folder / 'meta.sqlite'}?mode=ro", uri=True)
    try:
        return conn.execute(f"SELECT * FROM {table} ORDER BY 1").fetchall()
    finally:
        conn.close()


class LoadSampler:
    """The 1-minute load average every ``every`` seconds while a build runs: other processes
    share the machine, and a comparison of two builds is fair only under similar load."""

    def __init__(self, every: float = 10.0) -> None:
        self.every = every
        self.samples: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while True:
            self.samples.append(os.getloadavg()[0])
            if self._stop.wait(self.every):
                return

    def __enter__(self) -> LoadSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def summary(self) -> dict[str, float]:
        values = self.samples or [0.0]
        return {
            "mean": round(sum(values) / len(values), 2),
            "min": round(min(values), 2),
            "max": round(max(values), 2),
        }


RUNNER_FIELDS = {"runner", "build_id", "created_at", "build_seconds", "files", "int8_check"}
"""Manifest fields that differ between any two builds of the same corpus (and the runner)."""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--from", dest="source", type=Path, required=True)
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--warm", action="store_true")
    parser.add_argument(
        "--cache", type=Path, default=None, help="an embeddings.sqlite both builds start from"
    )
    parser.add_argument(
        "--ray-first", action="store_true", help="build with Ray first (load drifts: run both)"
    )
    parser.add_argument("--keep", type=Path, default=None, help="build here and keep them")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    import numpy as np
    import ray
    from carqa.index.corpus.pipeline import build
    from carqa.index.search.reader import Index
    from carqa.index.search.vectors import vectors_by_id

    from carqa.settings import Settings

    scratch = args.keep or Path(tempfile.mkdtemp(prefix="carqa-bench-ray-"))
    scratch.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("CARQA_MODEL_CACHE_DIR", str(scratch / "models"))
    corpus = subset(args.source, args.limit, scratch)
    report: dict[str, Any] = {
        "corpus": str(args.source),
        "limit": args.limit,
        "warm": args.warm or args.cache is not None,
    }
    try:
        # The ONNX export (and its int8 model), once, outside both timings: a tiny build.
        tiny = subset(args.source, 3, scratch)
        build(Settings.load(index_dir=scratch / "warmup"), sources=[tiny])
        ray.init(include_dashboard=False, log_to_driver=False)
        report["ray_cpus"] = int(ray.cluster_resources().get("CPU", 0))
        folders = {}
        for runner in ("ray", "in-process") if args.ray_first else ("in-process", "ray"):
            index_dir = scratch / runner
            if index_dir.exists():
                shutil.rmtree(index_dir)
            if args.cache is not None:
                (index_dir / "cache").mkdir(parents=True)
                shutil.copy(args.cache, index_dir / "cache" / "embeddings.sqlite")
            elif args.warm and runner == "ray" and not args.ray_first:
                (index_dir / "cache").mkdir(parents=True)
                shutil.copy(
                    scratch / "in-process" / "cache" / "embeddings.sqlite",
                    index_dir / "cache" / "embeddings.sqlite",
                )
            started = time.perf_counter()
            with LoadSampler() as load:
                result = build(Settings.load(index_dir=index_dir), sources=[corpus], runner=runner)
            seconds = time.perf_counter() - started
            index = result.index or {}
            embed_s = (index.get("timings") or {}).get("embed", 0.0)
            report[runner] = {
                "wall_s": round(seconds, 1),
                "papers": index.get("papers"),
                "texts_embedded": index.get("texts_embedded"),
                "timings": index.get("timings"),
                "load_1min": load.summary(),
                "texts_per_s_embedding": round(index.get("texts_embedded", 0) / embed_s, 1)
                if embed_s
                else None,
            }
            folders[runner] = Index.open(index_dir)
        local, distributed = folders["in-process"], folders["ray"]
        report["equal"] = {
            table: rows(local.folder, table) == rows(distributed.folder, table)
            for table in ("papers", "sections", "chunks", "sentences")
        }
        report["equal"]["max_vector_difference"] = float(
            np.abs(local.sentence_matrix - distributed.sentence_matrix).max()
        )
        ids = list(range(len(local.chunks)))
        report["equal"]["max_chunk_vector_difference"] = float(
            np.abs(
                vectors_by_id(local.chunk_index, ids) - vectors_by_id(distributed.chunk_index, ids)
            ).max()
        )

        def comparable(manifest: dict[str, Any]) -> dict[str, Any]:
            return {k: v for k, v in manifest.items() if k not in RUNNER_FIELDS}

        report["equal"]["manifest_but_runner_fields"] = comparable(local.manifest) == comparable(
            distributed.manifest
        )
        report["runners"] = [local.manifest.get("runner"), distributed.manifest.get("runner")]
        print(json.dumps(report, indent=None if args.json else 2))
    finally:
        if ray.is_initialized():
            ray.shutdown()
        if args.keep is None:
            shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
