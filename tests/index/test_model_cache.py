"""The per-user model cache: one verified ONNX export serves every index built on the machine."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
from carqa.index.search import onnx_encoder, onnx_export, onnx_int8
from carqa.index.search.embedder import export_root
from carqa.index.search.embedding import TorchEncoder, resolve_model
from carqa.index.search.layout import link_or_copy
from carqa.index.search.reader import Index

from carqa.settings import Settings
from tests.index.index_helpers import build, new_index_dir


class ExportAttempted(Exception):
    """Raised by a torch loader that must not be called: preparing the model again."""


def no_export() -> TorchEncoder:
    raise ExportAttempted


def test_a_second_index_reuses_the_shared_export(
    small_index_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The session's first build exported the model into the shared cache; a new index of
    another directory links that export instead of loading torch and exporting again."""
    monkeypatch.setattr(onnx_export, "_export_and_verify", lambda *args: no_export())
    index_dir = new_index_dir(small_index_dir, tmp_path / "second")
    report = build(index_dir)
    assert report.query_encoder == "onnx"
    assert not (index_dir / "cache" / "onnx").exists()  # nothing exported into the index
    shared = Path(Settings.load().model_cache_dir or "") / "onnx"
    (export,) = [p for p in shared.iterdir() if p.is_dir() and not p.name.startswith(".")]
    for name in onnx_encoder.FILES:
        # the build holds its own link (or copy): deleting the cache cannot break the index
        built = index_dir / "current" / "onnx" / name
        assert built.read_bytes() == (export / name).read_bytes()


def test_export_root_is_the_shared_cache_unless_turned_off(tmp_path: Path) -> None:
    index_dir = tmp_path / "index"
    shared = Settings.load(model_cache_dir=tmp_path / "models")
    assert export_root(shared, index_dir) == tmp_path / "models" / "onnx"
    off = Settings(model_cache_dir="")  # CARQA_MODEL_CACHE_DIR= (empty)
    assert off.model_cache_dir is None
    assert export_root(off, index_dir) == index_dir / "cache" / "onnx"


def test_an_unusable_model_cache_falls_back_to_the_index(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A cache path that cannot be a directory (here: below a file) must not fail the build."""
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    settings = Settings.load(model_cache_dir=blocker / "models")
    with caplog.at_level(logging.WARNING, logger="carqa.index.search.embedder"):
        assert export_root(settings, tmp_path / "index") == tmp_path / "index" / "cache" / "onnx"
    assert "exporting into the index" in caplog.text


@pytest.fixture
def session_export(small_index_dir: Path) -> Path:
    """The real export the session's first build made in the shared model cache."""
    spec = resolve_model("default")
    folder = Path(Settings.load().model_cache_dir or "") / "onnx" / spec.model_id.replace(":", "-")
    assert (folder / onnx_encoder.MODEL_FILE).is_file()
    return folder


def fake_export(root: Path, *, version: int | None, model_from: Path) -> Path:
    """An export folder as an earlier build would have left it: the model files of
    ``model_from`` (hard links: nothing here writes to them) and an ``encoder.json`` saying
    it was verified by export ``version``."""
    spec = resolve_model("default")
    folder = root / spec.model_id.replace(":", "-")
    folder.mkdir(parents=True)
    for name in (onnx_encoder.MODEL_FILE, onnx_encoder.TOKENIZER_FILE):
        link_or_copy(model_from / name, folder / name)
    info = json.loads((model_from / onnx_encoder.INFO_FILE).read_text())
    info.pop("export_version")
    if version is not None:
        info["export_version"] = version
    (folder / onnx_encoder.INFO_FILE).write_text(json.dumps(info))
    return folder


def test_a_current_export_is_reused_and_stale_work_folders_are_removed(
    tmp_path: Path, session_export: Path
) -> None:
    root = tmp_path / "onnx"
    folder = fake_export(root, version=onnx_export.EXPORT_VERSION, model_from=session_export)
    stale = root / ".onnx-killed"  # an export whose build was killed
    stale.mkdir()
    (stale / onnx_encoder.MODEL_FILE).write_bytes(b"half a model")
    assert onnx_export.prepare(resolve_model("default"), root, no_export) == folder
    assert not stale.exists()


def test_an_export_from_an_older_carqa_is_redone(tmp_path: Path, session_export: Path) -> None:
    """The cache outlives upgrades: an export another version of ``export`` wrote (or one from
    before the version was recorded) is made again rather than served."""
    root = tmp_path / "onnx"
    fake_export(root, version=None, model_from=session_export)
    with pytest.raises(ExportAttempted):
        onnx_export.prepare(resolve_model("default"), root, no_export)


def test_a_damaged_export_in_the_cache_is_redone_not_served(
    tmp_path: Path, session_export: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A verified export whose model.onnx was truncated later (disk full, crash, clean-up)
    crashed every build in ONNX Runtime; it is exported again instead."""
    root = tmp_path / "onnx"
    folder = fake_export(root, version=onnx_export.EXPORT_VERSION, model_from=session_export)
    model = folder / onnx_encoder.MODEL_FILE
    model.unlink()  # a new file, not the session's (the two are hard links)
    model.write_bytes(session_export.joinpath(onnx_encoder.MODEL_FILE).read_bytes()[:4096])
    with (
        caplog.at_level(logging.WARNING, logger="carqa.index.search.onnx_export"),
        pytest.raises(ExportAttempted),
    ):
        onnx_export.prepare(resolve_model("default"), root, no_export)
    assert "is damaged" in caplog.text


def test_a_build_waits_for_another_preparing_the_model(
    tmp_path: Path, session_export: Path
) -> None:
    """Two first builds on one machine: the second waits for the lock rather than exporting
    the same folder at the same time, then reuses what the first made."""
    import fcntl
    import threading

    root = tmp_path / "onnx"
    root.mkdir()
    holder = (root / onnx_export.LOCK_FILE).open("a+")
    fcntl.flock(holder.fileno(), fcntl.LOCK_EX)  # another build is exporting
    result: list[Path | None] = []
    waiter = threading.Thread(
        target=lambda: result.append(onnx_export.prepare(resolve_model("default"), root, no_export))
    )
    waiter.start()
    waiter.join(timeout=1.0)
    assert waiter.is_alive()  # blocked on the lock
    # the other build's export
    folder = fake_export(root, version=onnx_export.EXPORT_VERSION, model_from=session_export)
    fcntl.flock(holder.fileno(), fcntl.LOCK_UN)
    holder.close()
    waiter.join(timeout=10)
    assert result == [folder]


# -- the int8 query model in the cache --------------------------------------------------------

QUESTION = "Why do some patients relapse after CD19 CAR T cell therapy?"


def model_cache_with_int8(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, session_export: Path, int8: bytes
) -> Path:
    """A model cache of its own for this test's builds (``CARQA_MODEL_CACHE_DIR``), holding a
    current, verified export of the default model whose ``model.int8.onnx`` is ``int8``.
    Preparing the fp32 model again fails the test."""
    folder = fake_export(
        tmp_path / "models" / "onnx", version=onnx_export.EXPORT_VERSION, model_from=session_export
    )
    (folder / onnx_encoder.INT8_MODEL_FILE).write_bytes(int8)
    monkeypatch.setenv("CARQA_MODEL_CACHE_DIR", str(tmp_path / "models"))
    monkeypatch.setattr(onnx_export, "_export_and_verify", lambda *args: no_export())
    return folder


def test_a_damaged_int8_model_in_the_cache_is_quantised_again(
    small_index_dir: Path,
    tmp_path: Path,
    session_export: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A truncated model.int8.onnx in the cache (disk full, a crash) made every later build
    serve fp32 for good: the int8 check failed to load it and nothing ever made it again."""
    good = (session_export / onnx_encoder.INT8_MODEL_FILE).read_bytes()
    folder = model_cache_with_int8(tmp_path, monkeypatch, session_export, good[:4096])
    index_dir = new_index_dir(small_index_dir, tmp_path / "idx")
    with caplog.at_level(logging.WARNING):
        report = build(index_dir)
    assert "is damaged" in caplog.text and "quantising again" in caplog.text
    assert "No int8 query encoder" not in caplog.text
    assert report.query_precision == "int8"
    index = Index.open(index_dir)
    assert index.manifest["int8_check"]["passed"] is True
    assert (folder / onnx_encoder.INT8_MODEL_FILE).stat().st_size > 4096
    assert not list(folder.glob(".int8-*"))  # written to a temp file and renamed
    # the same int8 model as the session's index (quantisation is deterministic)
    served = Index.open(small_index_dir).encode_query(QUESTION)
    np.testing.assert_allclose(index.encode_query(QUESTION), served, atol=1e-6)


def test_an_int8_model_that_cannot_be_made_again_leaves_fp32_after_one_try(
    small_index_dir: Path,
    tmp_path: Path,
    session_export: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    folder = model_cache_with_int8(tmp_path, monkeypatch, session_export, b"not a model")
    attempts: list[Path] = []

    def quantize_garbage(target: Path) -> Path:
        attempts.append(Path(target))
        (Path(target) / onnx_encoder.INT8_MODEL_FILE).write_bytes(b"still not a model")
        return Path(target) / onnx_encoder.INT8_MODEL_FILE

    monkeypatch.setattr(onnx_int8, "quantize", quantize_garbage)
    index_dir = new_index_dir(small_index_dir, tmp_path / "idx")
    with caplog.at_level(logging.WARNING):
        report = build(index_dir)
    assert attempts == [folder]  # one retry, no loop
    assert "No int8 query encoder" in caplog.text and "queries use fp32" in caplog.text
    assert report.query_encoder == "onnx" and report.query_precision == "fp32"
    index = Index.open(index_dir)
    assert index.manifest["int8_check"] is None
    assert index.onnx_precision == "fp32"
    assert not (index.folder / "onnx" / onnx_encoder.INT8_MODEL_FILE).exists()


def test_an_int8_model_that_loads_is_not_made_again_when_its_check_fails(
    small_index_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Only an unloadable file is re-quantised: a model that ranks unlike fp32 is the
    agreement check's verdict, and quantising it again would give the same model."""

    def refuse(*args: object, **kwargs: object) -> dict[str, object]:
        return {"queries": 1, "mean_cosine": 0.9, "passed": False}

    def no_quantize(folder: Path) -> Path:
        raise AssertionError(f"quantised {folder} again")

    monkeypatch.setattr(onnx_int8, "int8_agreement", refuse)
    monkeypatch.setattr(onnx_int8, "quantize", no_quantize)
    index_dir = new_index_dir(small_index_dir, tmp_path / "idx")
    report = build(index_dir)  # the session's model cache, whose int8 model is healthy
    assert report.query_precision == "fp32"
    assert Index.open(index_dir).manifest["int8_check"]["passed"] is False
