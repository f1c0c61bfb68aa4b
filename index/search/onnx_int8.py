"""Build time: the int8 query encoder — quantise a verified ONNX export and check it ranks alike.

The int8 model (:func:`quantize`) is the same graph as the fp32 export
(:mod:`carqa.index.search.onnx_export`) with its matrix weights quantised per output channel
and activations quantised on the fly. It encodes one question about twice as fast as fp32 at a
cosine of ~0.99 to the fp32 vector — close, but not identical, so it is only used for
*queries*, against fp32 document vectors, and only after :func:`int8_agreement` showed it ranks
the index's sentences like fp32 does. (The plain per-tensor quantisation is faster to make but
lands at cosine ~0.96 and fails that check; see docs/benchmarks.md.)
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from carqa.index.search.onnx_encoder import INT8_MODEL_FILE, MODEL_FILE, OnnxEncoder
from carqa.index.search.onnx_export import cache_lock, error_line, load_checked

# What an int8 query encoder must show on the index's own sentences (see int8_agreement):
# mean cosine to the fp32 query vectors, share of probe queries with the same best sentence,
# and mean overlap of the ten best sentences. Measured on the PubMedQA corpus: the per-channel
# model gives 0.991 / 0.969 / 0.927; per-tensor quantisation 0.959 / 0.941 / 0.848 (refused).
INT8_MIN_MEAN_COSINE = 0.98
INT8_MIN_TOP1 = 0.9
INT8_MIN_OVERLAP = 0.85

log = logging.getLogger(__name__)


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
    vectors) for ``queries``, and whether that is close enough to serve int8 (``passed``).

    Rows are compared by their fp32 score, not by id: a row the int8 encoder ranks first
    agrees when fp32 scores it as high as its own first. A corpus that holds the same text
    twice (a republished abstract) has rows with equal vectors, and which of two equal rows a
    ranking lists first says nothing about the encoder."""
    a = fp32.encode(queries, batch_size=16)
    b = int8.encode(queries, batch_size=16)
    cosines = np.sum(a * b, axis=1)
    k = max(1, min(k, matrix.shape[0]))
    exact = a @ matrix.T
    top_a, top_b = _top_k(exact, k), _top_k(b @ matrix.T, k)
    best = np.take_along_axis(exact, top_a, axis=1)  # fp32's own top k, best first
    picked = np.take_along_axis(exact, top_b, axis=1)  # fp32's scores of int8's top k
    tolerance = 1e-6
    top1 = float(np.mean(picked[:, 0] >= best[:, 0] - tolerance))
    overlap = float(np.mean(np.sum(picked >= best[:, -1:] - tolerance, axis=1) / k))
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
                return load_checked(folder, "int8")
            except Exception as error:  # whatever ONNX Runtime makes of a damaged file
                log.warning(
                    "int8 model %s is damaged (%s): quantising again.", target, error_line(error)
                )
        quantize(folder)
        return load_checked(folder, "int8")
