"""The read side of a published index: open, validate, encode queries, search.

``Index.open(index_dir)`` follows ``<index_dir>/current`` to a build folder (or takes a build
folder itself), checks its ``manifest.json`` (format version; model id and dimension when a
model is given) and verifies every file's checksum. Papers, chunks and sentences stay in
``meta.sqlite`` and are read when asked for (:mod:`carqa.index.search.tables`): an opened index
does not grow by an object per sentence. Nothing here unpickles anything: metadata comes from
SQLite, vectors from FAISS files and ``.npy`` files loaded with ``allow_pickle=False``, BM25
postings (large builds) from ``.npy`` files (:mod:`carqa.index.search.postings`).

Vector files are memory-mapped where the format allows it (``sentences.npy``, the per-paper
``papers.npy`` and ``papers.faiss``, an IVF chunk index): several server processes on one index
then share the pages, and a question only brings in the rows it reads. The FAISS sentence and
chunk indexes are opened on first use: answering reads the sentence matrix and the paper index,
not them (a flat FAISS index cannot be memory-mapped; it would be a private copy per process).

Queries are encoded with the build's ONNX encoder when ONNX Runtime is available (the export
was verified against torch at build time), else with sentence-transformers. Both are loaded on
first use, once, behind a lock: the object is shared by the API's worker threads.
"""

from __future__ import annotations

import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from carqa.index.corpus.models import Section
from carqa.index.search import paper_vectors
from carqa.index.search import vectors as vector_index
from carqa.index.search.embedding import DEFAULT_MODEL, Encoder, resolve_model
from carqa.index.search.layout import (
    CHUNKS_FAISS,
    META_FILE,
    ONNX_DIR,
    REQUIRED_FILES,
    SENTENCES_FAISS,
    SENTENCES_NPY,
    rebuild_hint,
    served_build_folder,
    shell_path,
)
from carqa.index.search.manifest import read_manifest, verify_files
from carqa.index.search.postings import Postings
from carqa.index.search.tables import Meta, PaperTable, RowTable, json_list, sections_of
from carqa.index.search.vector_files import (
    check_papers,
    check_shapes,
    read_vectors,
    sentence_matrix,
)

from carqa.errors import IndexCorrupt, IndexMismatch, InputError


@dataclass(frozen=True)
class PaperMeta:
    pmid: str
    title: str | None
    journal: str | None
    year: int | None
    authors: list[str]
    doi: str | None
    mesh: list[str]
    publication_types: list[str]
    is_seed: bool
    cited_by_seed: bool
    has_abstract: bool
    relation: str = "file"  # seed, cited, citing, similar or file (carqa.index.corpus.models)


@dataclass(frozen=True)
class ChunkRow:
    """A chunk; ``sentence_start``/``sentence_end`` are *sentence ids* (``[start, end)``), so
    ``index.sentences[c.sentence_start:c.sentence_end]`` are its sentences (empty for the
    title-only chunk of a paper without abstract, whose ``section_category`` is ``"TITLE"``)."""

    id: int
    pmid: str
    section_label: str | None
    section_category: str | None
    text: str
    sentence_start: int
    sentence_end: int


@dataclass(frozen=True)
class SentenceRow:
    """A sentence. ``position`` is its 0-based index within its paper's abstract, ``count`` the
    number of sentences in that abstract; ``chunk_id`` the first chunk that contains it;
    ``char_start``/``char_end`` its offsets in the section's text."""

    id: int
    pmid: str
    section_label: str | None
    section_category: str | None
    position: int
    count: int
    text: str
    chunk_id: int
    char_start: int = 0
    char_end: int = 0


class Index:
    """A loaded, validated index (see module doc). Build with :meth:`open`."""

    def __init__(
        self,
        *,
        folder: Path,
        index_dir: Path,
        manifest: dict[str, Any],
        meta: Meta,
        papers: PaperTable,
        chunks: RowTable[ChunkRow],
        sentences: RowTable[SentenceRow],
        chunk_index: Any,
        sentence_index: Any,
        sentence_matrix: np.ndarray,
        model: str | None,
        query_precision: str = "auto",
        paper_vectors: tuple[np.ndarray, Any] | None = None,
        postings: Postings | None = None,
    ) -> None:
        self.folder = folder
        self.index_dir = index_dir
        self.manifest = manifest
        self._meta = meta
        self.papers = papers
        self.chunks = chunks
        self.sentences = sentences
        self._chunk_index = chunk_index
        self._sentence_index = sentence_index
        self.sentence_matrix = sentence_matrix
        # (centroids by sorted pmid, approximate index over them), memory-mapped; None for a
        # build without them (the retriever computes the centroids).
        self.paper_vectors = paper_vectors
        # BM25 postings written by the build, memory-mapped; None for a build without them
        # (the retriever then indexes the texts itself).
        self.postings = postings
        self.dim = int(manifest["model"]["dim"])
        built = manifest["model"]
        # Torch fallback: the model asked for, else the one the index names ("default" stays
        # "default" so a moved install still finds its package; a path is used as recorded).
        self._model = model or (
            built["name"] if built.get("name") == DEFAULT_MODEL else built.get("source")
        )
        self._query_precision = query_precision
        self._encoder: Encoder | None = None
        self._lock = threading.Lock()

    # -- opening ------------------------------------------------------------------------------

    @classmethod
    def open(
        cls,
        index_dir: Path,
        *,
        model: str | None = None,
        verify: bool = True,
        query_precision: str = "auto",
    ) -> Index:
        """Open the current build of ``index_dir`` (or ``index_dir`` itself if it is a build).

        ``model``: the model the caller will query with; refused (``IndexMismatch``) when it is
        not the model the index was built with. ``verify``: check file checksums.
        ``query_precision``: "auto" (what the build chose: int8 when it passed the build's
        agreement check), "fp32", or "int8" (when the build has an int8 model).
        """
        if query_precision not in ("auto", "fp32", "int8"):
            raise InputError(
                f"Unknown query precision {query_precision!r}.",
                hint="Use auto, fp32 or int8 (CARQA_QUERY_PRECISION).",
            )
        index_dir = Path(index_dir).expanduser()
        hint = rebuild_hint(index_dir)
        folder = served_build_folder(index_dir)
        manifest = read_manifest(folder, rebuild_hint=hint, required_files=REQUIRED_FILES)
        built = manifest["model"]
        if model is not None:
            spec = resolve_model(model)
            where, asked = shell_path(index_dir), shell_path(model)
            if spec.model_id != built.get("id"):
                raise IndexMismatch(
                    f"The index at {index_dir} was built with model {built.get('name')!r} "
                    f"({built.get('id')}); you asked for {model!r} ({spec.model_id}).",
                    hint=f"Rebuild for that model: `carqa build --index-dir {where} "
                    f"--model {asked}`, or drop --model (and CARQA_MODEL) to use the index's "
                    "own model.",
                )
            if spec.dim is not None and spec.dim != built.get("dim"):
                raise IndexMismatch(
                    f"Model {model!r} makes {spec.dim}-dimensional vectors; the index at "
                    f"{index_dir} holds {built.get('dim')}-dimensional ones.",
                    hint=f"Rebuild: `carqa build --index-dir {where} --model {asked}`.",
                )
        if verify:
            verify_files(folder, manifest, rebuild_hint=hint)
        try:
            meta, papers, chunks, sentences = _open_meta(folder / META_FILE)
            chunk_index = read_vectors(folder / CHUNKS_FAISS, manifest, "chunks")
            has_npy = (folder / SENTENCES_NPY).is_file()
            sentence_index = None if has_npy else vector_index.read(folder / SENTENCES_FAISS)
            by_paper = paper_vectors.read(folder)
            postings = Postings(folder, len(papers)) if Postings.exists(folder) else None
        except (sqlite3.DatabaseError, RuntimeError, KeyError, ValueError) as error:
            raise IndexCorrupt(
                f"The index at {folder} is unreadable: {error}", hint=hint
            ) from error
        matrix = sentence_matrix(folder, sentence_index, hint)
        check_shapes(folder, manifest, chunks, sentences, chunk_index, sentence_index, matrix, hint)
        if by_paper is not None:
            check_papers(folder, manifest, len(papers), by_paper, hint)
        return cls(
            folder=folder,
            index_dir=index_dir,
            manifest=manifest,
            meta=meta,
            papers=papers,
            chunks=chunks,
            sentences=sentences,
            chunk_index=chunk_index,
            sentence_index=sentence_index,
            sentence_matrix=matrix,
            model=model,
            query_precision=query_precision,
            paper_vectors=by_paper,
            postings=postings,
        )

    # -- reading ------------------------------------------------------------------------------

    @property
    def chunk_index(self) -> Any:
        """The FAISS chunk index (read on first use when it is a flat one)."""
        if self._chunk_index is None:
            with self._lock:
                if self._chunk_index is None:
                    self._chunk_index = vector_index.read(self.folder / CHUNKS_FAISS)
        return self._chunk_index

    @property
    def sentence_index(self) -> Any:
        """The FAISS sentence index (read on first use: answering reads the matrix). A build
        without ``sentences.faiss`` (it would duplicate ``sentences.npy``) gets an exact index
        made from the matrix."""
        if self._sentence_index is None:
            with self._lock:
                if self._sentence_index is None:
                    path = self.folder / SENTENCES_FAISS
                    if path.is_file():
                        self._sentence_index = vector_index.read(path)
                    else:
                        self._sentence_index = vector_index.build_index(
                            np.asarray(self.sentence_matrix, np.float32), kind="flat"
                        )
        return self._sentence_index

    def sentence_owner(self, position: dict[str, int]) -> np.ndarray:
        """``position[pmid]`` of each sentence's paper (-1 when absent), by sentence id: one
        pass over one column, no row objects."""
        owners = self.sentences.column("pmid")
        found = (position.get(pmid, -1) for pmid in owners)
        return np.fromiter(found, dtype=np.int64, count=len(self.sentences))

    def paper_columns(self) -> dict[str, np.ndarray]:
        """Year (-1 without one), is_seed and cited_by_seed of every paper, by sorted pmid."""
        return self.papers.columns()

    @property
    def build_id(self) -> str:
        return str(self.manifest.get("build_id", ""))

    @property
    def query_backend(self) -> str:
        """``"onnx"`` or ``"torch"``: what :meth:`encode_query` uses (loads it if needed)."""
        return self.encoder.backend

    @property
    def chunk_matrix(self) -> np.ndarray | None:
        """Chunk vectors by chunk id (read-only view of the flat FAISS index), or None when the
        chunk index is approximate (search it with :meth:`search_chunks`)."""
        return vector_index.flat_vectors(self.chunk_index)

    def chunk_vectors(self, ids: list[int]) -> np.ndarray:
        """The vectors of the chunks ``ids`` (float32 rows, in the order asked), from the flat
        or the approximate chunk index alike. ``KeyError`` for an unknown chunk id."""
        index = self.chunk_index
        with self._lock:  # the first call on an IVF index adds an id map to it
            return vector_index.vectors_by_id(index, ids)

    def sections(self, pmid: str) -> list[Section]:
        """The abstract sections of ``pmid`` in order (empty if unknown or title-only)."""
        return sections_of(self._meta, pmid)

    # -- encoding -----------------------------------------------------------------------------

    @property
    def encoder(self) -> Encoder:
        if self._encoder is None:
            with self._lock:
                if self._encoder is None:
                    self._encoder = self._load_encoder()
        return self._encoder

    def _load_encoder(self) -> Encoder:
        onnx_folder = self.folder / ONNX_DIR
        if (onnx_folder / "model.onnx").is_file():
            from carqa.index.search.onnx_encoder import OnnxEncoder, onnxruntime_available

            if onnxruntime_available():
                encoder = OnnxEncoder(onnx_folder, precision=self.onnx_precision)
                if encoder.model_id == self.manifest["model"]["id"] and encoder.dim == self.dim:
                    return encoder
        from carqa.index.search.embedding import TorchEncoder

        spec = resolve_model(self._model)
        if spec.model_id != self.manifest["model"]["id"]:
            raise IndexMismatch(
                f"The model at {spec.source} is not the one the index at {self.index_dir} was "
                f"built with ({self.manifest['model']['id']}, {self.manifest['model']['name']}).",
                hint=f"Rebuild: `carqa build --index-dir {shell_path(self.index_dir)}`.",
            )
        torch_encoder = TorchEncoder(spec)
        if torch_encoder.dim != self.dim:
            raise IndexMismatch(
                f"Model {spec.name!r} makes {torch_encoder.dim}-d vectors, the index {self.dim}-d.",
                hint=f"Rebuild: `carqa build --index-dir {shell_path(self.index_dir)}`.",
            )
        return torch_encoder

    @property
    def onnx_precision(self) -> str:
        """The ONNX model queries use: int8 when asked for (or, with "auto", when the build
        chose it) and the build has one; fp32 otherwise."""
        from carqa.index.search.onnx_encoder import INT8_MODEL_FILE

        wanted = self._query_precision
        if wanted == "auto":
            wanted = str(self.manifest.get("query_precision", "fp32"))
        has_int8 = (self.folder / ONNX_DIR / INT8_MODEL_FILE).is_file()
        return "int8" if wanted == "int8" and has_int8 else "fp32"

    def encode(self, texts: list[str]) -> np.ndarray:
        """(n, dim) float32, L2-normalised."""
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        return self.encoder.encode(texts)

    def encode_query(self, text: str) -> np.ndarray:
        """(dim,) float32, L2-normalised."""
        return self.encode([text])[0]

    # -- searching ----------------------------------------------------------------------------

    def search_chunks(self, vector: np.ndarray, k: int) -> list[tuple[int, float]]:
        """Top ``k`` (chunk id, cosine) for a query vector, best first."""
        return vector_index.search(self.chunk_index, vector, k)

    def search_sentences(self, vector: np.ndarray, k: int) -> list[tuple[int, float]]:
        """Top ``k`` (sentence id, cosine) for a query vector, best first."""
        return vector_index.search(self.sentence_index, vector, k)

    def __repr__(self) -> str:
        return (
            f"Index({str(self.folder)!r}, papers={len(self.papers)}, chunks={len(self.chunks)}, "
            f"sentences={len(self.sentences)})"
        )


PAPER_COLUMNS = (
    "pmid, title, journal, year, authors, doi, mesh, publication_types, is_seed, "
    "cited_by_seed, has_abstract, {relation}"
)
CHUNK_COLUMNS = "id, pmid, section_label, section_category, text, sentence_start, sentence_end"
SENTENCE_COLUMNS = (
    "id, pmid, section_label, section_category, position, count, text, chunk_id, char_start,"
    " char_end"
)


def _paper(row: tuple[Any, ...]) -> PaperMeta:
    return PaperMeta(
        pmid=row[0],
        title=row[1],
        journal=row[2],
        year=row[3],
        authors=json_list(row[4]),
        doi=row[5],
        mesh=json_list(row[6]),
        publication_types=json_list(row[7]),
        is_seed=bool(row[8]),
        cited_by_seed=bool(row[9]),
        has_abstract=bool(row[10]),
        relation=row[11],
    )


def _open_meta(
    path: Path,
) -> tuple[Meta, PaperTable, RowTable[ChunkRow], RowTable[SentenceRow]]:
    """The tables of ``meta.sqlite`` (nothing read but the sorted pmids and row counts)."""
    meta = Meta(path)
    # An index built before relations were recorded has no ``relation`` column: derive it.
    relation = (
        "relation"
        if meta.has_column("papers", "relation")
        else "CASE WHEN is_seed THEN 'seed' WHEN cited_by_seed THEN 'cited' ELSE 'file' END"
    )
    papers = PaperTable(meta, PAPER_COLUMNS.format(relation=relation), _paper)
    counts = {
        table: meta.conn().execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]
        for table in ("chunks", "sentences")
    }
    chunks = RowTable(meta, "chunks", CHUNK_COLUMNS, ChunkRow, counts["chunks"])
    sentences = RowTable(meta, "sentences", SENTENCE_COLUMNS, SentenceRow, counts["sentences"])
    chunks.check_ids()
    sentences.check_ids()
    return meta, papers, chunks, sentences


__all__ = ["ChunkRow", "Index", "PaperMeta", "SentenceRow"]
