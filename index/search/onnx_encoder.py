"""The same embedding model run by ONNX Runtime: a faster query path with identical vectors.

Why: encoding the question is the floor of every answer's latency, and ONNX Runtime runs
all-MiniLM-L6-v2 faster than torch for one short text. We export the model ourselves with
``torch.onnx.export`` (sentence-transformers' ``backend="onnx"`` needs ``optimum``, which pins
an older transformers) from the *local* model at build time, with mean pooling and L2
normalisation inside the graph, and tokenise with the model's own fast tokenizer
(``tokenizer.json`` via ``tokenizers``) — so serving needs neither torch nor transformers.

An export is only used after it has been checked against the torch vectors: every sample text
must have cosine ≥ :data:`MIN_COSINE` with sentence-transformers' vector. Otherwise callers fall
back to torch.

Layout of an encoder folder: ``model.onnx``, ``tokenizer.json``, ``encoder.json`` (model id,
dim, max_seq_length, the verified cosine), and optionally ``model.int8.onnx``.

The int8 model (:func:`quantize`) is the same graph with its matrix weights quantised per
output channel and activations quantised on the fly. On the 2-core machine it encodes one
question about 2x faster than fp32 (~4 ms vs ~8 ms) at a cosine of ~0.99 to the fp32 vector —
close, but not identical, so it is only used for *queries*, against fp32 document vectors, and
only after :func:`int8_agreement` showed it ranks the index's sentences like fp32 does.
(The plain per-tensor quantisation is faster to make but lands at cosine ~0.96 and fails that
check; see docs/benchmarks.md.)
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
from carqa.index.search.embedding import (
    ModelSpec,
    ProgressCallback,
    TorchEncoder,
    cpu_threads,
)

MODEL_FILE = "model.onnx"
INT8_MODEL_FILE = "model.int8.onnx"
TOKENIZER_FILE = "tokenizer.json"
INFO_FILE = "encoder.json"
MIN_COSINE = 0.9999
OPSET = 17
EXPORT_VERSION = 2
"""Bump when :func:`export` writes a different graph: exports live in a per-user cache that
outlives carqa upgrades, and one made by an older ``export`` is redone, not reused."""
LOCK_FILE = ".lock"
FILES = (MODEL_FILE, TOKENIZER_FILE, INFO_FILE)
PRECISIONS = ("fp32", "int8")

# What an int8 query encoder must show on the index's own sentences (see int8_agreement):
# mean cosine to the fp32 query vectors, share of probe queries with the same best sentence,
# and mean overlap of the ten best sentences. Measured on the PubMedQA corpus: the per-channel
# model gives 0.991 / 0.969 / 0.927; per-tensor quantisation 0.959 / 0.941 / 0.848 (refused).
INT8_MIN_MEAN_COSINE = 0.98
INT8_MIN_TOP1 = 0.9
INT8_MIN_OVERLAP = 0.85

# ONNX Runtime fusions we keep out of the graph, at export and at session start. Its CPU
# SkipLayerNormalization (residual Add + LayerNormalization in one op) is slower than the two
# ops it replaces: measured on the 2-core machine, without it bulk embedding ran 2-6% faster
# (5 of 5 paired runs), an int8 question 0.25 ms faster (3 of 3), and the export's fusion pass
# takes 0.7 s less. Vectors are unchanged (cosine 0.999999 to the fused graph's in fp32; in
# int8 equally close to fp32: mean cosine 0.9933 either way). See docs/benchmarks.md.
UNFUSED = ("SkipLayerNormFusion",)

log = logging.getLogger(__name__)


def onnxruntime_available() -> bool:
    try:
        import onnxruntime  # noqa: F401
        import tokenizers  # noqa: F401
    except ImportError:
        return False
    return True


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


class OnnxEncoder:
    """ONNX Runtime + ``tokenizers``: encode texts with an exported folder (see module doc)."""

    backend = "onnx"

    def __init__(
        self, folder: Path, *, threads: int | None = None, precision: str = "fp32"
    ) -> None:
        import onnxruntime as ort
        from tokenizers import Tokenizer

        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, not {precision!r}")
        self.folder = Path(folder)
        self.precision = precision
        self.info: dict[str, Any] = json.loads((self.folder / INFO_FILE).read_text())
        self.dim = int(self.info["dim"])
        self.max_seq_length = int(self.info["max_seq_length"])
        self.model_id = str(self.info["model_id"])
        self.tokenizer = Tokenizer.from_file(str(self.folder / TOKENIZER_FILE))
        # Truncate exactly where sentence-transformers does. No padding here: the model's
        # tokenizer.json may pad to a fixed length, and we pad each batch ourselves after
        # grouping texts by their token count (see encode).
        self.tokenizer.enable_truncation(self.max_seq_length)
        self.tokenizer.no_padding()
        pad_id = self.tokenizer.token_to_id("[PAD]")
        self.pad_id = pad_id if pad_id is not None else 0
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or cpu_threads()
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3
        model_file = INT8_MODEL_FILE if precision == "int8" else MODEL_FILE
        self.session = ort.InferenceSession(
            str(self.folder / model_file),
            options,
            providers=["CPUExecutionProvider"],
            disabled_optimizers=list(UNFUSED),
        )
        self._inputs = {i.name for i in self.session.get_inputs()}

    def _run(self, encodings: Sequence[Any]) -> np.ndarray:
        """Run the model on tokenised texts, padded to the longest of them."""
        length = max(len(e.ids) for e in encodings)
        ids = np.full((len(encodings), length), self.pad_id, dtype=np.int64)
        mask = np.zeros((len(encodings), length), dtype=np.int64)
        types = np.zeros((len(encodings), length), dtype=np.int64)
        for row, encoding in enumerate(encodings):
            n = len(encoding.ids)
            ids[row, :n] = encoding.ids
            mask[row, :n] = 1
            types[row, :n] = encoding.type_ids
        feeds = {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}
        return self.session.run(None, {k: v for k, v in feeds.items() if k in self._inputs})[0]

    def encode(
        self,
        texts: Sequence[str],
        *,
        batch_size: int = 32,
        on_batch: ProgressCallback | None = None,
    ) -> np.ndarray:
        """Normalised float32 vectors, one row per text, in input order.

        Texts are tokenised first and batched by *token* count, so a batch pads almost
        nothing. Ordering by characters is not enough: numbers, units and gene names cost many
        tokens per character, and one such text per batch padded the PubMedQA sentences by
        ~60% (the model then computes on padding); by token count it is ~4%, and bulk
        embedding runs ~1.6x faster.

        The int8 model encodes one text at a time: dynamic quantisation scales activations by
        the range of the whole batch, so a text's vector would depend on its batch neighbours.
        One at a time, a text always gets the vector it gets as a question."""
        if self.precision == "int8":
            batch_size = 1
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        if not len(texts):
            return out
        # One text (a question) skips encode_batch's hand-off to the tokenizer's thread pool:
        # 0.06 ms, and ~0.15 ms of a question's encoding in the answer loop (docs/benchmarks.md).
        if len(texts) == 1:
            encodings = [self.tokenizer.encode(texts[0])]
        else:
            encodings = self.tokenizer.encode_batch(list(texts))
        order = np.argsort(
            np.fromiter((len(e.ids) for e in encodings), dtype=np.int64, count=len(encodings)),
            kind="stable",
        )
        for begin in range(0, len(texts), batch_size):
            rows = order[begin : begin + batch_size]
            out[rows] = self._run([encodings[i] for i in rows])
            if on_batch is not None:
                on_batch(len(rows))
        return out


def quantize(folder: Path) -> Path:
    """Write ``folder/model.int8.onnx``: dynamic int8 quantisation of ``folder/model.onnx``.

    Per-channel weights (one scale per output column) keep the vectors at cosine ~0.99 to fp32
    where one scale per matrix gives ~0.96; ``reduce_range`` (7-bit weights) avoids the int16
    saturation of AVX2's u8×s8 kernels on CPUs without VNNI. Only MatMul and the fused
    Attention are quantised (the embedding lookup costs nothing and loses accuracy). Written to
    a temp file and renamed, so a killed build never leaves half a model.
    """
    from onnxruntime.quantization import QuantType, quantize_dynamic

    # It logs a pre-processing suggestion on the root logger (meant for CNNs) on every call.
    root = logging.getLogger()
    if not any(isinstance(f, _QuantizationAdvice) for f in root.filters):
        root.addFilter(_QuantizationAdvice())

    folder = Path(folder)
    target = folder / INT8_MODEL_FILE
    for stale in folder.glob(".int8-*.onnx"):  # left by a build killed mid-quantisation
        stale.unlink(missing_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=".int8-", suffix=".onnx", dir=folder)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        quantize_dynamic(
            str(folder / MODEL_FILE),
            str(tmp),
            weight_type=QuantType.QInt8,
            per_channel=True,
            reduce_range=True,
            op_types_to_quantize=["MatMul", "Attention"],
            # The fused graph's contrib ops defeat ONNX shape inference; they are all float.
            extra_options={"DefaultTensorType": 1},
        )
        tmp.chmod(0o644)  # mkstemp makes it private; the fp32 model is world-readable too
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    return target


class _QuantizationAdvice(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "pre-processing before quantization" not in record.getMessage()


def probe_queries(texts: Sequence[str], n: int = 256, words: int = 12) -> list[str]:
    """Question-sized probes for :func:`int8_agreement`: the first ``words`` words of ``n``
    texts spread evenly over ``texts`` (deterministic, so a rebuild checks the same probes)."""
    if not texts:
        return []
    picks = np.unique(np.linspace(0, len(texts) - 1, min(n, len(texts))).astype(int))
    probes = [" ".join(texts[i].split()[:words]) for i in picks.tolist()]
    return [p for p in probes if p]


def int8_agreement(
    fp32: OnnxEncoder, int8: OnnxEncoder, queries: Sequence[str], matrix: np.ndarray, k: int = 10
) -> dict[str, Any]:
    """How alike the int8 and fp32 encoders rank the rows of ``matrix`` (the index's sentence
    vectors) for ``queries``, and whether that is close enough to serve int8 (``passed``)."""
    a = fp32.encode(queries, batch_size=16)
    b = int8.encode(queries, batch_size=16)
    cosines = np.sum(a * b, axis=1)
    k = max(1, min(k, matrix.shape[0]))
    top_a, top_b = _top_k(a @ matrix.T, k), _top_k(b @ matrix.T, k)
    top1 = float(np.mean(top_a[:, 0] == top_b[:, 0]))
    overlap = float(np.mean([len(set(x) & set(y)) / k for x, y in zip(top_a, top_b, strict=True)]))
    mean_cosine = float(np.mean(cosines))
    return {
        "queries": len(queries),
        "mean_cosine": round(mean_cosine, 4),
        "min_cosine": round(float(np.min(cosines)), 4),
        "top1": round(top1, 4),
        f"overlap@{k}": round(overlap, 4),
        "passed": bool(
            mean_cosine >= INT8_MIN_MEAN_COSINE
            and top1 >= INT8_MIN_TOP1
            and overlap >= INT8_MIN_OVERLAP
        ),
    }


def _top_k(scores: np.ndarray, k: int) -> np.ndarray:
    """Column indices of each row's ``k`` highest scores, best first (a partial sort: the full
    argsort of 256 probes × every sentence was half a second of the build)."""
    if k >= scores.shape[1]:
        return np.argsort(-scores, axis=1, kind="stable")
    part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    order = np.argsort(-np.take_along_axis(scores, part, axis=1), axis=1, kind="stable")
    return np.take_along_axis(part, order, axis=1)


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
        _load_checked(folder, "fp32", threads=1)
    except Exception as error:  # whatever ONNX Runtime or the tokenizer make of a damaged file
        return _reason(error)
    return None


class _Damaged(Exception):
    """A model that loads but does not encode to one finite vector per text."""


def _load_checked(folder: Path, precision: str, *, threads: int | None = None) -> OnnxEncoder:
    """An encoder of ``folder``'s ``precision`` model that has encoded one short text to a
    finite vector of its dimension; raises (anything ONNX Runtime or the tokenizer raise for a
    damaged file, or :class:`_Damaged`) when it cannot."""
    encoder = OnnxEncoder(folder, threads=threads, precision=precision)
    vector = encoder.encode([PROBE_TEXTS[1]])
    if vector.shape != (1, encoder.dim) or not np.isfinite(vector).all():
        raise _Damaged(f"it encodes to {vector.shape} vectors")
    return encoder


def _reason(error: BaseException) -> str:
    return str(error).splitlines()[0] if str(error) else type(error).__name__


def int8_encoder(folder: Path) -> OnnxEncoder:
    """The int8 query encoder of the verified export in ``folder``, loaded and checked to
    encode: quantised on first use, and quantised again — once — when the cached
    ``model.int8.onnx`` does not load. Raises when there is still none (the caller serves fp32).

    Why re-quantise: like the fp32 export (see :func:`_unloadable`), the int8 model is made
    once per model in a cache that outlives builds, so a truncated or garbled file would
    otherwise turn every later build's int8 check into an exception and every index into fp32
    for good, with nothing telling the user to delete the file. A model that loads but ranks
    unlike fp32 is not "damaged": that is :func:`int8_agreement`'s verdict, and it is kept.
    Held under :func:`cache_lock` (the folder may be shared), which also makes a build that
    waited for another's repair reuse the repaired file."""
    folder = Path(folder)
    target = folder / INT8_MODEL_FILE
    with cache_lock(folder.parent):
        if target.is_file():
            try:
                return _load_checked(folder, "int8")
            except Exception as error:  # whatever ONNX Runtime makes of a damaged file
                log.warning(
                    "int8 model %s is damaged (%s): quantising again.", target, _reason(error)
                )
        quantize(folder)
        return _load_checked(folder, "int8")


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
