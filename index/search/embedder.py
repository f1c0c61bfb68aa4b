"""Vectors for the build: from the embedding cache, else from ONNX Runtime or torch.

The build asks for the vectors of every text (sentences, then chunk texts or titles);
:class:`Embedder` takes those already in the cache (:mod:`carqa.index.search.embedding_cache`)
and embeds only the rest, flushing to the cache every ``CACHE_FLUSH`` texts so a killed build
resumes where it stopped. torch and the ONNX export are loaded only when something must be
embedded or exported. :func:`check_int8` decides whether the build ships the int8 query encoder.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from carqa.index.search.embedding import Encoder, ModelSpec, TorchEncoder
from carqa.index.search.embedding_cache import EmbeddingCache
from carqa.index.search.layout import CACHE_DIR, ONNX_DIR

from carqa.errors import CarqaError
from carqa.progress import ProgressCallback, no_progress, step
from carqa.settings import Settings

log = logging.getLogger(__name__)

BATCH_SIZE = 16  # texts per forward pass; 16 beat 8, 32 and 64 here (docs/benchmarks.md)
CACHE_FLUSH = 512  # texts per committed cache write: a killed build loses at most this many

# ``CARQA_EMBED_BACKEND`` = auto | onnx | torch: how new texts are embedded at build time.
EMBED_BACKEND_ENV = "CARQA_EMBED_BACKEND"


class Embedder:
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
            from carqa.index.search.onnx_export import prepare

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

    def embed(
        self, texts: list[str], cache_path: Path, on_progress: ProgressCallback = no_progress
    ) -> tuple[np.ndarray, int, int]:
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

            def store(batch: Sequence[str], vectors: np.ndarray) -> None:
                """Commit a batch to the cache (a killed build keeps it) and place it."""
                cache.put(batch, vectors)
                for text, vector in zip(batch, vectors, strict=True):
                    for i in missing[text]:
                        out[i] = vector

            # Shortest first across the whole build, so each cache window holds texts of
            # similar length; the encoder then batches a window by token count (little padding).
            self.encode_new(sorted(missing, key=len), store, on_progress)
            return out, len(missing), len(texts) - sum(len(v) for v in missing.values())

    def encode_new(
        self,
        unique: list[str],
        store: Callable[[Sequence[str], np.ndarray], None],
        on_progress: ProgressCallback,
    ) -> None:
        """Encode ``unique`` (distinct texts, shortest first) and ``store`` each window of
        ``CACHE_FLUSH`` vectors as it is done: the one step another runner replaces
        (:mod:`carqa.index.search.ray_build` hands it to a pool of Ray actors)."""
        with step(on_progress, "Preparing the model"):
            encoder = self._encoder(check_sample(unique))
        self.backend_used = encoder.backend
        label, done = f"Embedding ({encoder.backend})", 0
        on_progress(label, done, len(unique))

        def advance(n: int) -> None:
            nonlocal done
            done += n
            on_progress(label, done, len(unique))

        for begin in range(0, len(unique), CACHE_FLUSH):
            batch = unique[begin : begin + CACHE_FLUSH]
            store(batch, encoder.encode(batch, batch_size=BATCH_SIZE, on_batch=advance))


def check_sample(unique: list[str]) -> list[str]:
    """Sixteen texts spread over all lengths (``unique`` is shortest first): what the ONNX
    export is verified on against torch."""
    return unique[:: max(1, len(unique) // 16)][:16]


def export_root(settings: Settings, index_dir: Path) -> Path:
    """Where the model's ONNX exports are made and kept: the per-user model cache
    (``CARQA_MODEL_CACHE_DIR``), which every index on the machine shares, else the index's own
    ``cache/onnx``.

    Why shared: an export depends only on the model, and preparing it — importing torch and
    sentence-transformers, loading the model, exporting, verifying, quantising — is a large
    part of a cold build that a second corpus would otherwise pay again (docs/benchmarks.md).
    Each build links (or copies) the files into its own folder, so an index never depends on
    the cache.
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


def check_int8(
    onnx_folder: Path, titles: list[str], sentence_texts: list[str], sentence_vectors: np.ndarray
) -> dict[str, Any] | None:
    """Quantise the verified ONNX export (once per model, cached beside it, made again when
    the cached file does not load: ``onnx_int8.int8_encoder``) and measure how alike int8
    and fp32 query vectors rank this index's sentences (``int8_agreement``). Probe queries are
    the papers' ``titles``, or question-sized sentence openings when there are few titles.
    None when quantisation is not possible here (the build goes on with fp32)."""
    from carqa.index.search import onnx_int8

    try:
        int8 = onnx_int8.int8_encoder(onnx_folder)
        distinct = sorted(set(titles))
        source = distinct if len(distinct) >= 64 else sentence_texts
        queries = onnx_int8.probe_queries(source)
        if not queries or not len(sentence_vectors):
            return None
        return onnx_int8.int8_agreement(
            onnx_int8.OnnxEncoder(onnx_folder), int8, queries, sentence_vectors
        )
    except Exception as error:  # an old ONNX Runtime, an unusual graph: fp32 still serves
        log.warning("No int8 query encoder (%s): queries use fp32.", error)
        return None
