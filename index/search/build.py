"""Build the search index from the corpus store and publish it atomically.

Steps: chunk every paper (sections → sentences → chunks, :mod:`carqa.index.search.chunking`),
embed the chunk and sentence texts that are not in the embedding cache yet
(:mod:`carqa.index.search.embedder`), build the FAISS indexes
(:mod:`carqa.index.search.vectors`), write ``meta.sqlite`` (:mod:`carqa.index.search.meta`),
the ONNX query encoder and ``manifest.json`` into ``<index_dir>/builds/.tmp-<id>``, rename
that to ``builds/<id>`` and point the ``current`` symlink at it
(:mod:`carqa.index.search.layout`).

Why this way: a kill at any moment leaves ``current`` pointing at the previous, complete build
(the temporary folder is cleaned up by the next build); vectors already computed are kept in
the cache, so the next build resumes. The previous build is kept for rollback; older ones are
removed. A build lock (``flock`` on ``<index_dir>/build.lock``, released by the OS even after a
kill) stops two builds from racing.
"""

from __future__ import annotations

import os
import secrets
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from carqa.index.corpus.store import CorpusStore
from carqa.index.search import paper_vectors
from carqa.index.search import vectors as vector_index
from carqa.index.search.chunking import ChunkSettings, chunk_paper
from carqa.index.search.embedder import Embedder, check_int8, export_root
from carqa.index.search.embedding import ModelSpec, resolve_model
from carqa.index.search.layout import (
    BUILDS_DIR,
    CACHE_DIR,
    CHUNKS_FAISS,
    EMBEDDING_CACHE,
    META_FILE,
    ONNX_DIR,
    REQUIRED_FILES,
    SENTENCES_NPY,
    TMP_PREFIX,
    build_lock,
    check_current,
    current_build,
    fsync_dir,
    link_or_copy,
    prune,
    swap_current,
)
from carqa.index.search.manifest import (
    FORMAT_VERSION,
    build_key,
    file_entries,
    read_manifest,
    verify_files,
    write_manifest,
)
from carqa.index.search.meta import Rows, write_meta
from carqa.index.search.postings import LEXICAL_SETTINGS, PostingsBuilder
from carqa.index.search.terms import tokenize

from carqa.errors import CarqaError
from carqa.progress import ProgressCallback, no_progress, step
from carqa.settings import Settings


@dataclass
class BuildReport:
    """What a build did. ``up_to_date`` means nothing changed and nothing was written."""

    index_dir: str
    build_id: str
    up_to_date: bool
    model: str
    model_id: str
    papers: int
    chunks: int
    sentences: int
    texts_embedded: int
    texts_cached: int
    embed_backend: str
    query_encoder: str
    vector_index: str
    seconds: float
    timings: dict[str, float] = field(default_factory=dict)
    query_precision: str = "fp32"
    removed_builds: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def summary(self) -> str:
        if self.up_to_date:
            return (
                f"Index up to date ({self.papers} papers, {self.chunks} chunks, "
                f"{self.sentences} sentences; build {self.build_id}), {self.seconds:.1f} s."
            )
        return (
            f"Built index {self.build_id}: {self.papers} papers, {self.chunks} chunks, "
            f"{self.sentences} sentences; embedded {self.texts_embedded} texts "
            f"({self.texts_cached} from cache, {self.embed_backend}) in {self.seconds:.1f} s."
        )


# -- the build ------------------------------------------------------------------------------


def build_index(
    store: CorpusStore,
    index_dir: Path,
    *,
    model: str = "default",
    on_progress: ProgressCallback | None = None,
    chunk_settings: ChunkSettings | None = None,
    vector_settings: vector_index.VectorSettings | None = None,
    embed_backend: str | None = None,
    on_stage: Callable[[str], None] | None = None,
    runner: str = "in-process",
) -> BuildReport:
    """Build the index of ``store``'s corpus into ``index_dir`` and publish it (see module doc).

        Returns quickly with ``up_to_date=True`` when the current build already has this corpus,
        model and settings. ``on_progress`` is told how each step advances (the CLI draws it);
    ``on_stage`` is called with each stage's name (tests use it). ``runner="ray"``: chunking
    and embedding run as Ray Data stages (:mod:`carqa.index.search.ray_build`, inside a Ray
    session), with the same result.
    """
    started = time.perf_counter()
    index_dir = Path(index_dir).expanduser()
    (index_dir / BUILDS_DIR).mkdir(parents=True, exist_ok=True)
    chunk_settings = chunk_settings or ChunkSettings.from_env()
    vector_settings = vector_settings or vector_index.VectorSettings.from_env()
    settings = Settings.load()
    backend_choice = (embed_backend or settings.embed_backend or "auto").lower()
    query_precision = settings.query_precision
    stage = on_stage or (lambda name: None)
    timings: dict[str, float] = {}

    with build_lock(index_dir):
        check_current(index_dir)
        stage("resolve")
        spec = resolve_model(model)
        corpus_hash = store.content_hash()
        wanted = {
            "format_version": FORMAT_VERSION,
            "model_id": spec.model_id,
            "chunking": chunk_settings.as_dict(),
            "vectors": vector_settings.as_dict(),
            "corpus_hash": corpus_hash,
            "query_precision": query_precision,
            "lexical": LEXICAL_SETTINGS,
        }
        up_to_date = _up_to_date(index_dir, wanted)
        if up_to_date is not None:
            return _report_up_to_date(index_dir, up_to_date, spec, started)

        progress = on_progress or no_progress
        stage("chunk")
        t = time.perf_counter()
        pieces_of, embedder_class = _runner_steps(runner, store, chunk_settings)
        postings = PostingsBuilder()
        with step(progress, "Chunking"):
            rows = _chunk_corpus(store, chunk_settings, pieces_of, postings)
        timings["chunk"] = time.perf_counter() - t

        stage("embed")
        t = time.perf_counter()
        cache_path = index_dir / CACHE_DIR / EMBEDDING_CACHE
        embedder = embedder_class(spec, export_root(settings, index_dir), backend_choice)
        texts = rows.texts_to_embed(chunk_settings)
        vectors, embedded, cached = embedder.embed(texts, cache_path, progress)
        timings["embed"] = time.perf_counter() - t
        n_chunks = len(rows.chunks)
        sentence_vectors = vectors[: len(rows.sentence_texts)]
        chunk_vectors = rows.chunk_vectors(chunk_settings, texts, vectors)

        stage("query-encoder")
        t = time.perf_counter()
        with step(progress, "Query encoder"):
            onnx_folder = embedder.onnx_folder(sample=texts[:16])
            int8_check = None
            if onnx_folder is not None and query_precision != "fp32":
                int8_check = check_int8(
                    onnx_folder,
                    [title for title in rows.chunk_titles if title],
                    rows.sentence_texts,
                    sentence_vectors,
                )
        timings["query_encoder"] = time.perf_counter() - t
        use_int8 = int8_check is not None and (int8_check["passed"] or query_precision == "int8")

        stage("write")
        t = time.perf_counter()
        build_id = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ") + "-" + secrets.token_hex(3)
        tmp = index_dir / BUILDS_DIR / f"{TMP_PREFIX}{build_id}"
        tmp.mkdir()
        progress("Publishing the index", 0, 1)
        try:
            kinds, lexical = _write_build(
                tmp,
                rows=rows,
                postings=postings,
                chunk_vectors=chunk_vectors,
                sentence_vectors=sentence_vectors,
                vector_settings=vector_settings,
                onnx_folder=onnx_folder,
                int8=use_int8,
            )
            stage("manifest")
            files = sorted(str(p.relative_to(tmp)) for p in tmp.rglob("*") if p.is_file())
            manifest = {
                "format_version": FORMAT_VERSION,
                "build_id": build_id,
                "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
                "model": {**spec.as_dict(), "dim": embedder.dim},
                "chunking": chunk_settings.as_dict(),
                "vectors": {"settings": vector_settings.as_dict(), **kinds},
                "lexical": {"settings": LEXICAL_SETTINGS, **lexical},
                "corpus": {
                    "content_hash": corpus_hash,
                    "seed_pmid": store.seed_pmid(),
                    "source": store.source() if hasattr(store, "source") else "",
                },
                "counts": {
                    "papers": len(rows.papers),
                    "with_abstract": sum(1 for p in rows.papers if p[-1]),
                    "sections": len(rows.sections),
                    "chunks": n_chunks,
                    "sentences": len(rows.sentence_texts),
                    "texts_embedded": embedded,
                    "texts_cached": cached,
                },
                "query_encoder": ONNX_DIR if onnx_folder else "torch",
                "query_precision": "int8" if use_int8 else "fp32",
                "query_precision_setting": query_precision,
                "int8_check": int8_check,
                "embed_backend": embedder.backend_used,
                "runner": runner,
                "build_seconds": round(time.perf_counter() - started, 3),
                "files": file_entries(tmp, files),
            }
            write_manifest(tmp, manifest)
            fsync_dir(tmp)
            stage("publish")
            final = index_dir / BUILDS_DIR / build_id
            os.rename(tmp, final)
            fsync_dir(index_dir / BUILDS_DIR)
            previous = current_build(index_dir)
            swap_current(index_dir, final)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        removed = prune(index_dir, keep={final, *([previous] if previous else [])})
        progress("Publishing the index", 1, 1)
        timings["write"] = time.perf_counter() - t
        stage("done")

    return BuildReport(
        index_dir=str(index_dir),
        build_id=build_id,
        up_to_date=False,
        model=spec.name,
        model_id=spec.model_id,
        papers=len(rows.papers),
        chunks=n_chunks,
        sentences=len(rows.sentence_texts),
        texts_embedded=embedded,
        texts_cached=cached,
        embed_backend=embedder.backend_used,
        query_encoder="onnx" if onnx_folder else "torch",
        vector_index=kinds["chunks"]["kind"],
        query_precision="int8" if use_int8 else "fp32",
        seconds=round(time.perf_counter() - started, 3),
        timings={k: round(v, 3) for k, v in timings.items()},
        removed_builds=removed,
    )


def _up_to_date(index_dir: Path, wanted: dict[str, Any]) -> dict[str, Any] | None:
    """The current build's manifest if it was built from exactly ``wanted`` and passes the
    checks ``Index.open`` makes of it: a valid manifest, every file with its recorded size and
    sha256.

    Why the checksums too (~1 s for a 150 MB build with its ONNX models): a build that
    ``Index.open`` refuses tells the user to run ``carqa build``; if that only compared sizes, a
    damaged file of the same size (a flipped bit) would be reported "up to date" and the index
    stay unusable however often the user followed the hint."""
    folder = current_build(index_dir)
    if folder is None:
        return None
    try:
        manifest = read_manifest(folder, rebuild_hint="", required_files=REQUIRED_FILES)
        if build_key(manifest) != wanted:
            return None
        verify_files(folder, manifest, rebuild_hint="")
    except CarqaError:
        return None
    return manifest


def _report_up_to_date(
    index_dir: Path, manifest: dict[str, Any], spec: ModelSpec, started: float
) -> BuildReport:
    counts = manifest["counts"]
    vectors = manifest.get("vectors", {})
    return BuildReport(
        index_dir=str(index_dir),
        build_id=str(manifest.get("build_id")),
        up_to_date=True,
        model=spec.name,
        model_id=spec.model_id,
        papers=int(counts.get("papers", 0)),
        chunks=int(counts.get("chunks", 0)),
        sentences=int(counts.get("sentences", 0)),
        texts_embedded=0,
        texts_cached=0,
        embed_backend="none",
        query_encoder="onnx" if manifest.get("query_encoder") == ONNX_DIR else "torch",
        vector_index=str(vectors.get("chunks", {}).get("kind", "")),
        query_precision=str(manifest.get("query_precision", "fp32")),
        seconds=round(time.perf_counter() - started, 3),
    )


def _runner_steps(runner: str, store: CorpusStore, settings: ChunkSettings) -> tuple[Any, Any]:
    """(chunk one paper, the embedder class) of ``runner``: in-process, or Ray Data's."""
    if runner == "ray":
        from carqa.index.search import ray_build

        return ray_build.RayChunker(store, settings), ray_build.ray_embedder_class()
    return chunk_paper, Embedder


def _chunk_corpus(
    store: CorpusStore,
    settings: ChunkSettings,
    pieces_of: Callable[..., Any] = chunk_paper,
    postings: PostingsBuilder | None = None,
) -> Rows:
    """Chunk every paper into ``rows``; ``postings`` gets each paper's BM25 terms (its title,
    sentences and MeSH headings, as retrieval reads a paper)."""
    seed = store.seed_pmid()
    cited = store.cited_pmids()
    rows = Rows()
    for paper in store.papers():
        pieces = pieces_of(paper, settings)
        rows.add_paper(paper, is_seed=paper.pmid == seed, cited_by_seed=paper.pmid in cited)
        chunk_base = len(rows.chunks)
        sentence_base = len(rows.sentences)
        for chunk in pieces.chunks:
            rows.chunks.append(
                (
                    len(rows.chunks),
                    chunk.pmid,
                    chunk.section_position,
                    chunk.section_label,
                    chunk.section_category,
                    chunk.text,
                    sentence_base + chunk.sentence_start,
                    sentence_base + chunk.sentence_end,
                )
            )
            rows.chunk_texts.append(chunk.embed_text)
            rows.chunk_titles.append((paper.title or "").strip() or None)
        for sentence in pieces.sentences:
            rows.sentences.append(
                (
                    len(rows.sentences),
                    sentence.pmid,
                    sentence.section_position,
                    sentence.section_label,
                    sentence.section_category,
                    sentence.position,
                    sentence.count,
                    sentence.text,
                    sentence.char_start,
                    sentence.char_end,
                    chunk_base + sentence.chunk,
                )
            )
            rows.sentence_texts.append(sentence.text)
        if postings is not None:
            text = " ".join(
                [
                    (paper.title or "").strip(),
                    *(sentence.text for sentence in pieces.sentences),
                    " ; ".join(paper.mesh or []),
                ]
            )
            postings.add(paper.pmid, tokenize(text))
    return rows


def _write_build(
    folder: Path,
    *,
    rows: Rows,
    postings: PostingsBuilder,
    chunk_vectors: np.ndarray,
    sentence_vectors: np.ndarray,
    vector_settings: vector_index.VectorSettings,
    onnx_folder: Path | None,
    int8: bool = False,
) -> dict[str, Any]:
    """Write meta.sqlite, the BM25 postings, the chunk FAISS index, the sentence and paper
    vectors and the ONNX encoder into ``folder``. Returns (the vector index kinds, the postings'
    manifest entry).

    No sentence FAISS index: answering reads ``sentences.npy`` (memory-mapped, exact), and a
    flat FAISS copy of it would double the largest file of a big build; a reader that wants to
    search all sentences makes one from the matrix."""
    write_meta(folder / META_FILE, rows)
    lexical = postings.write(folder)
    index = vector_index.build_index(chunk_vectors, settings=vector_settings)
    vector_index.write(index, folder / CHUNKS_FAISS)
    kinds: dict[str, Any] = {
        "chunks": {"kind": vector_index.kind_of(index), "count": int(index.ntotal)},
        "sentences": {"kind": "npy", "count": len(sentence_vectors)},
    }
    del index
    np.save(folder / SENTENCES_NPY, np.ascontiguousarray(sentence_vectors, np.float32))
    kinds["papers"] = paper_vectors.write(
        folder,
        paper_vectors.from_build_rows(
            [row[0] for row in rows.papers],
            [row[1] for row in rows.sentences],
            sentence_vectors,
            rows.chunks,
            chunk_vectors,
        ),
    )
    if onnx_folder is not None:
        from carqa.index.search.onnx_encoder import FILES, INT8_MODEL_FILE

        (folder / ONNX_DIR).mkdir()
        for name in (*FILES, *([INT8_MODEL_FILE] if int8 else [])):
            link_or_copy(onnx_folder / name, folder / ONNX_DIR / name)
    return kinds, lexical
