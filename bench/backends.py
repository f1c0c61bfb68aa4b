"""The embedded backend and Milvus (Lite) answering the same questions over the same build.

Usage (from the repository root, with the ``[scale]`` extra installed)::

    .venv/bin/python bench/backends.py --index-dir IDX --questions QUESTIONS.jsonl --json
    .venv/bin/python bench/backends.py --index-dir IDX --questions Q.jsonl --recall-only

One index is opened once; two engines share it: the embedded one (FAISS + bm25s in process) and
one whose candidate step is a Milvus collection (``--milvus-uri``, default a temporary Milvus
Lite file; the collection is written from the build first, timed). Questions are asked in blocks
of 25, each block by one engine and then the other, alternating which goes first, so load from
other processes hits both alike. Each question is measured with ``carqa.qa.eval.evaluate`` (the
measures of ``carqa eval``), and the per-question results are averaged.

Question files: PubMedQA's (``pmid`` = the source paper: the measures of
``carqa.qa.eval.evaluate``) or BioASQ's (``pmids``, ``type``, ``snippets``...: every measure
``carqa eval`` reports for such a file, :mod:`carqa.qa.eval_topical`, overall and by question
type). ``questions_with_other_answer`` counts the questions whose ranked papers, citations,
answer text or abstention differ at all between the engines.

``--recall-only``: instead, the recall@30 of the approximate dense indexes ``CARQA_MILVUS_INDEX``
offers (and IVF_PQ) against exact search of the paper centroids, for the questions' vectors, with
their bytes per vector (what docs/scale.md reports for choosing an index at 36M papers).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # for bench._common

import bench._common  # noqa: F401  (offline model, repository on sys.path)

BLOCK = 25
MEASURES = (
    "recall@1",
    "recall@5",
    "recall@10",
    "mrr",
    "conclusion@1",
    "conclusion@3",
    "abstain_rate_answerable",
    "abstain_rate_unanswerable",
)


def load(path: Path, papers: Any, limit: int | None) -> list[Any]:
    """EvalQuestions from a PubMedQA- or BioASQ-shaped file (see the module doc)."""
    from carqa.qa.eval import EvalQuestion

    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        record = json.loads(line)
        pmid = record.get("pmid")
        if pmid is None and record.get("pmids"):
            pmid = next((p for p in record["pmids"] if p in papers), None)
        out.append(
            EvalQuestion(
                question=record["question"],
                pmid=str(pmid) if pmid else None,
                conclusion=record.get("conclusion"),
            )
        )
    return out[:limit] if limit else out


def _in_blocks(engines: dict[str, Any], questions: list[Any], ask: Any) -> dict[str, list[Any]]:
    """``ask(engine, question)`` of every question by every engine, in alternating blocks."""
    results: dict[str, list[Any]] = {name: [] for name in engines}
    names = list(engines)
    for number, begin in enumerate(range(0, len(questions), BLOCK)):
        block = questions[begin : begin + BLOCK]
        order = names if number % 2 == 0 else names[::-1]
        for name in order:
            for item in block:
                results[name].append(ask(engines[name], item))
        done = min(len(questions), begin + BLOCK)
        print(f"{done}/{len(questions)} questions", file=sys.stderr, flush=True)
    return results


def compare_topical(engines: dict[str, Any], questions: list[Any]) -> dict[str, Any]:
    """BioASQ-format questions: every measure of ``carqa eval`` on them
    (:mod:`carqa.qa.eval_topical`), per engine, and how many answers differ at all."""
    from carqa.qa import eval_topical as topical

    answers = _in_blocks(engines, questions, topical.answer_question)
    report: dict[str, Any] = {name: topical.score(questions, got) for name, got in answers.items()}
    first, second = answers.values()
    report["questions_with_other_answer"] = sum(
        (a.ranked, a.cited, a.text, a.abstained) != (b.ranked, b.cited, b.text, b.abstained)
        for a, b in zip(first, second, strict=True)
    )
    return report


def compare(engines: dict[str, Any], questions: list[Any]) -> dict[str, Any]:
    from carqa.qa.eval import evaluate

    results = _in_blocks(engines, questions, lambda engine, item: evaluate(engine, [item]))
    return {name: summarise(rows) for name, rows in results.items()} | {
        "questions_with_other_rank": sum(
            a["mrr"] != b["mrr"] or a["abstain_rate_answerable"] != b["abstain_rate_answerable"]
            for a, b in zip(*results.values(), strict=True)
        )
    }


def summarise(rows: list[dict[str, Any]]) -> dict[str, Any]:
    import numpy as np

    out: dict[str, Any] = {"n": len(rows)}
    for measure in MEASURES:
        values = [r[measure] for r in rows if r[measure] is not None]
        out[measure] = round(float(np.mean(values)), 4) if values else None
    latencies = [r["latency_ms_p50"] for r in rows]
    out["latency_ms_p50"] = round(float(np.percentile(latencies, 50)), 1)
    out["latency_ms_p95"] = round(float(np.percentile(latencies, 95)), 1)
    return out


def recall_of_index_types(index: Any, questions: list[Any]) -> dict[str, Any]:
    """Recall@30 of approximate indexes of the paper centroids against exact search, with the
    parameters ``CARQA_MILVUS_INDEX`` uses. Built with FAISS directly: Milvus Lite's HNSW,
    IVF_FLAT and IVF_SQ8 are FAISS indexes themselves (``milvus_lite/index/faiss_*.py``), and a
    Milvus server's IVF family is FAISS too (Knowhere); IVF_PQ is what Lite lacks."""
    import faiss
    import numpy as np
    from carqa.index.search import milvus
    from carqa.qa.engine import Engine

    faiss.omp_set_num_threads(1)  # OpenMP's spinning threads crawl on a shared, loaded machine
    retriever = Engine(index).retriever
    matrix = np.ascontiguousarray(retriever._paper_docs().centroids, dtype=np.float32)
    queries = np.ascontiguousarray(
        np.stack([retriever.encode(retriever.lexical.dense_query(q.question)) for q in questions]),
        dtype=np.float32,
    )
    dim = matrix.shape[1]
    hnsw_build, hnsw_search = milvus.DENSE_INDEXES["hnsw"][1:]
    nlist = milvus.DENSE_INDEXES["ivf_sq8"][1]["nlist"]
    nprobe = milvus.DENSE_INDEXES["ivf_sq8"][2]["nprobe"]
    factories = {
        "flat": "Flat",
        "hnsw": f"HNSW{hnsw_build['M']}",
        "ivf_flat": f"IVF{nlist},Flat",
        "ivf_sq8": f"IVF{nlist},SQ8",
        "ivf_pq48": f"IVF{nlist},PQ48x4",
    }
    found: dict[str, np.ndarray] = {}
    out: dict[str, Any] = {"queries": len(queries), "papers": len(matrix)}
    for kind, factory in factories.items():
        started = time.perf_counter()
        ann = faiss.index_factory(dim, factory, faiss.METRIC_INNER_PRODUCT)
        if kind == "hnsw":
            ann.hnsw.efConstruction = hnsw_build["efConstruction"]
        ann.train(matrix)
        ann.add(matrix)
        built = time.perf_counter() - started
        if kind == "hnsw":
            ann.hnsw.efSearch = hnsw_search["ef"]
        elif kind != "flat":
            faiss.extract_index_ivf(ann).nprobe = nprobe
        started = time.perf_counter()
        _, ids = ann.search(queries, 30)
        took = (time.perf_counter() - started) / len(queries) * 1000
        found[kind] = ids
        out[kind] = {
            "factory": factory,
            "build_s": round(built, 1),
            "search_ms_per_query": round(took, 3),
            "bytes_per_vector": round(faiss.serialize_index(ann).nbytes / len(matrix)),
        }
    for kind, ids in found.items():
        out[kind]["recall@30"] = round(
            float(
                np.mean(
                    [len(set(a) & set(b)) / 30 for a, b in zip(ids, found["flat"], strict=True)]
                )
            ),
            4,
        )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--index-dir", type=Path, required=True)
    parser.add_argument("--questions", type=Path, required=True)
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--milvus-uri", default=None)
    parser.add_argument("--recall-only", action="store_true")
    parser.add_argument("--milvus-index", default="flat", help="CARQA_MILVUS_INDEX to compare")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    from carqa.index.search import milvus
    from carqa.index.search.backends import MilvusBackend
    from carqa.index.search.reader import Index
    from carqa.qa.engine import Engine
    from carqa.qa.eval_topical import is_topical_file, load_topical

    scratch = Path(tempfile.mkdtemp(prefix="carqa-bench-milvus-"))
    uri = args.milvus_uri or str(scratch / "milvus.db")
    try:
        index = Index.open(args.index_dir)
        questions = load(args.questions, index.papers, args.limit)
        topical = None
        if is_topical_file(args.questions) and not args.recall_only:
            topical = load_topical(args.questions)[: args.limit or None]
        report: dict[str, Any] = {
            "index_dir": str(args.index_dir),
            "papers": len(index.papers),
            "questions": str(args.questions),
            "n": len(questions),
        }
        if args.recall_only:
            report["index_types"] = recall_of_index_types(index, questions)
        else:
            backend = MilvusBackend(
                uri=uri,
                collection=milvus.collection_name(index.manifest) + f"_{args.milvus_index}",
                dense_index=args.milvus_index,
            )
            report["milvus_index"] = args.milvus_index
            embedded = Engine(index)
            started = time.perf_counter()
            served = Engine(index, backend=backend)
            report["milvus_open_s"] = round(time.perf_counter() - started, 1)
            if "://" not in uri:
                size = sum(p.stat().st_size for p in Path(uri).rglob("*") if p.is_file())
                size = size or Path(uri).stat().st_size
                report["milvus_lite_bytes_per_paper"] = round(size / len(index.papers))
            for engine in (embedded, served):
                engine.warm_up()
            engines = {"embedded": embedded, "milvus": served}
            if topical is not None:
                report |= compare_topical(engines, topical)
            else:
                report |= compare(engines, questions)
        print(json.dumps(report, indent=None if args.json else 2))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
