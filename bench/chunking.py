"""Choose chunk size/overlap by measurement: paper retrieval on the PubMedQA dev questions.

Not a unit test. Embeds every sentence of ``corpus.jsonl`` once (cached in
``--cache-dir``/embeddings.sqlite, so re-runs are fast) and the 500 dev questions, then reports
paper recall@1/@5 and MRR for:

* ``sentence-max``: a paper's score is its best sentence's cosine;
* ``derived-<size>/<overlap>``: chunks of whole sentences (``carqa.index.search.chunking``),
  each chunk's vector the normalised mean of its sentence vectors (what
  ``carqa.index.search.build`` stores);
* ``embedded-<size>/<overlap>`` (``--embed-chunks SIZE/OVERLAP``, repeatable): the chunk *texts*
  embedded by the model, to measure what deriving costs.

Prints JSON and a one-line summary.

    .venv/bin/python bench/chunking.py [--data ../shared/data/pubmedqa]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from carqa.index.corpus.sources import load_sources
from carqa.index.search.chunking import ChunkSettings, chunk_paper
from carqa.index.search.embedding import normalise, resolve_model
from carqa.index.search.embedding_cache import EmbeddingCache

from bench._common import require_files, run_script

SIZES = (200, 400, 600, 800, 1000, 1500, 100_000)
OVERLAPS = (0, 150)


def embed(texts: list[str], cache: EmbeddingCache, encoder_factory) -> np.ndarray:
    found = cache.get_many(texts)
    missing = sorted({t for i, t in enumerate(texts) if i not in found})
    if missing:
        encoder = encoder_factory()
        for begin in range(0, len(missing), 512):
            batch = missing[begin : begin + 512]
            cache.put(batch, encoder.encode(batch))
            print(f"  embedded {begin + len(batch)}/{len(missing)}", file=sys.stderr, flush=True)
        found = cache.get_many(texts)
    return np.stack([found[i] for i in range(len(texts))])


def paper_metrics(scores_by_paper: np.ndarray, gold: np.ndarray) -> dict[str, float]:
    """scores_by_paper: (questions, papers); gold: index of the right paper per question."""
    gold_scores = scores_by_paper[np.arange(len(gold)), gold]
    ranks = (scores_by_paper > gold_scores[:, None]).sum(axis=1)  # 0 = first
    return {
        "recall@1": round(float(np.mean(ranks < 1)), 4),
        "recall@5": round(float(np.mean(ranks < 5)), 4),
        "mrr": round(float(np.mean(1.0 / (ranks + 1))), 4),
    }


def max_by_paper(similarity: np.ndarray, owner: np.ndarray, n_papers: int) -> np.ndarray:
    out = np.full((similarity.shape[0], n_papers), -2.0, dtype=np.float32)
    for paper in range(n_papers):
        cols = owner == paper
        if cols.any():
            out[:, paper] = similarity[:, cols].max(axis=1)
    return out


def chunk_spec(text: str) -> tuple[int, int]:
    """argparse ``type`` of ``--embed-chunks``: ``SIZE/OVERLAP``, valid chunk settings
    (a typo was a ValueError only after every sentence had been embedded)."""
    try:
        size, overlap = (int(part) for part in text.split("/"))
        ChunkSettings(chunk_size=size, chunk_overlap=overlap)
    except ValueError as error:
        detail = str(error) if "chunk_overlap" in str(error) else "expected SIZE/OVERLAP"
        raise argparse.ArgumentTypeError(f"{text!r}: {detail}, e.g. 400/150") from None
    return size, overlap


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=Path("../shared/data/pubmedqa"))
    parser.add_argument("--cache-dir", type=Path, default=Path(".bench-cache"))
    parser.add_argument(
        "--embed-chunks", type=chunk_spec, action="append", default=[], metavar="SIZE/OVERLAP"
    )
    args = parser.parse_args(argv)
    require_files(
        parser,
        ("--data", args.data / "corpus.jsonl"),
        ("--data", args.data / "dev_questions.jsonl"),
    )
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)

    spec = resolve_model("default")
    encoder = None

    def encoder_factory():
        nonlocal encoder
        if encoder is None:
            from carqa.index.search.embedding import TorchEncoder
            from carqa.index.search.onnx_encoder import OnnxEncoder
            from carqa.index.search.onnx_export import prepare

            folder = prepare(spec, args.cache_dir / "onnx", lambda: TorchEncoder(spec))
            encoder = OnnxEncoder(folder) if folder else TorchEncoder(spec)
        return encoder

    papers = load_sources([args.data / "corpus.jsonl"]).papers
    position = {paper.pmid: i for i, paper in enumerate(papers)}
    questions = [json.loads(line) for line in (args.data / "dev_questions.jsonl").open()]
    questions = [q for q in questions if q["pmid"] in position]
    gold = np.array([position[q["pmid"]] for q in questions])

    started = time.perf_counter()
    with EmbeddingCache(args.cache_dir / "embeddings.sqlite", spec.model_id, spec.dim) as cache:
        base = [chunk_paper(paper, ChunkSettings(chunk_size=100_000)) for paper in papers]
        sentences = [s for pieces in base for s in pieces.sentences]
        sentence_owner = np.array([position[s.pmid] for s in sentences])
        sentence_vectors = embed([s.text for s in sentences], cache, encoder_factory)
        question_vectors = embed([q["question"] for q in questions], cache, encoder_factory)
        similarity = question_vectors @ sentence_vectors.T

        results: dict[str, dict[str, float]] = {}
        results["sentence-max"] = paper_metrics(
            max_by_paper(similarity, sentence_owner, len(papers)), gold
        )
        offsets = np.cumsum([0] + [len(p.sentences) for p in base])
        for size in SIZES:
            for overlap in OVERLAPS:
                settings = ChunkSettings(chunk_size=size, chunk_overlap=overlap)
                owners, vectors, count = [], [], 0
                for i, paper in enumerate(papers):
                    for chunk in chunk_paper(paper, settings).chunks:
                        rows = sentence_vectors[
                            offsets[i] + chunk.sentence_start : offsets[i] + chunk.sentence_end
                        ]
                        vectors.append(rows.mean(axis=0))
                        owners.append(i)
                        count += 1
                chunk_similarity = question_vectors @ normalise(np.stack(vectors)).T
                scores = max_by_paper(chunk_similarity, np.array(owners), len(papers))
                results[f"derived-{size}/{overlap}"] = {
                    **paper_metrics(scores, gold),
                    "chunks": count,
                }
        for size, overlap in args.embed_chunks:
            settings = ChunkSettings(chunk_size=size, chunk_overlap=overlap)
            texts, owners = [], []
            for i, paper in enumerate(papers):
                for chunk in chunk_paper(paper, settings).chunks:
                    texts.append(chunk.embed_text)
                    owners.append(i)
            chunk_similarity = question_vectors @ embed(texts, cache, encoder_factory).T
            scores = max_by_paper(chunk_similarity, np.array(owners), len(papers))
            results[f"embedded-{size}/{overlap}"] = {
                **paper_metrics(scores, gold),
                "chunks": len(texts),
            }

    best = max(
        (k for k in results if k.startswith("derived")), key=lambda k: results[k]["recall@1"]
    )
    print(
        json.dumps(
            {
                "questions": len(questions),
                "papers": len(papers),
                "sentences": len(sentences),
                "seconds": round(time.perf_counter() - started, 1),
                "results": results,
            },
            indent=2,
        )
    )
    print(
        f"summary: sentence-max recall@1 {results['sentence-max']['recall@1']}; best derived "
        f"chunking {best} recall@1 {results[best]['recall@1']} MRR {results[best]['mrr']}"
    )


if __name__ == "__main__":
    run_script(main)
