"""The embedding model run by ONNX Runtime: the serve-time query encoder, without torch.

Why: encoding the question is the floor of every answer's latency, and ONNX Runtime runs
all-MiniLM-L6-v2 faster than torch for one short text. The build exports the model
(:mod:`carqa.index.search.onnx_export`, which needs torch) with mean pooling and L2
normalisation inside the graph; here it is run with ONNX Runtime and tokenised with the
model's own fast tokenizer (``tokenizer.json`` via ``tokenizers``) — so serving needs neither
torch nor transformers.

Layout of an encoder folder: ``model.onnx``, ``tokenizer.json``, ``encoder.json`` (model id,
dim, max_seq_length, the verified cosine), and optionally ``model.int8.onnx``: the same graph
with int8 weights, used only for queries and only when the build showed it ranks the index's
sentences like fp32 (:func:`carqa.index.search.onnx_int8.int8_agreement`).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from carqa.index.search.embedding import BatchCallback, cpu_threads, encode_in_order

MODEL_FILE = "model.onnx"
INT8_MODEL_FILE = "model.int8.onnx"
TOKENIZER_FILE = "tokenizer.json"
INFO_FILE = "encoder.json"
FILES = (MODEL_FILE, TOKENIZER_FILE, INFO_FILE)
PRECISIONS = ("fp32", "int8")

# ONNX Runtime fusions we keep out of the graph, at export and at session start. Its CPU
# SkipLayerNormalization (residual Add + LayerNormalization in one op) is slower than the two
# ops it replaces: measured on the 2-core machine, without it bulk embedding ran 2-6% faster
# (5 of 5 paired runs), an int8 question 0.25 ms faster (3 of 3), and the export's fusion pass
# takes 0.7 s less. Vectors are unchanged (cosine 0.999999 to the fused graph's in fp32; in
# int8 equally close to fp32: mean cosine 0.9933 either way). See docs/benchmarks.md.
UNFUSED = ("SkipLayerNormFusion",)


def onnxruntime_available() -> bool:
    try:
        import onnxruntime  # noqa: F401
        import tokenizers  # noqa: F401
    except ImportError:
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
        on_batch: BatchCallback | None = None,
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
        if not len(texts):
            return np.empty((0, self.dim), dtype=np.float32)
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
        return encode_in_order(
            order,
            self.dim,
            batch_size,
            lambda rows: self._run([encodings[i] for i in rows]),
            on_batch,
        )
