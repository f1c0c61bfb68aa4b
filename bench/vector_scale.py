"""Search at scale: the approximate index on 1,000,000 synthetic 384-d vectors.

Not a unit test. Targets: approximate search p50 ≤ 5 ms per query, recall@10 ≥ 0.95
against exact search, resident memory ≤ 1.5 GB. Exact-search p50 is printed as the baseline.

The vectors are synthetic but shaped like sentence embeddings rather than uniform noise (on
which no approximate index works, and no real embedding looks like): unit vectors drawn around
``--clusters`` topic centres, with queries drawn the same way. They are generated block by
block from fixed seeds, so the full float32 matrix (1.5 GB) is never held by the index process:

1. build: train the IVF index ``carqa.index.search.vectors`` builds (``IVF√n,SQfp16``) on a
   sample, add the blocks, compute the exact top-10 of every query block by block (matrix
   products), write the index with ``carqa.index.search.vectors.write``;
2. serve (a fresh subprocess): load the index file, measure resident memory and single-query
   latency/recall, as a server would see them;
3. exact (a fresh subprocess): an ``IndexFlatIP`` over all vectors, single-query latency.

    .venv/bin/python bench/vector_scale.py [--n 1000000] [--queries 500]

Prints JSON and a one-line summary.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from carqa.index.search import vectors

from bench._common import non_negative_float, positive_int, run_script

DIM = 384
BLOCK = 100_000
MIN_N = 1000  # fewer vectors than this do not make a scale benchmark (nor train IVF lists)


def centres(clusters: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    c = rng.standard_normal((clusters, DIM)).astype(np.float32)
    return c / np.linalg.norm(c, axis=1, keepdims=True)


def block(index: int, n: int, topics: np.ndarray, spread: float, seed: int) -> np.ndarray:
    """Rows ``[index*BLOCK, ...)`` of the data set (deterministic)."""
    rng = np.random.default_rng([seed, index])
    rows = min(BLOCK, n - index * BLOCK)
    picks = rng.integers(0, len(topics), rows)
    x = topics[picks] + spread * rng.standard_normal((rows, DIM), dtype=np.float32) / np.sqrt(DIM)
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def queries(count: int, topics: np.ndarray, spread: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng([seed, 999_999])
    picks = rng.integers(0, len(topics), count)
    x = topics[picks] + spread * rng.standard_normal((count, DIM), dtype=np.float32) / np.sqrt(DIM)
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def rss_mb() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def percentile_ms(times: list[float], q: float) -> float:
    return round(float(np.percentile(np.array(times) * 1000, q)), 3)


def build(args: argparse.Namespace, work: Path) -> dict:
    topics = centres(args.clusters, args.seed)
    blocks = (args.n + BLOCK - 1) // BLOCK
    q = queries(args.queries, topics, args.spread, args.seed)
    settings = vectors.VectorSettings(nprobe=args.nprobe)
    started = time.perf_counter()
    index = vectors.new_ivf(DIM, vectors.nlist_for(args.n), args.encoding)
    first = block(0, args.n, topics, args.spread, args.seed)
    vectors.train_ivf(index, vectors.sample_rows(first, settings.train_size))
    trained = time.perf_counter() - started
    best_scores = np.full((len(q), 10), -np.inf, dtype=np.float32)
    best_ids = np.zeros((len(q), 10), dtype=np.int64)
    for b in range(blocks):
        data = first if b == 0 else block(b, args.n, topics, args.spread, args.seed)
        ids = np.arange(b * BLOCK, b * BLOCK + len(data), dtype=np.int64)
        index.add_with_ids(data, ids)
        scores = q @ data.T  # exact top-10, merged block by block
        k = min(10, scores.shape[1])  # the last block may hold fewer than 11 rows
        top = np.argpartition(-scores, k - 1, axis=1)[:, :k]
        merged_scores = np.concatenate([best_scores, np.take_along_axis(scores, top, 1)], 1)
        merged_ids = np.concatenate([best_ids, ids[top]], 1)
        keep = np.argsort(-merged_scores, axis=1)[:, :10]
        best_scores = np.take_along_axis(merged_scores, keep, 1)
        best_ids = np.take_along_axis(merged_ids, keep, 1)
    vectors.set_nprobe(index, settings.nprobe)
    built = time.perf_counter() - started
    vectors.write(index, work / "ivf.faiss")
    np.save(work / "queries.npy", q)
    np.save(work / "truth.npy", best_ids)
    return {
        "index": f"IVF{vectors.nlist_for(args.n)},{args.encoding}",
        "train_seconds": round(trained, 1),
        "build_seconds": round(built, 1),
        "file_mb": round((work / "ivf.faiss").stat().st_size / 2**20, 1),
    }


def serve(work: Path, nprobes: list[int]) -> dict:
    """Run in a fresh process: load the index as a server would, then time single queries."""
    import faiss

    faiss.omp_set_num_threads(1)  # one query at a time: threads only add overhead
    base = rss_mb()
    index = vectors.read(work / "ivf.faiss")
    loaded = rss_mb()
    q = np.load(work / "queries.npy", allow_pickle=False)
    truth = np.load(work / "truth.npy", allow_pickle=False)
    results = {}
    for nprobe in nprobes:
        vectors.set_nprobe(index, nprobe)
        for row in q[:20]:
            vectors.search(index, row, 10)  # warm up
        times, recalls = [], []
        for row, expected in zip(q, truth, strict=True):
            started = time.perf_counter()
            hits = vectors.search(index, row, 10)
            times.append(time.perf_counter() - started)
            recalls.append(len({i for i, _ in hits} & set(expected.tolist())) / 10)
        results[str(nprobe)] = {
            "p50_ms": percentile_ms(times, 50),
            "p95_ms": percentile_ms(times, 95),
            "recall@10": round(float(np.mean(recalls)), 4),
        }
    return {
        "rss_mb_before_load": round(base, 1),
        "rss_mb": round(rss_mb(), 1),
        "index_mb": round(loaded - base, 1),
        "by_nprobe": results,
    }


def exact(args: argparse.Namespace, work: Path) -> dict:
    """Run in a fresh process: exact IndexFlatIP over all vectors, single-query latency."""
    import faiss

    faiss.omp_set_num_threads(1)  # like the approximate index: one thread per query
    topics = centres(args.clusters, args.seed)
    index = faiss.IndexFlatIP(DIM)
    for b in range((args.n + BLOCK - 1) // BLOCK):
        index.add(block(b, args.n, topics, args.spread, args.seed))
    q = np.load(work / "queries.npy", allow_pickle=False)[:100]
    for row in q[:5]:
        index.search(row[None, :], 10)
    times = []
    for row in q:
        started = time.perf_counter()
        index.search(row[None, :], 10)
        times.append(time.perf_counter() - started)
    return {"p50_ms": percentile_ms(times, 50), "rss_mb": round(rss_mb(), 1)}


def child(mode: str, args: argparse.Namespace, work: Path) -> dict:
    command = [sys.executable, __file__, "--mode", mode, "--work", str(work)]
    for key in ("n", "queries", "clusters", "spread", "seed", "nprobe", "encoding"):
        command += [f"--{key}", str(getattr(args, key))]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:  # its output was captured: show why, not CalledProcessError
        raise SystemExit(f"The {mode} step failed:\n{done.stderr[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def vector_count(text: str) -> int:
    n = positive_int(text)
    if n < MIN_N:
        raise argparse.ArgumentTypeError(f"{text!r}: must be at least {MIN_N}")
    return n


def ivf_encoding(text: str) -> str:
    """argparse ``type`` of ``--encoding``: one FAISS's index factory accepts after ``IVF…,``
    (checked on a tiny index: a typo failed only after the data was generated)."""
    try:
        vectors.new_ivf(DIM, 16, text)
    except RuntimeError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a FAISS IVF encoding (e.g. SQfp16, SQ8, Flat, PQ32)"
        ) from None
    return text


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=vector_count, default=1_000_000)
    parser.add_argument("--queries", type=positive_int, default=500)
    parser.add_argument("--clusters", type=positive_int, default=5000)
    parser.add_argument("--spread", type=non_negative_float, default=1.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--nprobe", type=positive_int, default=vectors.VectorSettings().nprobe)
    parser.add_argument(
        "--encoding", type=ivf_encoding, default=vectors.IVF_ENCODING, help="SQfp16, SQ8, ..."
    )
    parser.add_argument(
        "--mode",
        choices=["all", "serve", "exact"],
        default="all",
        help="serve and exact are the steps run in child processes (they need --work)",
    )
    parser.add_argument("--work", type=Path, help="the build step's folder (serve, exact)")
    parser.add_argument("--skip-exact", action="store_true")
    args = parser.parse_args(argv)
    if args.mode != "all" and (args.work is None or not args.work.is_dir()):
        parser.error(f"--mode {args.mode} needs --work, the folder the build step wrote")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)

    if args.mode == "serve":
        nprobes = sorted({args.nprobe, 8, 16, 32, 64})
        print(json.dumps(serve(args.work, nprobes)))
        return
    if args.mode == "exact":
        print(json.dumps(exact(args, args.work)))
        return

    with tempfile.TemporaryDirectory(prefix="carqa-scale-") as tmp:
        work = Path(tmp)
        built = build(args, work)
        served = child("serve", args, work)
        baseline = None if args.skip_exact else child("exact", args, work)
    default = served["by_nprobe"][str(args.nprobe)]
    report = {
        "n": args.n,
        "dim": DIM,
        "queries": args.queries,
        "data": f"{args.clusters} topic clusters, spread {args.spread}",
        "cpus": os.cpu_count(),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "build": built,
        "approximate": {"nprobe": args.nprobe, **default, "rss_mb": served["rss_mb"]},
        "sweep": served["by_nprobe"],
        "exact": baseline,
        "speedup_vs_exact": (
            round(baseline["p50_ms"] / default["p50_ms"], 1) if baseline else None
        ),
        "targets_met": {
            "p50<=5ms": default["p50_ms"] <= 5,
            "recall@10>=0.95": default["recall@10"] >= 0.95,
            "rss<=1.5GB": served["rss_mb"] <= 1536,
        },
    }
    print(json.dumps(report, indent=2))
    print(
        f"summary: {built['index']} over {args.n:,} x {DIM}: p50 {default['p50_ms']} ms, "
        f"recall@10 {default['recall@10']}, RSS {served['rss_mb']:.0f} MB (nprobe {args.nprobe});"
        f" exact p50 {baseline['p50_ms'] if baseline else 'n/a'} ms"
        f" ({report['speedup_vs_exact']}x); build {built['build_seconds']} s"
    )


if __name__ == "__main__":
    run_script(main)
