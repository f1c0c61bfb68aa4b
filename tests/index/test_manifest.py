"""``manifest.json`` on its own: written atomically, read back with every value checked, and
every listed file verified — without building an index (``test_build.py`` covers builds)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from carqa.index.search.manifest import (
    FORMAT_VERSION,
    MANIFEST_FILE,
    build_key,
    file_entries,
    read_manifest,
    sha256_file,
    verify_files,
    write_manifest,
)

from carqa.errors import IndexCorrupt, IndexMismatch

HINT = "Rebuild it."


def _build(folder: Path) -> dict[str, Any]:
    """A build folder with two small files and the manifest a build would write for them."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "meta.sqlite").write_bytes(b"invented metadata")
    (folder / "onnx").mkdir(exist_ok=True)
    (folder / "onnx" / "model.onnx").write_bytes(b"invented model" * 10)
    manifest = {
        "format_version": FORMAT_VERSION,
        "model": {"id": "sha256:abc", "dim": 8},
        "files": file_entries(folder, ["meta.sqlite", "onnx/model.onnx"]),
        "counts": {"papers": 2, "sentences": 5},
        "corpus": {"content_hash": "c0ffee"},
        "chunking": {"chunk_size": 400},
        "vectors": {"settings": {"ann_threshold": 100}, "chunks": {"kind": "flat"}},
        "query_precision_setting": "auto",
    }
    write_manifest(folder, manifest)
    return manifest


def test_a_written_manifest_reads_back_and_its_files_verify(tmp_path: Path) -> None:
    written = _build(tmp_path)
    assert read_manifest(tmp_path, rebuild_hint=HINT, required_files=("meta.sqlite",)) == written
    verify_files(tmp_path, written, rebuild_hint=HINT)
    entry = written["files"]["onnx/model.onnx"]
    assert entry == {"bytes": 140, "sha256": sha256_file(tmp_path / "onnx" / "model.onnx")}
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temp left


def test_the_build_key_is_what_decides_up_to_date(tmp_path: Path) -> None:
    manifest = _build(tmp_path)
    key = build_key(manifest)
    assert key == {
        "format_version": FORMAT_VERSION,
        "model_id": "sha256:abc",
        "chunking": {"chunk_size": 400},
        "vectors": {"ann_threshold": 100},
        "corpus_hash": "c0ffee",
        "query_precision": "auto",
        "lexical": None,  # a build without BM25 postings: rebuilt with them
    }
    changed = {**manifest, "corpus": {"content_hash": "other"}}
    assert build_key(changed) != key
    postings = {**manifest, "lexical": {"settings": {"head": 2000}}}
    assert build_key(postings)["lexical"] == {"head": 2000}
    del manifest["query_precision_setting"]  # a build that predates the setting: fp32 only
    assert build_key(manifest)["query_precision"] == "fp32"


def _edit(folder: Path, change: Any) -> None:
    path = folder / MANIFEST_FILE
    manifest = json.loads(path.read_text())
    change(manifest)
    path.write_text(json.dumps(manifest))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda m: m["model"].update(dim=0), "'model.dim' is 0"),
        (lambda m: m["model"].update(dim=True), "'model.dim' is True"),
        (lambda m: m["model"].pop("id"), "'model.id' is missing"),
        (lambda m: m["files"].update({"../outside": m["files"]["meta.sqlite"]}), "outside"),
        (lambda m: m["files"].update({"/etc/passwd": m["files"]["meta.sqlite"]}), "outside"),
        (lambda m: m["files"]["meta.sqlite"].pop("sha256"), "lacks its size or sha256"),
        (lambda m: m["files"].pop("meta.sqlite"), "does not list meta.sqlite"),
        (lambda m: m["counts"].update(papers="2"), "'counts.papers' is '2'"),
        (lambda m: m["corpus"].pop("content_hash"), "'corpus.content_hash' is missing"),
        (lambda m: m.update(vectors={"chunks": 3}), "'vectors' section"),
        (lambda m: m.update(counts=[]), "lacks the 'counts' section"),
    ],
)
def test_an_edited_or_damaged_value_is_refused_with_the_hint(
    tmp_path: Path, change: Any, message: str
) -> None:
    _build(tmp_path)
    _edit(tmp_path, change)
    with pytest.raises(IndexCorrupt, match=message) as raised:
        read_manifest(tmp_path, rebuild_hint=HINT, required_files=("meta.sqlite",))
    assert raised.value.hint == HINT


def test_another_format_version_is_a_mismatch_not_damage(tmp_path: Path) -> None:
    _build(tmp_path)
    _edit(tmp_path, lambda m: m.update(format_version=FORMAT_VERSION + 1))
    with pytest.raises(IndexMismatch, match=f"format version {FORMAT_VERSION + 1}"):
        read_manifest(tmp_path, rebuild_hint=HINT)


@pytest.mark.parametrize("content", ["", "{not json", "[1, 2]"])
def test_a_missing_or_unreadable_manifest_is_corrupt(tmp_path: Path, content: str) -> None:
    with pytest.raises(IndexCorrupt, match=r"has no manifest\.json"):
        read_manifest(tmp_path, rebuild_hint=HINT)
    (tmp_path / MANIFEST_FILE).write_text(content)
    with pytest.raises(IndexCorrupt, match=r"unreadable|not a JSON object"):
        read_manifest(tmp_path, rebuild_hint=HINT)


def test_a_changed_missing_or_resized_file_fails_verification(tmp_path: Path) -> None:
    manifest = _build(tmp_path)
    model = tmp_path / "onnx" / "model.onnx"
    model.write_bytes(b"Invented model" + model.read_bytes()[14:])  # same size, one byte off
    with pytest.raises(IndexCorrupt, match="does not match its checksum"):
        verify_files(tmp_path, manifest, rebuild_hint=HINT)
    model.write_bytes(b"short")
    with pytest.raises(IndexCorrupt, match="has 5 bytes, the manifest says 140"):
        verify_files(tmp_path, manifest, rebuild_hint=HINT)
    model.unlink()
    with pytest.raises(IndexCorrupt, match="is missing"):
        verify_files(tmp_path, manifest, rebuild_hint=HINT)
