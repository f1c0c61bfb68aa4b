"""Build speed: cold and warm index builds of the PubMedQA corpus (1000 abstracts).

Not a unit test. Targets: cold build ≤ 90 s on the 2-core machine; warm rebuild of
the unchanged corpus ≤ 5 s with zero texts embedded. Three builds, each into a new temporary
model cache or index directory as stated, with a warm OS file cache (the model files were read
before); the corpus is loaded into the store first and not timed:

- **first**: nothing prepared — an empty index directory *and* an empty model cache, as the
  very first build on a machine: torch and sentence-transformers are imported, the model is
  exported to ONNX, verified and quantised (once per model per machine), then all texts are
  embedded;
- **cold**: another empty index directory (no embedding cache) with the model cache the first
  build filled, as any later corpus on that machine: all texts are embedded;
- **warm**: the cold build's directory again, corpus unchanged: nothing is embedded.

``first / cold`` is the share of a first build that prepares the model. Each build runs in a
fresh subprocess, timed from process start (imports included), as ``carqa build`` would be:

    .venv/bin/python bench/build.py [--corpus ../shared/data/pubmedqa/corpus.jsonl]
           [--backend auto|onnx|torch] [--threads N]

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

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))  # for bench._common

from bench._common import DEFAULT_CORPUS, positive_int, require_files, run_script  # noqa: E402

CHILD = """
import json, sys, time
from pathlib import Path
from carqa.index.search.build import build_index
from carqa.index.corpus.store import CorpusStore
started = time.perf_counter()
index_dir = Path(sys.argv[1])
with CorpusStore.open(index_dir) as store:
    report = build_index(store, index_dir)
print(json.dumps({**report.as_dict(), "in_process_seconds": time.perf_counter() - started}))
"""


def load_corpus(corpus: Path, index_dir: Path) -> int:
    from carqa.index.corpus.sources import load_sources
    from carqa.index.corpus.store import CorpusStore

    loaded = load_sources([corpus])
    with CorpusStore.open(index_dir) as store:
        store.replace_corpus(loaded.papers, seed_pmid=loaded.seed_pmid, source=str(corpus))
    return len(loaded.papers)


def timed_build(index_dir: Path, env: dict[str, str]) -> dict:
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", CHILD, str(index_dir)],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO_ROOT,
    )
    wall = time.perf_counter() - started
    if done.returncode != 0:  # its output was captured: show why, not CalledProcessError
        raise SystemExit(f"The build of {index_dir} failed:\n{done.stderr[-4000:]}")
    out = done.stdout
    report = json.loads(out.strip().splitlines()[-1])
    return {
        "wall_seconds": round(wall, 1),
        "build_seconds": round(report["seconds"], 1),
        "texts_embedded": report["texts_embedded"],
        "texts_cached": report["texts_cached"],
        "up_to_date": report["up_to_date"],
        "embed_backend": report["embed_backend"],
        "query_encoder": report["query_encoder"],
        "query_precision": report.get("query_precision"),
        "chunks": report["chunks"],
        "sentences": report["sentences"],
        "timings": report["timings"],
    }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS)
    parser.add_argument("--backend", choices=["auto", "onnx", "torch"], default="auto")
    parser.add_argument("--threads", type=positive_int, help="CARQA_THREADS for the build")
    args = parser.parse_args(argv)
    require_files(parser, ("--corpus", args.corpus))
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)

    env = {
        **os.environ,
        "PYTHONPATH": str(REPO_ROOT),
        "HF_HUB_OFFLINE": "1",
        "CARQA_EMBED_BACKEND": args.backend,
    }
    if args.threads:
        env["CARQA_THREADS"] = str(args.threads)
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="carqa-build-bench-") as tmp:
        env["CARQA_MODEL_CACHE_DIR"] = str(Path(tmp) / "models")  # never the user's own
        papers = load_corpus(args.corpus, Path(tmp) / "first")
        load_corpus(args.corpus, Path(tmp) / "index")
        first = timed_build(Path(tmp) / "first", env)
        cold = timed_build(Path(tmp) / "index", env)
        warm = timed_build(Path(tmp) / "index", env)
    report = {
        "corpus": str(args.corpus),
        "papers": papers,
        "backend": args.backend,
        "threads": args.threads or "auto",
        "cpus": os.cpu_count(),
        "load_average_before": round(load_before, 2),
        "load_average_after": round(os.getloadavg()[0], 2),
        "first": first,
        "cold": cold,
        "warm": warm,
        "first_over_cold": round(first["wall_seconds"] / cold["wall_seconds"], 2),
        "targets_met": {
            "cold<=90s": cold["wall_seconds"] <= 90,
            "warm<=5s": warm["wall_seconds"] <= 5,
            "warm_embedded==0": warm["texts_embedded"] == 0,
        },
    }
    print(json.dumps(report, indent=2))
    print(
        f"summary: {papers} papers; first {first['wall_seconds']} s (model prepared); "
        f"cold {cold['wall_seconds']} s ({cold['texts_embedded']} "
        f"texts embedded, {cold['embed_backend']}); warm {warm['wall_seconds']} s "
        f"({warm['texts_embedded']} embedded, up to date: {warm['up_to_date']}); "
        f"load {load_before:.1f}"
    )


if __name__ == "__main__":
    run_script(main)
