"""Build time: export the embedding model to ONNX and check it against torch.

We export the model ourselves with ``torch.onnx.export`` (sentence-transformers'
``backend="onnx"`` needs ``optimum``, which pins an older transformers) from the *local* model,
with mean pooling and L2 normalisation inside the graph; the serve side
(:mod:`carqa.index.search.onnx_encoder`) runs it without torch.

An export is only used after it has been checked against the torch vectors: every sample text
must have cosine ≥ :data:`MIN_COSINE` with sentence-transformers' vector. Otherwise callers fall
back to torch. Exports live in a cache shared by every index on the machine (see
:func:`prepare`), guarded by :func:`cache_lock`.

The int8 query model is made from a verified export by :mod:`carqa.index.search.onnx_int8`.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from carqa.index.search.embedding import ModelSpec, TorchEncoder
from carqa.index.search.onnx_encoder import (
    FILES,
    INFO_FILE,
    MODEL_FILE,
    TOKENIZER_FILE,
    OnnxEncoder,
    onnxruntime_available,
)

MIN_COSINE = 0.9999
OPSET = 17
EXPORT_VERSION = 2
"""Bump when :func:`export` writes a different graph: exports live in a per-user cache that
outlives carqa upgrades, and one made by an older ``export`` is redone, not reused."""
LOCK_FILE = ".lock"

log = logging.getLogger(__name__)


def exportable(spec: ModelSpec) -> str | None:
    """Why ``spec`` cannot be exported (None when it can): we support the common
    sentence-transformers shape Transformer → mean Pooling (→ Normalize) with a fast tokenizer."""
    if spec.path is None:
        return "not a local model folder"
    if not (spec.path / TOKENIZER_FILE).is_file():
        return "no tokenizer.json"
    modules_file = spec.path / "modules.json"
    if not modules_file.is_file():
        return "no modules.json"
    modules = [m.get("type", "") for m in json.loads(modules_file.read_text())]
    kinds = [m.rsplit(".", 1)[-1] for m in modules]
    if kinds[:2] != ["Transformer", "Pooling"] or any(k not in ("Normalize",) for k in kinds[2:]):
        return f"unsupported module chain {kinds}"
    pooling_file = spec.path / "1_Pooling" / "config.json"
    pooling = json.loads(pooling_file.read_text()) if pooling_file.is_file() else {}
    modes = [k for k, v in pooling.items() if k.startswith("pooling_mode_") and v]
    if modes != ["pooling_mode_mean_tokens"]:
        return f"unsupported pooling {modes}"
    return None


def export(torch_encoder: TorchEncoder, out_dir: Path) -> Path:
    """Export ``torch_encoder``'s model to ``out_dir`` (written to a temp folder, then renamed).

    The graph takes ``input_ids``, ``attention_mask``, ``token_type_ids`` (int64, batch × seq)
    and returns ``embedding`` (float32, batch × dim), already mean-pooled and normalised.
    """
    import torch

    spec = torch_encoder.spec
    assert spec.path is not None
    transformer = _eager_transformer(torch_encoder)

    class Pooled(torch.nn.Module):
        def __init__(self, model: torch.nn.Module) -> None:
            super().__init__()
            self.model = model

        def forward(self, input_ids: Any, attention_mask: Any, token_type_ids: Any) -> torch.Tensor:
            hidden = self.model(
                input_ids=input_ids,
                attention_mask=attention_mask,
                token_type_ids=token_type_ids,
            ).last_hidden_state
            mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
            summed = (hidden * mask).sum(dim=1)
            mean = summed / mask.sum(dim=1).clamp(min=1e-9)
            return torch.nn.functional.normalize(mean, p=2.0, dim=1)

    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=".onnx-", dir=out_dir.parent))
    try:
        model = torch_encoder.model
        tokenize = getattr(model, "preprocess", None) or model.tokenize
        features = tokenize(["an example sentence", "and a second, longer one"])
        inputs = tuple(features[key] for key in ("input_ids", "attention_mask", "token_type_ids"))
        axes = {0: "batch", 1: "sequence"}
        import warnings

        with warnings.catch_warnings(), torch.inference_mode():
            warnings.simplefilter("ignore")  # tracer chatter about shape-dependent branches
            torch.onnx.export(
                Pooled(transformer).eval(),
                inputs,
                str(work / MODEL_FILE),
                input_names=["input_ids", "attention_mask", "token_type_ids"],
                output_names=["embedding"],
                dynamic_axes={
                    "input_ids": axes,
                    "attention_mask": axes,
                    "token_type_ids": axes,
                    "embedding": {0: "batch"},
                },
                opset_version=OPSET,
                dynamo=False,
            )
        optimized = _optimize(work / MODEL_FILE, transformer.config)
        shutil.copyfile(spec.path / TOKENIZER_FILE, work / TOKENIZER_FILE)
        info = {
            "model_id": spec.model_id,
            "dim": torch_encoder.dim,
            "max_seq_length": torch_encoder.max_seq_length,
            "opset": OPSET,
            "export_version": EXPORT_VERSION,
            "fused": optimized,
            "verified_cosine": None,
        }
        (work / INFO_FILE).write_text(json.dumps(info, indent=2))
        if out_dir.exists():
            shutil.rmtree(out_dir)
        os.replace(work, out_dir)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    return out_dir


def _eager_transformer(torch_encoder: TorchEncoder) -> Any:
    """The transformer with plain ("eager") attention: its traced graph is the pattern ONNX
    Runtime's optimizer fuses into one ``Attention`` op (SDPA traces to a shape it does not
    recognise). Falls back to the loaded model when a fresh eager load is not possible."""
    try:
        from sentence_transformers import SentenceTransformer

        eager = SentenceTransformer(
            torch_encoder.spec.source,
            device="cpu",
            model_kwargs={"attn_implementation": "eager"},
        )
        return eager[0].auto_model.eval()
    except Exception as error:  # an older transformers or an unusual model
        log.info("Exporting with the default attention (%s).", error)
        return torch_encoder.model[0].auto_model.eval()


def _optimize(path: Path, config: Any) -> bool:
    """Fuse attention, the embedding LayerNorm and GELU with ONNX Runtime's transformer
    optimizer (BERT-type models only), but not residual Add + LayerNorm (see ``UNFUSED``).
    Measured on the 2-core machine under load: one query 10 ms fused vs 18 ms unfused (torch:
    39 ms); bulk throughput is about the same. The result is verified against torch like any
    export, so a bad fusion is caught, not served."""
    if getattr(config, "model_type", None) != "bert":
        return False
    try:
        from onnxruntime.transformers import optimizer
        from onnxruntime.transformers.fusion_options import FusionOptions

        options = FusionOptions("bert")
        options.enable_skip_layer_norm = False  # see UNFUSED: slower here, and 0.7 s to fuse
        model = optimizer.optimize_model(
            str(path),
            model_type="bert",
            num_heads=int(config.num_attention_heads),
            hidden_size=int(config.hidden_size),
            # Fusion only: the default first runs a whole ONNX Runtime optimisation pass and
            # saves it (3 s of a cold build) — passes the runtime repeats at session start.
            opt_level=0,
            optimization_options=options,
        )
        model.save_model_to_file(str(path))
    except Exception as error:
        log.info("ONNX Runtime optimizer failed (%s); keeping the unfused export.", error)
        return False
    return True


def verify(onnx: OnnxEncoder, reference: np.ndarray, texts: Sequence[str]) -> float:
    """Smallest cosine between ONNX vectors of ``texts`` and ``reference`` (torch) vectors."""
    vectors = onnx.encode(texts, batch_size=8)
    return float(np.min(np.sum(vectors * reference, axis=1)))


def record_verification(folder: Path, cosine: float) -> None:
    info_file = Path(folder) / INFO_FILE
    info = json.loads(info_file.read_text())
    info["verified_cosine"] = cosine
    tmp = info_file.with_suffix(".tmp")
    tmp.write_text(json.dumps(info, indent=2))
    os.replace(tmp, info_file)


@contextlib.contextmanager
def cache_lock(cache_root: Path) -> Iterator[None]:
    """Hold the export cache's lock (blocking). Several builds share one cache — every index on
    the machine when it is the per-user model cache — so a build that finds an export under
    way waits for it and reuses it, instead of exporting the same folder at the same time."""
    cache_root.mkdir(parents=True, exist_ok=True)
    with (cache_root / LOCK_FILE).open("a+") as handle:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log.warning("Waiting for another build preparing the model in %s.", cache_root)
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def _export_version(folder: Path) -> int | None:
    try:
        value = json.loads((Path(folder) / INFO_FILE).read_text()).get("export_version")
    except (OSError, ValueError):
        return None
    return int(value) if isinstance(value, int) else None


def verified_cosine(folder: Path) -> float | None:
    """The cosine recorded when ``folder`` was verified (None if never verified/unreadable)."""
    try:
        value = json.loads((Path(folder) / INFO_FILE).read_text()).get("verified_cosine")
    except (OSError, ValueError):
        return None
    return float(value) if value is not None else None


# Texts the export is checked on, besides a sample of the corpus: a short query, padding in a
# mixed batch, and a text longer than the model's 256-token window (truncation must match).
PROBE_TEXTS = (
    "Why do some patients relapse after CD19 CAR T cell therapy?",
    "CRS",
    "Cytokine release syndrome (CRS) was graded by the ASTCT consensus criteria; grade ≥ 3 "
    "events occurred in 12% of patients (P < .001).",
    " ".join(["Antigen escape after CAR T cell therapy is a recurring finding."] * 40),
)


def prepare(
    spec: ModelSpec,
    cache_root: Path,
    torch_encoder: Callable[[], TorchEncoder],
    sample: Sequence[str] = (),
) -> Path | None:
    """A verified ONNX export of ``spec`` under ``cache_root/<model id>``, or None when ONNX
    Runtime is missing, the model cannot be exported, or the export's vectors differ from
    torch's (cosine < :data:`MIN_COSINE`). Reuses a previously verified export of the same
    model (``model_id`` hashes its files) made by this :data:`EXPORT_VERSION`: an export depends
    on nothing else, so one cache can serve every index built on the machine."""
    if not onnxruntime_available():
        log.info("ONNX Runtime not installed: queries will use torch.")
        return None
    reason = exportable(spec)
    if reason is not None:
        log.info("Not exporting %s to ONNX: %s.", spec.name, reason)
        return None
    folder = Path(cache_root) / spec.model_id.replace(":", "-")
    with cache_lock(Path(cache_root)):
        for stale in Path(cache_root).glob(".onnx-*"):  # left by a build killed mid-export
            shutil.rmtree(stale, ignore_errors=True)
        if all((folder / name).is_file() for name in FILES):
            if _export_version(folder) == EXPORT_VERSION:
                cosine = verified_cosine(folder)
                if cosine is not None and cosine < MIN_COSINE:
                    # verified before and failed: don't export again
                    log.info("ONNX export %s failed verification; delete it to retry.", folder)
                    return None
                if cosine is not None:
                    damage = _unloadable(folder)
                    if damage is None:
                        return folder
                    log.warning("ONNX export %s is damaged (%s): exporting again.", folder, damage)
            else:
                log.info("ONNX export %s is from an older carqa: exporting again.", folder)
        return _export_and_verify(spec, folder, torch_encoder, sample)


def _unloadable(folder: Path) -> str | None:
    """Why the verified export in ``folder`` cannot encode (None when it can).

    Why check a verified export again: it sits in a cache that outlives builds (a disk that
    filled up, a crash before the data reached the disk, a user's clean-up can leave a truncated
    ``model.onnx``), and a build trusts it blindly — every build crashed in ONNX Runtime with a
    traceback, and a damaged model linked into a build would pass that build's checksums. One
    session start and one short text cost well under a second; the build loads it anyway."""
    try:
        load_checked(folder, "fp32", threads=1)
    except Exception as error:  # whatever ONNX Runtime or the tokenizer make of a damaged file
        return error_line(error)
    return None


class _Damaged(Exception):
    """A model that loads but does not encode to one finite vector per text."""


def load_checked(folder: Path, precision: str, *, threads: int | None = None) -> OnnxEncoder:
    """An encoder of ``folder``'s ``precision`` model that has encoded one short text to a
    finite vector of its dimension; raises (anything ONNX Runtime or the tokenizer raise for a
    damaged file, or :class:`_Damaged`) when it cannot."""
    encoder = OnnxEncoder(folder, threads=threads, precision=precision)
    vector = encoder.encode([PROBE_TEXTS[1]])
    if vector.shape != (1, encoder.dim) or not np.isfinite(vector).all():
        raise _Damaged(f"it encodes to {vector.shape} vectors")
    return encoder


def error_line(error: BaseException) -> str:
    return str(error).splitlines()[0] if str(error) else type(error).__name__


def _export_and_verify(
    spec: ModelSpec,
    folder: Path,
    torch_encoder: Callable[[], TorchEncoder],
    sample: Sequence[str],
) -> Path | None:
    reference_model = torch_encoder()
    try:
        export(reference_model, folder)
        texts = [*PROBE_TEXTS, *list(sample)[:32]]
        reference = reference_model.encode(texts, batch_size=8)
        cosine = verify(OnnxEncoder(folder), reference, texts)
    except Exception as error:  # an exporter/runtime failure must not fail the build
        log.warning("ONNX export of %s failed (%s): queries will use torch.", spec.name, error)
        shutil.rmtree(folder, ignore_errors=True)
        return None
    record_verification(folder, cosine)
    if cosine < MIN_COSINE:
        log.warning(
            "ONNX export of %s differs from torch (min cosine %.6f < %s): not used.",
            spec.name,
            cosine,
            MIN_COSINE,
        )
        return None
    return folder
