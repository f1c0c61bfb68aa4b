"""Build the search index from the corpus store and publish it atomically.

Steps: chunk every paper (sections → sentences → chunks, :mod:`carqa.index.search.chunking`), embed
chunk
and sentence texts that are not in the embedding cache yet
(:mod:`carqa.index.search.embedding_cache`),
build FAISS indexes (:mod:`carqa.index.search.vectors`), write ``meta.sqlite`` (papers, sections,
chunks,
sentences), the ONNX query encoder and ``manifest.json`` into ``<index_dir>/builds/.tmp-<id>``,
rename that to ``builds/<id>``, and point the ``current`` symlink at it with an atomic
``os.replace`` of a temporary symlink.

Why this way: a kill at any moment leaves ``current`` pointing at the previous, complete build
(the temporary folder is cleaned up by the next build); vectors already computed are kept in
the cache, so the next build resumes. The previous build is kept for rollback; older ones are
removed. A build lock (``flock`` on ``<index_dir>/build.lock``, released by the OS even after a
kill) stops two builds from racing.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import secrets
import shlex
import shutil
import sqlite3
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from carqa.index.corpus.store import CorpusStore
from carqa.index.search import paper_vectors
from carqa.index.search import vectors as vector_index
from carqa.index.search.chunking import ChunkSettings, chunk_paper
from carqa.index.search.embedding import Encoder, ModelSpec, TorchEncoder, normalise, resolve_model
from carqa.index.search.embedding_cache import EmbeddingCache
from carqa.index.search.manifest import (
    FORMAT_VERSION,
    build_key,
    file_entries,
    read_manifest,
    verify_files,
    write_manifest,
)

from carqa.errors import CarqaError
from carqa.settings import Settings

log = logging.getLogger(__name__)

BUILDS_DIR = "builds"
CURRENT_LINK = "current"
CACHE_DIR = "cache"
EMBEDDING_CACHE = "embeddings.sqlite"
LOCK_FILE = "build.lock"
META_FILE = "meta.sqlite"
CHUNKS_FAISS = "chunks.faiss"
SENTENCES_FAISS = "sentences.faiss"
SENTENCES_NPY = "sentences.npy"
ONNX_DIR = "onnx"
TMP_PREFIX = ".tmp-"
REQUIRED_FILES = (META_FILE, CHUNKS_FAISS, SENTENCES_FAISS)
"""Files every build has, so its manifest must list (and checksum) them."""
BATCH_SIZE = 16  # texts per forward pass; 16 beat 8, 32 and 64 here (docs/benchmarks.md)
CACHE_FLUSH = 512  # texts per committed cache write: a killed build loses at most this many

# ``CARQA_EMBED_BACKEND`` = auto | onnx | torch: how new texts are embedded at build time.
EMBED_BACKEND_ENV = "CARQA_EMBED_BACKEND"


class BuildBusy(CarqaError):
    """Another build holds the index directory's lock."""


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


# -- paths ----------------------------------------------------------------------------------


def current_build(index_dir: Path) -> Path | None:
    """The build ``<index_dir>/current`` points at, if it exists and is a published build
    (see :func:`current_problem`); None otherwise."""
    link = Path(index_dir) / CURRENT_LINK
    if not link.is_symlink() or current_problem(index_dir) is not None:
        return None
    target = link.resolve()
    return target if target.is_dir() else None


def current_problem(index_dir: Path) -> str | None:
    """Why ``<index_dir>/current`` is not a link carqa may follow (None when it is, or when
    there is none): it must be a symlink to a folder directly in ``<index_dir>/builds/``.

    Why: everything trusts ``current`` — ``Index.open`` serves what it leads to, a build
    compares it to decide "up to date" and keeps it from pruning. A link edited or restored
    to lead elsewhere (``../other-index/builds/x``, an absolute path, a nested folder) made
    carqa serve and vouch for files it never built or checksummed for this index; a build now
    ignores such a link and replaces it, and opening refuses it with the rebuild hint."""
    index_dir = Path(index_dir)
    link = index_dir / CURRENT_LINK
    if not link.is_symlink():
        if link.exists():
            return f"{link} is a {'folder' if link.is_dir() else 'file'}, not a link to a build"
        return None
    try:
        builds = (index_dir / BUILDS_DIR).resolve()
        target = link.resolve()
    except (OSError, RuntimeError) as error:  # a symlink loop (RuntimeError before 3.13)
        return f"{link} cannot be followed ({error})"
    if not target.is_relative_to(builds):
        return f"{link} points to {target}, outside {builds}"
    if target.parent != builds:
        return f"{link} points to {target}, not to a build folder directly in {builds}"
    return None


def _check_current(index_dir: Path) -> None:
    """Before a build: a ``current`` that is not ours to replace is an error; a link leading
    outside ``builds/`` is only a warning (the build replaces the link, never what it leads
    to, and neither compares with nor keeps that folder — see :func:`current_problem`)."""
    problem = current_problem(index_dir)
    if problem is None:
        return
    link = index_dir / CURRENT_LINK
    if not link.is_symlink():
        raise CarqaError(
            f"{problem}; a build would have to replace it.",
            hint=f"Move {shell_path(link)} out of the index folder (carqa does not delete "
            "what it did not make), then index the stored corpus: "
            f"`carqa build --index-only --index-dir {shell_path(index_dir)}`.",
        )
    log.warning("%s: not a build of this index; the new build replaces the link.", problem)


def shell_path(path: Path | str) -> str:
    """``path`` as a shell word: hints print commands to paste, and an index dir may hold
    spaces or brackets (``~/My Index``) that would otherwise split or glob."""
    return shlex.quote(str(path))


def rebuild_hint(index_dir: Path) -> str:
    where = shell_path(index_dir)
    return (
        f"Rebuild it: `carqa build --index-dir {where}` "
        f"(or `carqa build --index-dir {where} --from FILE` without PubMed access)."
    )


@contextlib.contextmanager
def build_lock(index_dir: Path) -> Iterator[None]:
    """An exclusive, non-blocking lock on the index directory for the duration of a build."""
    path = Path(index_dir) / LOCK_FILE
    with path.open("a+") as handle:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as error:
            raise BuildBusy(
                f"Another build is running in {index_dir}.",
                hint="Wait for it to finish (the lock is released when it exits).",
            ) from error
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


# -- the build ------------------------------------------------------------------------------


@dataclass
class _Rows:
    """Everything that goes into meta.sqlite, in id order."""

    papers: list[tuple[Any, ...]] = field(default_factory=list)
    sections: list[tuple[Any, ...]] = field(default_factory=list)
    chunks: list[tuple[Any, ...]] = field(default_factory=list)
    sentences: list[tuple[Any, ...]] = field(default_factory=list)
    chunk_texts: list[str] = field(default_factory=list)  # title + text, by chunk id
    chunk_titles: list[str | None] = field(default_factory=list)  # the paper's title
    sentence_texts: list[str] = field(default_factory=list)

    def texts_to_embed(self, settings: ChunkSettings) -> list[str]:
        """Sentences, then either the chunk texts or the (distinct) titles."""
        if settings.chunk_vectors == "embedded":
            return self.sentence_texts + self.chunk_texts
        titles = {
            title
            for chunk, title in zip(self.chunks, self.chunk_titles, strict=True)
            if title and (settings.title_prefix or chunk[6] == chunk[7])
        }
        return self.sentence_texts + sorted(titles)

    def chunk_vectors(
        self, settings: ChunkSettings, texts: list[str], vectors: np.ndarray
    ) -> np.ndarray:
        """One normalised vector per chunk from the vectors of :meth:`texts_to_embed`."""
        n_sentences = len(self.sentence_texts)
        if settings.chunk_vectors == "embedded":
            return vectors[n_sentences:]
        title_row = {text: n_sentences + i for i, text in enumerate(texts[n_sentences:])}
        out = np.zeros((len(self.chunks), vectors.shape[1]), dtype=np.float32)
        for i, chunk in enumerate(self.chunks):
            start, end = chunk[6], chunk[7]
            parts = vectors[start:end].sum(axis=0)
            count = end - start
            title = self.chunk_titles[i]
            if title and title in title_row and (settings.title_prefix or count == 0):
                parts = parts + vectors[title_row[title]]
                count += 1
            out[i] = parts / max(count, 1)
        return normalise(out)


def build_index(
    store: CorpusStore,
    index_dir: Path,
    *,
    model: str = "default",
    progress: bool = True,
    chunk_settings: ChunkSettings | None = None,
    vector_settings: vector_index.VectorSettings | None = None,
    embed_backend: str | None = None,
    on_stage: Callable[[str], None] | None = None,
    runner: str = "in-process",
) -> BuildReport:
    """Build the index of ``store``'s corpus into ``index_dir`` and publish it (see module doc).

    Returns quickly with ``up_to_date=True`` when the current build already has this corpus,
    model and settings. ``on_stage`` is called with each stage's name (tests use it).
    ``runner="ray"``: chunking and embedding run as Ray Data stages
    (:mod:`carqa.index.search.ray_build`, inside a Ray session), with the same result.
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
        _check_current(index_dir)
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
        }
        up_to_date = _up_to_date(index_dir, wanted)
        if up_to_date is not None:
            return _report_up_to_date(index_dir, up_to_date, spec, started)

        with _progress(progress) as bar:
            stage("chunk")
            t = time.perf_counter()
            pieces_of, embedder_class = _runner_steps(runner, store, chunk_settings)
            with _step(bar, "Chunking"):
                rows = _chunk_corpus(store, chunk_settings, pieces_of)
            timings["chunk"] = time.perf_counter() - t

            stage("embed")
            t = time.perf_counter()
            cache_path = index_dir / CACHE_DIR / EMBEDDING_CACHE
            embedder = embedder_class(spec, _export_root(settings, index_dir), backend_choice)
            texts = rows.texts_to_embed(chunk_settings)
            vectors, embedded, cached = embedder.embed(texts, cache_path, bar)
            timings["embed"] = time.perf_counter() - t
            n_chunks = len(rows.chunks)
            sentence_vectors = vectors[: len(rows.sentence_texts)]
            chunk_vectors = rows.chunk_vectors(chunk_settings, texts, vectors)

            stage("query-encoder")
            t = time.perf_counter()
            with _step(bar, "Query encoder"):
                onnx_folder = embedder.onnx_folder(sample=texts[:16])
                int8_check = None
                if onnx_folder is not None and query_precision != "fp32":
                    int8_check = _check_int8(onnx_folder, rows, sentence_vectors)
            timings["query_encoder"] = time.perf_counter() - t
            use_int8 = int8_check is not None and (
                int8_check["passed"] or query_precision == "int8"
            )

            stage("write")
            t = time.perf_counter()
            build_id = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ") + "-" + secrets.token_hex(3)
            tmp = index_dir / BUILDS_DIR / f"{TMP_PREFIX}{build_id}"
            tmp.mkdir()
            writing = bar.add_task("Publishing the index", total=1)
            try:
                kinds = _write_build(
                    tmp,
                    rows=rows,
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
                _fsync_dir(tmp)
                stage("publish")
                final = index_dir / BUILDS_DIR / build_id
                os.rename(tmp, final)
                _fsync_dir(index_dir / BUILDS_DIR)
                previous = current_build(index_dir)
                _swap_current(index_dir, final)
            except BaseException:
                shutil.rmtree(tmp, ignore_errors=True)
                raise
            removed = _prune(index_dir, keep={final, *([previous] if previous else [])})
            bar.update(writing, completed=1)
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
    return chunk_paper, _Embedder


def _chunk_corpus(
    store: CorpusStore, settings: ChunkSettings, pieces_of: Callable[..., Any] = chunk_paper
) -> _Rows:
    seed = store.seed_pmid()
    cited = store.cited_pmids()
    rows = _Rows()
    for paper in store.papers():
        pieces = pieces_of(paper, settings)
        rows.papers.append(
            (
                paper.pmid,
                paper.title,
                paper.journal,
                paper.year,
                json.dumps(list(paper.authors)),
                paper.doi,
                json.dumps(list(paper.mesh)),
                json.dumps(list(paper.publication_types)),
                int(paper.pmid == seed),
                int(paper.pmid in cited),
                int(paper.has_abstract),
            )
        )
        for position, section in enumerate(paper.sections):
            rows.sections.append(
                (paper.pmid, position, section.label, section.category, section.text)
            )
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
    return rows


class _Embedder:
    """Gets vectors for texts: from the cache, else from ONNX Runtime or torch (loaded only
    when something must be embedded or exported)."""

    def __init__(self, spec: ModelSpec, export_root: Path, backend: str) -> None:
        if backend not in ("auto", "onnx", "torch"):
            raise CarqaError(
                f"Unknown embedding backend {backend!r}.",
                hint=f"Set {EMBED_BACKEND_ENV} to auto, onnx or torch.",
            )
        self.spec = spec
        self.export_root = export_root
        self.backend = backend
        self.backend_used = "none"
        self._torch: TorchEncoder | None = None
        self._onnx_folder: Path | None = None
        self._onnx_checked = False
        self.dim = spec.dim or 0

    def torch(self) -> TorchEncoder:
        if self._torch is None:
            self._torch = TorchEncoder(self.spec)
            if self.spec.dim is not None and self._torch.dim != self.spec.dim:
                raise CarqaError(
                    f"Model {self.spec.name} produces {self._torch.dim}-d vectors, its "
                    f"configuration says {self.spec.dim}.",
                    hint="Check the model folder.",
                )
            self.dim = self._torch.dim
        return self._torch

    def onnx_folder(self, sample: list[str]) -> Path | None:
        """A verified ONNX export of the model (cached under ``export_root``), or None."""
        if not self._onnx_checked:
            from carqa.index.search.onnx_encoder import prepare

            self._onnx_checked = True
            self._onnx_folder = prepare(self.spec, self.export_root, self.torch, sample)
        return self._onnx_folder

    def _encoder(self, sample: list[str]) -> Encoder:
        if self.backend in ("auto", "onnx"):
            folder = self.onnx_folder(sample)
            if folder is not None:
                from carqa.index.search.onnx_encoder import OnnxEncoder

                return OnnxEncoder(folder)
            if self.backend == "onnx":
                raise CarqaError(
                    "The ONNX encoder is not available for this model.",
                    hint=f"Unset {EMBED_BACKEND_ENV} to fall back to torch.",
                )
        return self.torch()

    def embed(self, texts: list[str], cache_path: Path, bar: Any) -> tuple[np.ndarray, int, int]:
        """Vectors for ``texts`` (in order), the number embedded now and taken from cache."""
        if not self.dim:
            self.torch()  # a hub model: its dimension is only known once loaded
        with EmbeddingCache(cache_path, self.spec.model_id, self.dim) as cache:
            found = cache.get_many(texts)
            out = np.zeros((len(texts), self.dim), dtype=np.float32)
            for i, vector in found.items():
                out[i] = vector
            missing: dict[str, list[int]] = {}
            for i, text in enumerate(texts):
                if i not in found:
                    missing.setdefault(text, []).append(i)
            if not missing:
                return out, 0, len(texts)
            # Shortest first across the whole build, so each cache window holds texts of
            # similar length; the encoder then batches a window by token count (little padding).
            unique = sorted(missing, key=len)
            with _step(bar, "Preparing the model"):
                # A sample spread over all lengths for the ONNX export's check.
                encoder = self._encoder(unique[:: max(1, len(unique) // 16)][:16])
            self.backend_used = encoder.backend
            task = bar.add_task(f"Embedding ({encoder.backend})", total=len(unique))
            for begin in range(0, len(unique), CACHE_FLUSH):
                batch = unique[begin : begin + CACHE_FLUSH]
                vectors = encoder.encode(
                    batch,
                    batch_size=BATCH_SIZE,
                    on_batch=lambda n: bar.advance(task, n),
                )
                cache.put(batch, vectors)
                for text, vector in zip(batch, vectors, strict=True):
                    for i in missing[text]:
                        out[i] = vector
            return out, len(unique), len(texts) - sum(len(v) for v in missing.values())


def _export_root(settings: Settings, index_dir: Path) -> Path:
    """Where the model's ONNX exports are made and kept: the per-user model cache
    (``CARQA_MODEL_CACHE_DIR``), which every index on the machine shares, else the index's own
    ``cache/onnx``.

    Why shared: an export depends only on the model, and preparing it — importing torch and
    sentence-transformers, loading the model, exporting, verifying, quantising — costs ~15-20 s
    of a cold build on 2 cores that a second corpus would otherwise pay again. Each build links
    (or copies) the files into its own folder, so an index never depends on the cache.
    """
    shared = settings.model_cache_dir
    if shared is not None:
        root = Path(shared).expanduser() / ONNX_DIR
        try:
            root.mkdir(parents=True, exist_ok=True)
            if os.access(root, os.W_OK | os.X_OK):
                return root
            log.warning("Model cache %s is not writable: exporting into the index.", root)
        except OSError as error:
            log.warning("Model cache %s unusable (%s): exporting into the index.", root, error)
    return index_dir / CACHE_DIR / ONNX_DIR


def _check_int8(
    onnx_folder: Path, rows: _Rows, sentence_vectors: np.ndarray
) -> dict[str, Any] | None:
    """Quantise the verified ONNX export (once per model, cached beside it, made again when
    the cached file does not load: ``onnx_encoder.int8_encoder``) and measure how alike int8
    and fp32 query vectors rank this index's sentences (``int8_agreement``). Probe queries are
    the papers' titles, or question-sized sentence openings when there are few titles. None
    when quantisation is not possible here (the build goes on with fp32)."""
    from carqa.index.search import onnx_encoder

    try:
        int8 = onnx_encoder.int8_encoder(onnx_folder)
        titles = sorted({title for title in rows.chunk_titles if title})
        source = titles if len(titles) >= 64 else rows.sentence_texts
        queries = onnx_encoder.probe_queries(source)
        if not queries or not len(sentence_vectors):
            return None
        return onnx_encoder.int8_agreement(
            onnx_encoder.OnnxEncoder(onnx_folder), int8, queries, sentence_vectors
        )
    except Exception as error:  # an old ONNX Runtime, an unusual graph: fp32 still serves
        log.warning("No int8 query encoder (%s): queries use fp32.", error)
        return None


def _write_build(
    folder: Path,
    *,
    rows: _Rows,
    chunk_vectors: np.ndarray,
    sentence_vectors: np.ndarray,
    vector_settings: vector_index.VectorSettings,
    onnx_folder: Path | None,
    int8: bool = False,
) -> dict[str, Any]:
    """Write meta.sqlite, the FAISS files (and sentences.npy when the sentence index is not
    flat) and the ONNX encoder into ``folder``. Returns the vector index kinds."""
    _write_meta(folder / META_FILE, rows)
    kinds: dict[str, Any] = {}
    for name, file, matrix in (
        ("chunks", CHUNKS_FAISS, chunk_vectors),
        ("sentences", SENTENCES_FAISS, sentence_vectors),
    ):
        index = vector_index.build_index(matrix, settings=vector_settings)
        vector_index.write(index, folder / file)
        kinds[name] = {"kind": vector_index.kind_of(index), "count": int(index.ntotal)}
    # Exact sentence vectors beside the FAISS index, memory-mapped by readers (an approximate
    # index cannot give them back; FAISS copies a flat one into each process).
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
            _link_or_copy(onnx_folder / name, folder / ONNX_DIR / name)
    return kinds


_META_SCHEMA = """
CREATE TABLE info (key TEXT PRIMARY KEY, value TEXT);
CREATE TABLE papers (
    pmid TEXT PRIMARY KEY, title TEXT, journal TEXT, year INTEGER, authors TEXT NOT NULL,
    doi TEXT, mesh TEXT NOT NULL, publication_types TEXT NOT NULL,
    is_seed INTEGER NOT NULL, cited_by_seed INTEGER NOT NULL, has_abstract INTEGER NOT NULL
);
CREATE TABLE sections (
    pmid TEXT NOT NULL, position INTEGER NOT NULL, label TEXT, category TEXT,
    text TEXT NOT NULL, PRIMARY KEY (pmid, position)
);
CREATE TABLE chunks (
    id INTEGER PRIMARY KEY, pmid TEXT NOT NULL, section_position INTEGER NOT NULL,
    section_label TEXT, section_category TEXT, text TEXT NOT NULL,
    sentence_start INTEGER NOT NULL, sentence_end INTEGER NOT NULL
);
CREATE TABLE sentences (
    id INTEGER PRIMARY KEY, pmid TEXT NOT NULL, section_position INTEGER NOT NULL,
    section_label TEXT, section_category TEXT, position INTEGER NOT NULL,
    count INTEGER NOT NULL, text TEXT NOT NULL, char_start INTEGER NOT NULL,
    char_end INTEGER NOT NULL, chunk_id INTEGER NOT NULL
);
"""


def _write_meta(path: Path, rows: _Rows) -> None:
    conn = sqlite3.connect(path)
    try:
        with conn:
            conn.executescript(_META_SCHEMA)
            conn.execute("INSERT INTO info VALUES ('format_version', ?)", (str(FORMAT_VERSION),))
            conn.executemany(f"INSERT INTO papers VALUES ({_marks(11)})", rows.papers)
            conn.executemany(f"INSERT INTO sections VALUES ({_marks(5)})", rows.sections)
            conn.executemany(f"INSERT INTO chunks VALUES ({_marks(8)})", rows.chunks)
            conn.executemany(f"INSERT INTO sentences VALUES ({_marks(11)})", rows.sentences)
    finally:
        conn.close()
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())


def _marks(n: int) -> str:
    return ",".join("?" * n)


def _link_or_copy(source: Path, target: Path) -> None:
    """Hard link (no 90 MB copy per build) when on the same filesystem, else copy."""
    try:
        os.link(source, target)
    except OSError:
        shutil.copyfile(source, target)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _swap_current(index_dir: Path, build: Path) -> None:
    """Point ``current`` at ``build``: a new symlink under a temp name, then ``os.replace``."""
    link = index_dir / CURRENT_LINK
    tmp = index_dir / f".{CURRENT_LINK}.tmp-{os.getpid()}"
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    os.symlink(os.path.relpath(build, index_dir), tmp)
    os.replace(tmp, link)
    _fsync_dir(index_dir)


def _prune(index_dir: Path, keep: set[Path]) -> list[str]:
    """Remove builds other than ``keep`` and leftovers of killed builds (we hold the lock)."""
    removed: list[str] = []
    keep_resolved = {k.resolve() for k in keep}
    for child in sorted((index_dir / BUILDS_DIR).iterdir()):
        if child.resolve() in keep_resolved:
            continue
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child, ignore_errors=True)
        else:
            child.unlink(missing_ok=True)
        removed.append(child.name)
    for stale in index_dir.glob(f".{CURRENT_LINK}.tmp-*"):
        stale.unlink(missing_ok=True)
    return removed


@contextlib.contextmanager
def _step(bar: Any, description: str) -> Iterator[None]:
    """A one-step task on the progress display, completed when the block ends."""
    task = bar.add_task(description, total=1)
    yield
    bar.update(task, completed=1)


@contextlib.contextmanager
def _progress(enabled: bool) -> Iterator[Any]:
    """A rich progress display on stderr (a no-op display when disabled)."""
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        disable=not enabled,
        transient=False,
    ) as bar:
        yield bar
