"""The int8 query encoder: made at build time, served only when it ranks like fp32."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from carqa.index.search import onnx_encoder, onnx_int8
from carqa.index.search.reader import Index

from carqa.errors import InputError
from carqa.settings import Settings
from tests.index.index_helpers import build, new_index_dir


class _Fixed:
    """An encoder stand-in returning given vectors."""

    def __init__(self, vectors: np.ndarray) -> None:
        self.vectors = vectors

    def encode(self, texts: list[str], *, batch_size: int = 32) -> np.ndarray:
        return self.vectors[: len(texts)]


def _unit(rows: np.ndarray) -> np.ndarray:
    return (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float32)


def test_agreement_passes_a_close_encoder_and_refuses_a_different_one() -> None:
    rng = np.random.default_rng(7)
    matrix = _unit(rng.standard_normal((500, 32)))
    queries = [f"probe {i}" for i in range(64)]
    reference = _unit(rng.standard_normal((64, 32)))
    close = _unit(reference + 0.002 * rng.standard_normal((64, 32)))
    unrelated = _unit(rng.standard_normal((64, 32)))

    same = onnx_int8.int8_agreement(_Fixed(reference), _Fixed(close), queries, matrix)  # type: ignore[arg-type]
    assert same["passed"] is True
    assert same["mean_cosine"] > 0.99 and same["top1"] >= 0.9 and same["queries"] == 64

    other = onnx_int8.int8_agreement(_Fixed(reference), _Fixed(unrelated), queries, matrix)  # type: ignore[arg-type]
    assert other["passed"] is False
    assert other["overlap@10"] < 0.5


def test_probe_queries_are_short_spread_and_deterministic() -> None:
    texts = [f"sentence number {i} " + "word " * 30 for i in range(1000)]
    probes = onnx_int8.probe_queries(texts, n=10, words=5)
    assert len(probes) == 10
    assert probes[0] == "sentence number 0 word word"
    assert probes[-1].startswith("sentence number 999")
    assert probes == onnx_int8.probe_queries(texts, n=10, words=5)
    assert onnx_int8.probe_queries([]) == []


def test_the_build_quantises_checks_and_serves_int8(small_index_dir: Path) -> None:
    index = Index.open(small_index_dir)
    check = index.manifest["int8_check"]
    assert check["passed"] is True, check
    assert index.manifest["query_precision"] == "int8"
    assert (index.folder / "onnx" / onnx_encoder.INT8_MODEL_FILE).is_file()
    assert index.onnx_precision == "int8"

    fp32 = Index.open(small_index_dir, query_precision="fp32")
    question = "Why do some patients relapse after CD19 CAR T cell therapy?"
    a, b = fp32.encode_query(question), index.encode_query(question)
    cosine = float(a @ b)
    assert 0.97 < cosine < 0.99999  # close, and really another model
    best = [int(np.argmax(index.sentence_matrix @ v)) for v in (a, b)]
    assert best[0] == best[1]
    # a text's int8 vector does not depend on the texts encoded with it
    batch = index.encode(["CRS", question, "a much longer text about antigen escape " * 8])
    np.testing.assert_allclose(batch[1], b, atol=1e-6)


def test_fp32_setting_builds_without_an_int8_model(
    small_index_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CARQA_QUERY_PRECISION", "fp32")
    index_dir = new_index_dir(small_index_dir, tmp_path / "idx")
    report = build(index_dir)
    assert report.query_encoder == "onnx" and report.query_precision == "fp32"
    index = Index.open(index_dir, query_precision="int8")  # asked for, but none was built
    assert index.manifest["query_precision"] == "fp32" and index.manifest["int8_check"] is None
    assert not (index.folder / "onnx" / onnx_encoder.INT8_MODEL_FILE).exists()
    assert index.onnx_precision == "fp32"


def test_a_failed_check_keeps_fp32(
    small_index_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(*args: object, **kwargs: object) -> dict[str, object]:
        return {"queries": 1, "mean_cosine": 0.9, "passed": False}

    monkeypatch.setattr(onnx_int8, "int8_agreement", refuse)
    index_dir = new_index_dir(small_index_dir, tmp_path / "idx")
    report = build(index_dir)
    assert report.query_precision == "fp32"
    index = Index.open(index_dir)
    assert index.manifest["int8_check"]["passed"] is False
    assert index.onnx_precision == "fp32"


def test_changing_the_setting_rebuilds_from_the_cache(
    small_index_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    index_dir = new_index_dir(small_index_dir, tmp_path / "idx")
    assert build(index_dir).query_precision == "int8"
    assert build(index_dir).up_to_date
    monkeypatch.setenv("CARQA_QUERY_PRECISION", "fp32")
    report = build(index_dir)
    assert not report.up_to_date and report.texts_embedded == 0
    assert report.query_precision == "fp32"


def test_quantise_replaces_the_model_and_clears_leftovers(
    small_index_dir: Path, tmp_path: Path
) -> None:
    folder = tmp_path / "encoder"
    shutil.copytree(small_index_dir / "current" / "onnx", folder)
    (folder / onnx_encoder.INT8_MODEL_FILE).unlink()
    (folder / ".int8-killed.onnx").write_bytes(b"half a model")
    onnx_int8.quantize(folder)
    assert not list(folder.glob(".int8-*"))
    served = Index.open(small_index_dir).encode_query("CAR T cell expansion")
    fresh = onnx_encoder.OnnxEncoder(folder, precision="int8").encode(["CAR T cell expansion"])
    np.testing.assert_allclose(fresh[0], served, atol=1e-6)  # deterministic: same model again


def test_query_precision_setting_is_validated(
    small_index_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert Settings.load().query_precision == "auto"
    with pytest.raises(InputError, match="int4"):
        Index.open(small_index_dir, query_precision="int4")
    monkeypatch.setenv("CARQA_QUERY_PRECISION", "int4")
    with pytest.raises(InputError, match="query_precision"):
        Settings.load()


def test_agreement_counts_equal_rows_as_the_same_row() -> None:
    """A corpus holding each text several times (republished abstracts, replicated corpora)
    has equal rows; which copy a ranking lists first must not fail the check."""
    rng = np.random.default_rng(11)
    unique = _unit(rng.standard_normal((400, 32)))
    matrix = np.repeat(unique, 5, axis=0)  # every row five times, copies side by side
    queries = [f"probe {i}" for i in range(64)]
    reference = _unit(rng.standard_normal((64, 32)))
    close = _unit(reference + 0.002 * rng.standard_normal((64, 32)))

    result = onnx_int8.int8_agreement(_Fixed(reference), _Fixed(close), queries, matrix)  # type: ignore[arg-type]
    assert result["passed"] is True
    assert result["top1"] >= 0.9 and result["overlap@10"] >= 0.9
