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

Question files: PubMedQA's (``pmid`` = the source paper) or BioASQ's (``pmids`` = the relevant
papers; the first one the index holds counts as the source, so recall@k reads "that paper is in
the top k").

``--recall-only``: instead, the recall of Milvus's approximate dense index types against exact
(FLAT) search of the paper centroids, for the questions' vectors (what docs/scale.md reports for
choosing an index at 36M papers), plus Milvus Lite's bytes per paper.
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


def compare(engines: dict[str, Any], questions: list[Any]) -> dict[str, Any]:
    from carqa.qa.eval import evaluate

    results: dict[str, list[dict[str, Any]]] = {name: [] for name in engines}
    names = list(engines)
    for number, begin in enumerate(range(0, len(questions), BLOCK)):
        block = questions[begin : begin + BLOCK]
        order = names if number % 2 == 0 else names[::-1]
        for name in order:
            for item in block:
                results[name].append(evaluate(engines[name], [item]))
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


def recall_of_index_types(index: Any, questions: list[Any], uri: str) -> dict[str, Any]:
    """Recall@30 of each approximate dense index against FLAT, on the paper centroids."""
    import numpy as np
    from carqa.index.search import milvus
    from carqa.qa.engine import Engine

    engine = Engine(index)
    retriever = engine.retriever
    docs = retriever._paper_docs()
    vectors = np.stack(
        [retriever.encode(retriever.lexical.dense_query(q.question)) for q in questions]
    )
    client = milvus.connect(uri)
    found: dict[str, list[set[str]]] = {}
    out: dict[str, Any] = {}
    for kind in milvus.DENSE_INDEXES:
        name = f"recall_{kind}"
        if client.has_collection(name):
            client.drop_collection(name)
        started = time.perf_counter()
        milvus.write_collection(client, name, docs, dense_index=kind)
        written = time.perf_counter() - started
        params = milvus.DENSE_INDEXES[kind][2]
        started = time.perf_counter()
        hits = client.search(
            name,
            data=vectors.tolist(),
            anns_field="centroid",
            limit=30,
            output_fields=["pmid"],
            search_params={"metric_type": "IP", "params": params},
        )
        took = (time.perf_counter() - started) / len(vectors) * 1000
        found[kind] = [{h["pmid"] for h in row} for row in hits]
        out[kind] = {"write_s": round(written, 1), "search_ms_per_query": round(took, 2)}
        client.drop_collection(name)
    # IVF_PQ (Milvus Lite lacks it; a Milvus server builds it with the same FAISS algorithm):
    # 48 sub-quantisers of 8 bits, 48 bytes per vector, the lists and nprobe of IVF_SQ8 above.
    import faiss

    matrix = np.ascontiguousarray(docs.centroids, dtype=np.float32)
    nlist = milvus.DENSE_INDEXES["ivf_sq8"][1]["nlist"]
    pq = faiss.index_factory(matrix.shape[1], f"IVF{nlist},PQ48", faiss.METRIC_INNER_PRODUCT)
    started = time.perf_counter()
    pq.train(matrix)
    pq.add(matrix)
    written = time.perf_counter() - started
    faiss.extract_index_ivf(pq).nprobe = milvus.DENSE_INDEXES["ivf_sq8"][2]["nprobe"]
    started = time.perf_counter()
    _, ids = pq.search(np.ascontiguousarray(vectors, dtype=np.float32), 30)
    took = (time.perf_counter() - started) / len(vectors) * 1000
    found["ivf_pq48_faiss"] = [{docs.pmids[i] for i in row if i >= 0} for row in ids]
    out["ivf_pq48_faiss"] = {"write_s": round(written, 1), "search_ms_per_query": round(took, 2)}
    for kind, sets in found.items():
        out[kind]["recall@30"] = round(
            float(np.mean([len(s & t) / 30 for s, t in zip(sets, found["flat"], strict=True)])),
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

    scratch = Path(tempfile.mkdtemp(prefix="carqa-bench-milvus-"))
    uri = args.milvus_uri or str(scratch / "milvus.db")
    try:
        index = Index.open(args.index_dir)
        questions = load(args.questions, index.papers, args.limit)
        report: dict[str, Any] = {
            "index_dir": str(args.index_dir),
            "papers": len(index.papers),
            "questions": str(args.questions),
            "n": len(questions),
        }
        if args.recall_only:
            report["index_types"] = recall_of_index_types(index, questions, uri)
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
            report |= compare({"embedded": embedded, "milvus": served}, questions)
        print(json.dumps(report, indent=None if args.json else 2))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
