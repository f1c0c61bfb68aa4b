"""The whole answer path as the corpus grows: 1k, 18.7k, ~100k and 1M papers.

Not a unit test (it builds indexes of up to a million papers). For each corpus size:

1. corpus: the BioASQ corpus (``--corpus``) replicated under new pmids until it has ``size``
   papers (copy *c* of paper *p* gets pmid ``c·10⁸ + p``; 1,000 = its first 1,000 papers).
   Identical texts hit the embedding cache (``--cache``: an ``embeddings.sqlite`` of an earlier
   build, copied into each new index), so the build embeds nothing it has embedded before.
   The copies score alike: both candidate paths break ties by paper position (sorted pmid),
   lower first, so which copy ranks first is deterministic;
2. build, in two timed steps: ``carqa build --from --no-index`` (reading the corpus into the
   store) and ``carqa build --index-only`` (the search index), each with its peak RSS; index
   size on disk = the published build folder. An index already built from the same corpus is
   an up-to-date check and keeps the times a previous run recorded (``--out``);
3. measure, in a fresh process (so its memory is a server's): open the engine, answer
   ``--questions`` BioASQ dev questions (cycled) on the path the retriever chooses for that size,
   then answer them again with the exact and the approximate candidate source forced, and
   compare (top-10 papers overlap, first cited sentence identical). ``--exact-questions``
   answers fewer on the exact path (it scores every paper: slow at a million). BM25 alone is
   timed too: the pruned top-k over the build's postings against the sum of every posting of
   the question's terms.

Prints/writes JSON (``--out``) and plots ask p50/p95 against corpus size (log x, ``--plot``).

    .venv/bin/python bench/scale.py --work DIR --cache /path/to/embeddings.sqlite \\
        [--sizes 1000,18687,93435,1000000] [--questions 1000] [--exact-questions N]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import machine_info, percentile, positive_int, require_files, run_script

SHARED = (
    Path(os.environ.get("CARQA_SHARED_DATA") or Path(__file__).resolve().parents[2] / "shared/data")
    / "bioasq"
)
DEFAULT_SIZES = [1000, 18687, 93435, 1_000_000]
COPY_STRIDE = 100_000_000


def sizes(text: str) -> list[int]:
    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: comma-separated paper counts") from None
    if not values or min(values) < 100:
        raise argparse.ArgumentTypeError(f"{text!r}: each size must be at least 100 papers")
    return values


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=sizes, default=DEFAULT_SIZES)
    parser.add_argument("--questions", type=positive_int, default=1000)
    parser.add_argument(
        "--exact-questions", type=positive_int, help="questions on the exact path (default: all)"
    )
    parser.add_argument("--corpus", type=Path, default=SHARED / "corpus.jsonl")
    parser.add_argument("--question-file", type=Path, default=SHARED / "dev_questions.jsonl")
    parser.add_argument("--work", type=Path, help="folder for the corpora and indexes")
    parser.add_argument("--cache", type=Path, help="embeddings.sqlite to seed each build with")
    parser.add_argument("--out", type=Path, help="JSON file to write (appended per size)")
    parser.add_argument("--plot", type=Path, help="PNG to write")
    parser.add_argument(
        "--measure-only",
        action="store_true",
        help="measure the indexes a previous run built (its --out keeps their build numbers)",
    )
    parser.add_argument(
        "--precision", choices=("fp32", "int8"), default="fp32", help="question encoder"
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    parser.add_argument("--measure", type=Path, help=argparse.SUPPRESS)  # internal: one index
    args = parser.parse_args(argv)
    if args.measure is None:
        if args.work is None:
            parser.error("--work is required (corpora and indexes of up to 1M papers go there)")
        require_files(parser, ("--corpus", args.corpus))
    require_files(parser, ("--question-file", args.question_file))
    return args


# -- corpus and build ------------------------------------------------------------------------


def write_corpus(source: Path, size: int, path: Path) -> int:
    """The first ``size`` papers of ``source`` repeated under new pmids; returns the count."""
    papers = [json.loads(line) for line in source.open(encoding="utf-8") if line.strip()]
    tmp = path.with_suffix(".tmp")
    written = 0
    with tmp.open("w", encoding="utf-8") as out:
        copy = 0
        while written < size:
            for paper in papers:
                if written >= size:
                    break
                record = dict(paper)
                record["pmid"] = str(copy * COPY_STRIDE + int(paper["pmid"]))
                out.write(json.dumps(record) + "\n")
                written += 1
            copy += 1
    os.replace(tmp, path)
    return written


def _timed(command: list[str]) -> tuple[float, float]:
    """Run ``command``; (wall seconds, its peak RSS in MiB)."""
    started = time.perf_counter()
    child = subprocess.Popen(command)
    _, status, usage = os.wait4(child.pid, 0)
    child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode:
        raise subprocess.CalledProcessError(child.returncode, command)
    return time.perf_counter() - started, usage.ru_maxrss / 1024


def build(
    corpus: Path, index_dir: Path, cache: Path | None, earlier: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The store from ``corpus``, then its index (seeded embedding cache): times, peak RSS
    and disk size. ``earlier``: this size's entry of a previous run; when the build is still
    the one it timed (the build here was an up-to-date check), its numbers are kept."""
    if cache is not None:
        target = index_dir / "cache" / "embeddings.sqlite"
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(cache, target)
    carqa = [sys.executable, "-m", "carqa.cli", "build", "--index-dir", str(index_dir)]
    if earlier is not None and (index_dir / "corpus.sqlite").is_file():
        store_seconds, store_rss = earlier.get("store_seconds"), earlier.get("store_peak_rss_mib")
    else:
        store_seconds, store_rss = _timed([*carqa, "--from", str(corpus), "--no-index"])
    seconds, peak = _timed([*carqa, "--index-only"])
    folder = (index_dir / "current").resolve()
    manifest = json.loads((folder / "manifest.json").read_text())
    files = {str(p.relative_to(folder)): p.stat().st_size for p in folder.rglob("*") if p.is_file()}
    if earlier is not None and earlier.get("build_id") == manifest.get("build_id"):
        return earlier
    return {
        "build_id": manifest.get("build_id"),
        "store_seconds": None if store_seconds is None else round(store_seconds, 1),
        "store_peak_rss_mib": None if store_rss is None else round(store_rss),
        "build_seconds": round(seconds, 1),
        "build_peak_rss_mib": round(peak),
        "build_seconds_manifest": manifest.get("build_seconds"),
        "index_bytes": sum(files.values()),
        "files_bytes": files,
        "counts": manifest.get("counts"),
        "vectors": {k: v for k, v in manifest.get("vectors", {}).items() if k != "settings"},
        "lexical": manifest.get("lexical"),
        "load": os.getloadavg(),
    }


# -- measuring (a fresh process per index) ---------------------------------------------------


def _memory_mib() -> dict[str, float]:
    fields: dict[str, float] = {}
    with open("/proc/self/status") as status:
        for line in status:
            name, _, value = line.partition(":")
            if name in ("VmRSS", "RssAnon", "RssFile"):
                fields[name] = int(value.split()[0]) / 1024
    return fields


def _questions(path: Path, count: int) -> list[str]:
    texts = []
    for line in path.open(encoding="utf-8"):
        if line.strip():
            record = json.loads(line)
            texts.append(str(record.get("question") or record.get("body")))
    return [texts[i % len(texts)] for i in range(count)]


def _run(engine: Any, questions: list[str]) -> tuple[list[dict[str, Any]], dict[str, float]]:
    """Answer every question; per question: top-10 pmids, first cited sentence, times."""
    rows = []
    for question in questions:
        started, cpu = time.perf_counter(), time.process_time()
        result = engine.ask_detailed(question, k=5, ranked=10)
        took = (time.perf_counter() - started) * 1000
        cpu_ms = (time.process_time() - cpu) * 1000
        citations = result.answer.citations
        rows.append(
            {
                "top10": result.retrieval.pmids[:10],
                "first": (citations[0].pmid, citations[0].text) if citations else None,
                "ms": took,
                "cpu_ms": cpu_ms,
                "rank_ms": result.retrieval.timings.get("rank", 0.0),
            }
        )
    times = [r["ms"] for r in rows]
    cpu_times = [r["cpu_ms"] for r in rows]
    ranks = [r["rank_ms"] for r in rows]
    stats = {
        "ask_p50_ms": round(percentile(times, 50), 2),
        "ask_p95_ms": round(percentile(times, 95), 2),
        "rank_p50_ms": round(percentile(ranks, 50), 2),
        "rank_p95_ms": round(percentile(ranks, 95), 2),
        # CPU time of the process per question (all its threads): the work a question costs,
        # which on a shared machine wall-clock times blur.
        "cpu_p50_ms": round(percentile(cpu_times, 50), 2),
        "cpu_p95_ms": round(percentile(cpu_times, 95), 2),
    }
    return rows, stats


def _agreement(fast: list[dict[str, Any]], exact: list[dict[str, Any]]) -> dict[str, float]:
    overlaps, same_first = [], []
    for a, b in zip(fast, exact, strict=True):
        want = set(b["top10"])
        overlaps.append(len(set(a["top10"]) & want) / max(1, len(want)))
        same_first.append(a["first"] == b["first"])
    return {
        "top10_overlap": round(sum(overlaps) / len(overlaps), 4),
        "first_cited_same": round(sum(same_first) / len(same_first), 4),
    }


def _bm25(engine: Any, questions: list[str]) -> dict[str, Any]:
    """BM25 top-k alone, per question: the pruned top-k over the postings' heads against the
    sum of every posting of the question's terms; how often they agree and the bound proves
    the pruned result exact."""
    from carqa.qa.candidates import top_k
    from carqa.qa.lexical import EXPANSION_WEIGHT

    retriever = engine.retriever
    lexical, k = retriever.lexical, retriever.n_candidates
    postings = getattr(lexical, "postings", None)
    if postings is None:
        return {}
    pruned_ms, full_ms, same, certain = [], [], [], []
    for question in dict.fromkeys(questions):
        query = lexical.parse(question)
        weighted = [(t, 1.0) for t in query.own] + [(t, EXPANSION_WEIGHT) for t in query.extra]
        started = time.process_time()
        terms = postings.weighted(weighted)
        found = postings.top(terms, k)
        pruned_ms.append((time.process_time() - started) * 1000)
        started = time.process_time()
        ids, values = lexical.sparse_scores(query)
        full = top_k(values, ids, k)
        full_ms.append((time.process_time() - started) * 1000)
        same.append(np.array_equal(found.papers, full))
        certain.append(found.certain)
    return {
        "questions": len(same),
        "pruned_p50_ms": round(percentile(pruned_ms, 50), 3),
        "pruned_p95_ms": round(percentile(pruned_ms, 95), 3),
        "full_p50_ms": round(percentile(full_ms, 50), 3),
        "full_p95_ms": round(percentile(full_ms, 95), 3),
        "same_top_k": round(sum(same) / len(same), 4),
        "proven_exact": round(sum(certain) / len(certain), 4),
    }


def measure(index_dir: Path, question_file: Path, count: int, exact_count: int) -> dict[str, Any]:
    """Open the engine and answer (see the module doc); the numbers for one index."""
    from carqa.qa.engine import Engine
    from carqa.qa.retrieve import HybridRetriever

    from carqa.settings import Settings

    before = _memory_mib()
    started = time.perf_counter()
    engine = Engine.open(Settings.load(index_dir=index_dir))
    open_seconds = time.perf_counter() - started
    opened = _memory_mib()
    questions = _questions(question_file, count)
    engine.ask_detailed(questions[0])  # warm-up: encoder sessions, first page faults
    chosen = engine.retriever.source.name
    rows, stats = _run(engine, questions)
    after = _memory_mib()
    result: dict[str, Any] = {
        "source": chosen,
        "open_seconds": round(open_seconds, 1),
        "rss_mib": {"start": before, "opened": opened, "after_questions": after},
        **stats,
        "questions": count,
        "load": os.getloadavg(),
    }
    result["bm25"] = _bm25(engine, questions)
    index = engine.index
    compared = min(count, exact_count)
    for name in ("exact", "ann"):
        if name == chosen:
            result[name] = {**stats, "rows": rows[:compared]}
            continue
        # The same lexicon (with the corpus's abbreviations) as the engine's own retriever.
        lexicon = engine.retriever.lexical.lexicon
        engine.retriever = HybridRetriever(index, source=name, lexicon=lexicon)
        other_rows, other_stats = _run(engine, questions[:compared])
        result[name] = {**other_stats, "rows": other_rows, "questions": compared}
    result["agreement"] = _agreement(result["ann"].pop("rows"), result["exact"].pop("rows"))
    result["agreement"]["questions"] = compared
    return result


def measure_in_subprocess(index_dir: Path, args: argparse.Namespace) -> dict[str, Any]:
    command = [sys.executable, __file__, "--measure", str(index_dir)]
    command += ["--question-file", str(args.question_file), "--questions", str(args.questions)]
    command += ["--exact-questions", str(args.exact_questions or args.questions)]
    # One question encoder for every size: a build picks int8 only when its agreement check
    # passes on that corpus, and the encoder is most of a question's time.
    env = {**os.environ, "CARQA_QUERY_PRECISION": args.precision}
    done = subprocess.run(command, check=True, capture_output=True, text=True, env=env)
    return json.loads(done.stdout.strip().splitlines()[-1])


# -- report ----------------------------------------------------------------------------------


def plot(results: list[dict[str, Any]], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    papers = [r["papers"] for r in results]
    fig, ax = plt.subplots(figsize=(7, 4))
    for key, label, style in (
        ("cpu_p50_ms", "ask p50 (chosen path)", "o-"),
        ("cpu_p95_ms", "ask p95 (chosen path)", "o--"),
    ):
        ax.plot(papers, [r["measure"][key] for r in results], style, label=label)
    for source, style in (("exact", "s:"), ("ann", "^:")):
        values = [r["measure"][source]["cpu_p50_ms"] for r in results]
        ax.plot(papers, values, style, label=f"ask p50, {source} candidates forced")
    ax.set_xscale("log")
    ax.set_xlabel("papers in the index")
    ax.set_ylabel("CPU ms per question")
    ax.set_ylim(bottom=0)
    ax.set_title("Answer cost vs corpus size (BioASQ replicated)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return path


def run(args: argparse.Namespace) -> dict[str, Any]:
    args.work.mkdir(parents=True, exist_ok=True)
    results: list[dict[str, Any]] = []
    earlier: dict[int, dict[str, Any]] = {}
    if args.out is not None and args.out.is_file():
        for entry in json.loads(args.out.read_text()).get("sizes", []):
            earlier[int(entry["papers"])] = entry["build"]
    for size in args.sizes:
        corpus = args.work / f"corpus-{size}.jsonl"
        if args.measure_only and size in earlier:
            papers = size
        else:
            papers = write_corpus(args.corpus, size, corpus)
        index_dir = args.work / f"index-{size}"
        if args.measure_only and size in earlier:
            built = earlier[size]
        else:
            print(f"[scale] {size} papers: building {index_dir}", file=sys.stderr, flush=True)
            built = build(corpus, index_dir, args.cache, earlier.get(size))
        print(f"[scale] {size} papers: built in {built['build_seconds']} s", file=sys.stderr)
        measured = measure_in_subprocess(index_dir, args)
        results.append({"papers": papers, "build": built, "measure": measured})
        if args.out is not None:
            args.out.write_text(json.dumps({"sizes": results}, indent=2) + "\n")
    report: dict[str, Any] = {"sizes": results, "machine": machine_info()}
    if len(results) > 1:
        by_size = sorted(results, key=lambda result: result["papers"])  # any --sizes order
        small, large = by_size[0]["measure"], by_size[-1]["measure"]
        report["ratios_largest_vs_smallest"] = {
            "p50": round(large["ask_p50_ms"] / small["ask_p50_ms"], 2),
            "p95": round(large["ask_p95_ms"] / small["ask_p95_ms"], 2),
        }
    if args.plot is not None:
        report["plot"] = str(plot(results, args.plot))
    if args.out is not None:
        args.out.write_text(json.dumps(report, indent=2) + "\n")
    return report


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.measure is not None:
        exact = args.exact_questions or args.questions
        print(json.dumps(measure(args.measure, args.question_file, args.questions, exact)))
        return
    report = run(args)
    if args.json:
        print(json.dumps(report))
    else:
        for entry in report["sizes"]:
            m = entry["measure"]
            print(
                f"{entry['papers']:>9} papers: ask p50 {m['ask_p50_ms']} ms, p95 "
                f"{m['ask_p95_ms']} ms ({m['source']}), RSS "
                f"{m['rss_mib']['after_questions'].get('VmRSS', 0):.0f} MiB, agreement "
                f"{m['agreement']}"
            )


if __name__ == "__main__":
    run_script(main)
