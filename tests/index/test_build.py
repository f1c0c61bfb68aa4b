"""Building and publishing: caching, incremental adds, atomic publish, refusal of bad indexes."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from carqa.index.search.layout import BUILDS_DIR, CURRENT_LINK, BuildBusy, build_lock, current_build
from carqa.index.search.manifest import MANIFEST_FILE
from carqa.index.search.reader import Index

from carqa.errors import CarqaError, IndexCorrupt, IndexMismatch, IndexNotFound
from tests.index.index_helpers import (
    SMALL_CHUNKS,
    add_papers,
    build,
    invented_paper,
    new_index_dir,
)


@pytest.fixture
def index_dir(small_index_dir: Path, tmp_path: Path) -> Path:
    """A fresh index dir, built once (all vectors from the copied cache)."""
    target = new_index_dir(small_index_dir, tmp_path / "idx")
    report = build(target)
    assert report.texts_embedded == 0 and not report.up_to_date
    return target


def test_small_index_dir_layout(small_index_dir: Path) -> None:
    build = current_build(small_index_dir)
    assert build is not None and build.parent.name == BUILDS_DIR
    assert (small_index_dir / CURRENT_LINK).is_symlink()
    assert not os.path.isabs(os.readlink(small_index_dir / CURRENT_LINK))  # relocatable
    names = {p.name for p in build.iterdir()}
    assert {MANIFEST_FILE, "meta.sqlite", "chunks.faiss", "sentences.npy", "bm25"} <= names
    assert "sentences.faiss" not in names  # sentences.npy holds the sentence vectors
    assert (small_index_dir / "cache" / "embeddings.sqlite").is_file()
    manifest = json.loads((build / MANIFEST_FILE).read_text())
    assert manifest["model"]["dim"] == 384
    assert manifest["counts"]["papers"] == 22
    assert set(manifest["files"]) >= {"meta.sqlite", "chunks.faiss", "sentences.npy"}
    assert {"bm25/vocab.json", "bm25/docs.npy", "bm25/head_docs.npy"} <= set(manifest["files"])
    assert not list(build.rglob("*.pkl")) and not list(build.rglob("*.pickle"))


def test_warm_rebuild_is_up_to_date_and_embeds_nothing(index_dir: Path) -> None:
    before = current_build(index_dir)
    report = build(index_dir)
    assert report.up_to_date
    assert report.texts_embedded == 0
    assert report.seconds < 5
    assert current_build(index_dir) == before


def test_changed_chunking_rebuilds_from_cache(index_dir: Path) -> None:
    before = current_build(index_dir)
    report = build(index_dir, chunk_settings=SMALL_CHUNKS)
    assert not report.up_to_date
    assert report.texts_embedded == 0  # sentence and title vectors all cached
    assert current_build(index_dir) != before
    index = Index.open(index_dir)
    assert index.manifest["chunking"]["chunk_size"] == SMALL_CHUNKS.chunk_size


def test_an_index_made_by_older_sentence_rules_is_rebuilt_not_up_to_date(
    index_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """When the splitter's rules change while the chunk settings an index records do not, an
    index made by the old rules is rebuilt, not called up to date with its old sentences."""
    import dataclasses

    from carqa.index.search import chunking

    before = current_build(index_dir)
    older = dataclasses.replace(
        chunking.ChunkSettings(), splitter="sections>sentences-v1>langchain-merge"
    )
    build(index_dir, chunk_settings=older)  # as if built by the previous rules
    report = build(index_dir)
    assert not report.up_to_date and report.texts_embedded == 0
    assert current_build(index_dir) != before
    recorded = Index.open(index_dir).manifest["chunking"]["splitter"]
    assert recorded == f"sections>sentences-v{chunking.RULES_VERSION}>langchain-merge"


def test_adding_papers_embeds_only_their_new_texts(index_dir: Path) -> None:
    before = Index.open(index_dir)
    add_papers(index_dir, [invented_paper("99000001", "grade 2 neurotoxicity")])
    report = build(index_dir)
    # 3 sentences + 1 title are new; everything else comes from the cache
    assert report.texts_embedded == 4
    assert report.texts_cached == report.sentences + 22 - 3  # 22 titles before, 88 sentences
    after = Index.open(index_dir)
    assert len(after.papers) == len(before.papers) + 1
    assert len(after.sentences) == len(before.sentences) + 3
    vector = after.encode_query("How often was grade 2 neurotoxicity seen in recipients?")
    top = after.search_chunks(vector, 1)[0][0]
    assert after.chunks[top].pmid == "99000001"


def test_the_build_reports_each_step_through_its_progress_callback(index_dir: Path) -> None:
    """The index layer draws nothing: it tells the callback (the CLI's bars) how far it is."""
    add_papers(index_dir, [invented_paper("99000002", "late cytopenia")])
    calls: list[tuple[str, int, int | None]] = []
    build(index_dir, on_progress=lambda stage, done, total: calls.append((stage, done, total)))
    stages = list(dict.fromkeys(stage for stage, _, _ in calls))
    assert stages[0] == "Chunking" and stages[-1] == "Publishing the index"
    assert "Query encoder" in stages
    embedding = [(done, total) for stage, done, total in calls if stage.startswith("Embedding")]
    assert embedding[0] == (0, 4) and embedding[-1] == (4, 4)  # 3 new sentences + 1 title
    for stage in stages:  # every step is reported finished
        done, total = [(d, t) for s, d, t in calls if s == stage][-1]
        assert done == total


def test_previous_build_is_kept_for_rollback_and_older_ones_removed(index_dir: Path) -> None:
    first = current_build(index_dir)
    build(index_dir, chunk_settings=SMALL_CHUNKS)
    second = current_build(index_dir)
    add_papers(index_dir, [invented_paper("99000002", "prolonged cytopenia")])
    report = build(index_dir, chunk_settings=SMALL_CHUNKS)
    third = current_build(index_dir)
    assert first and second and third and len({first, second, third}) == 3
    remaining = sorted(p for p in (index_dir / BUILDS_DIR).iterdir())
    assert remaining == sorted([second, third])
    assert report.removed_builds == [first.name]
    assert Index.open(second).build_id == second.name  # the previous build still opens


def test_chunk_vectors_are_normalised_means_of_their_sentences_and_title(
    small_index_dir: Path,
) -> None:
    from carqa.index.search.embedding import normalise

    # fp32: the build embeds documents with the verified fp32 model, never the int8 one
    small_index = Index.open(small_index_dir, query_precision="fp32")
    paper = small_index.papers["90000002"]
    chunk = next(c for c in small_index.chunks if c.pmid == paper.pmid)
    rows = small_index.sentence_matrix[chunk.sentence_start : chunk.sentence_end]
    title = small_index.encode([paper.title or ""])
    expected = normalise((rows.sum(axis=0) + title[0])[None, :])[0]
    stored = small_index.chunk_index.index.reconstruct(chunk.id)
    np.testing.assert_allclose(stored, expected, atol=1e-4)


def test_a_second_build_at_the_same_time_is_refused(index_dir: Path) -> None:
    with build_lock(index_dir), pytest.raises(BuildBusy):
        build(index_dir, chunk_settings=SMALL_CHUNKS)


# -- refusing bad indexes ------------------------------------------------------------------


def _fake_model(tmp_path: Path, *, dim: int | None = None) -> Path:
    """A copy of the default model folder (weights symlinked) whose config differs."""
    from carqa.index.search.embedding import default_model_dir

    source = default_model_dir()
    target = tmp_path / "other-model"
    shutil.copytree(source, target, symlinks=True, ignore=shutil.ignore_patterns("*.safetensors"))
    (target / "model.safetensors").symlink_to(source / "model.safetensors")
    config = json.loads((target / "config.json").read_text())
    config["note"] = "a different model"
    (target / "config.json").write_text(json.dumps(config))
    if dim is not None:
        pooling = target / "1_Pooling" / "config.json"
        data = json.loads(pooling.read_text())
        data["word_embedding_dimension"] = dim
        pooling.write_text(json.dumps(data))
    return target


def test_opening_with_another_model_is_refused_with_a_rebuild_hint(
    small_index_dir: Path, tmp_path: Path
) -> None:
    other = _fake_model(tmp_path)
    with pytest.raises(IndexMismatch) as error:
        Index.open(small_index_dir, model=str(other))
    assert "was built with model 'default'" in error.value.message
    assert f"carqa build --index-dir {small_index_dir}" in (error.value.hint or "")
    # the model it was built with is fine, by name or by path
    assert Index.open(small_index_dir, model="default").build_id


def test_index_whose_dimension_differs_from_the_model_is_refused(
    index_dir: Path, tmp_path: Path
) -> None:
    build_dir = current_build(index_dir)
    assert build_dir is not None
    manifest_file = build_dir / MANIFEST_FILE
    manifest = json.loads(manifest_file.read_text())
    manifest["model"]["dim"] = 768
    manifest_file.write_text(json.dumps(manifest))
    with pytest.raises(IndexMismatch) as error:
        Index.open(index_dir)
    assert "384-d vector index for a 768-d model" in error.value.message
    assert "carqa build" in (error.value.hint or "")


def test_a_model_with_another_dimension_is_refused(index_dir: Path, tmp_path: Path) -> None:
    other = _fake_model(tmp_path, dim=768)
    build_dir = current_build(index_dir)
    assert build_dir is not None
    # pretend the index was built with this model id, so only the dimension differs
    from carqa.index.search.embedding import resolve_model

    manifest_file = build_dir / MANIFEST_FILE
    manifest = json.loads(manifest_file.read_text())
    manifest["model"]["id"] = resolve_model(str(other)).model_id
    manifest_file.write_text(json.dumps(manifest))
    with pytest.raises(IndexMismatch, match="768-dimensional vectors"):
        Index.open(index_dir, model=str(other))


def test_other_format_version_is_refused(index_dir: Path) -> None:
    build_dir = current_build(index_dir)
    assert build_dir is not None
    manifest = json.loads((build_dir / MANIFEST_FILE).read_text())
    manifest["format_version"] = 999
    (build_dir / MANIFEST_FILE).write_text(json.dumps(manifest))
    with pytest.raises(IndexMismatch, match="format version 999"):
        Index.open(index_dir)


@pytest.mark.parametrize(
    "name", ["sentences.npy", "chunks.faiss", "meta.sqlite", "bm25/scores.npy", "bm25/vocab.json"]
)
def test_damaged_file_is_refused(index_dir: Path, name: str) -> None:
    build_dir = current_build(index_dir)
    assert build_dir is not None
    path = build_dir / name
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(IndexCorrupt, match="checksum") as error:
        Index.open(index_dir)
    assert "carqa build" in (error.value.hint or "")


def test_truncated_or_missing_files_are_refused(index_dir: Path) -> None:
    build_dir = current_build(index_dir)
    assert build_dir is not None
    with (build_dir / "sentences.npy").open("r+b") as handle:
        handle.truncate(100)
    with pytest.raises(IndexCorrupt, match="bytes"):
        Index.open(index_dir)
    (build_dir / "bm25" / "docs.npy").unlink()
    with pytest.raises(IndexCorrupt, match="missing"):
        Index.open(index_dir)
    (build_dir / MANIFEST_FILE).write_text("{not json")
    with pytest.raises(IndexCorrupt, match="unreadable"):
        Index.open(index_dir)


def test_a_damaged_index_is_replaced_by_the_next_build(index_dir: Path) -> None:
    build_dir = current_build(index_dir)
    assert build_dir is not None
    (build_dir / "chunks.faiss").write_bytes(b"garbage")
    report = build(index_dir)
    assert not report.up_to_date and report.texts_embedded == 0
    assert Index.open(index_dir).search_chunks(np.ones(384, np.float32) / 384**0.5, 3)


def test_a_same_size_damaged_file_is_rebuilt_not_reported_up_to_date(index_dir: Path) -> None:
    # Index.open refuses it and says "carqa build"; that build must not answer "up to date".
    build_dir = current_build(index_dir)
    assert build_dir is not None
    path = build_dir / "chunks.faiss"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(IndexCorrupt, match="checksum"):
        Index.open(index_dir)
    report = build(index_dir)
    assert not report.up_to_date and report.texts_embedded == 0
    assert Index.open(index_dir).build_id == report.build_id


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


@pytest.mark.parametrize("how", ["absolute", "relative"])
def test_a_current_leading_outside_builds_is_refused_and_replaced(
    index_dir: Path, tmp_path: Path, how: str
) -> None:
    """``current`` must lead to a build of this index: one leading elsewhere (here an intact
    copy of a build, outside ``builds/``) was served by ``Index.open`` and reported "up to
    date" by ``carqa build``, so the index could not be repaired by rebuilding."""
    build_dir = current_build(index_dir)
    assert build_dir is not None
    outside = tmp_path / "elsewhere" / build_dir.name
    shutil.copytree(build_dir, outside)
    before = _files(outside)
    link = index_dir / CURRENT_LINK
    link.unlink()
    link.symlink_to(outside if how == "absolute" else os.path.relpath(outside, index_dir))
    with pytest.raises(IndexCorrupt, match="outside") as error:
        Index.open(index_dir)
    assert f"carqa build --index-dir {index_dir}" in (error.value.hint or "")

    report = build(index_dir)
    assert not report.up_to_date and report.texts_embedded == 0
    assert link.is_symlink() and not os.path.isabs(os.readlink(link))
    assert current_build(index_dir) == (index_dir / BUILDS_DIR / report.build_id).resolve()
    assert Index.open(index_dir).build_id == report.build_id
    assert _files(outside) == before  # neither written nor pruned


@pytest.mark.parametrize(
    ("target", "problem"),
    [("builds/{build}/onnx", "not to a build folder"), ("current", "cannot be followed")],
)
def test_a_current_leading_into_a_build_or_in_a_loop_is_refused_and_replaced(
    index_dir: Path, target: str, problem: str
) -> None:
    build_dir = current_build(index_dir)
    assert build_dir is not None
    link = index_dir / CURRENT_LINK
    link.unlink()
    link.symlink_to(target.format(build=build_dir.name))
    with pytest.raises(IndexCorrupt, match=problem) as error:
        Index.open(index_dir)
    assert "carqa build --index-dir" in (error.value.hint or "")
    report = build(index_dir)
    assert not report.up_to_date
    assert Index.open(index_dir).build_id == report.build_id


def test_a_folder_named_current_is_refused_not_replaced(index_dir: Path) -> None:
    """A real folder at ``current`` (not the link a build writes) is not opened, and a build
    refuses it up front instead of building and then failing to replace it."""
    build_dir = current_build(index_dir)
    assert build_dir is not None
    link = index_dir / CURRENT_LINK
    link.unlink()
    shutil.copytree(build_dir, link)
    with pytest.raises(IndexCorrupt, match="is a folder") as error:
        Index.open(index_dir)
    assert "Move" in (error.value.hint or "")
    builds = sorted((index_dir / BUILDS_DIR).iterdir())
    with pytest.raises(CarqaError, match="is a folder") as refused:
        build(index_dir)
    assert "Move" in (refused.value.hint or "")
    assert "carqa build --index-only" in (refused.value.hint or "")  # the corpus is stored
    assert sorted((index_dir / BUILDS_DIR).iterdir()) == builds
    assert (link / MANIFEST_FILE).is_file() and not link.is_symlink()


_MANIFEST_EDITS = {
    "vectors not an object": lambda m: m.update(vectors="flat"),
    "file entry not an object": lambda m: m["files"].update({"meta.sqlite": 5}),
    "count not a number": lambda m: m["counts"].update(papers="22"),
    "dimension not a number": lambda m: m["model"].update(dim="384"),
    "no model id": lambda m: m["model"].pop("id"),
    "file outside the build": lambda m: m["files"].update(
        {"../../outside": {"bytes": 1, "sha256": "0" * 64}}
    ),
    "core file not listed": lambda m: m["files"].pop("meta.sqlite"),
}


@pytest.mark.parametrize("edit", list(_MANIFEST_EDITS))
def test_an_edited_manifest_is_refused_with_a_hint_and_rebuilt(index_dir: Path, edit: str) -> None:
    build_dir = current_build(index_dir)
    assert build_dir is not None
    manifest = json.loads((build_dir / MANIFEST_FILE).read_text())
    _MANIFEST_EDITS[edit](manifest)
    (build_dir / MANIFEST_FILE).write_text(json.dumps(manifest))
    with pytest.raises(IndexCorrupt, match="damaged or was edited") as error:
        Index.open(index_dir)
    assert "carqa build" in (error.value.hint or "")
    report = build(index_dir)  # not a traceback, not "up to date"
    assert not report.up_to_date and report.texts_embedded == 0
    assert Index.open(index_dir).build_id == report.build_id


def test_no_pickle_on_the_load_path() -> None:
    root = Path(__file__).resolve().parents[2] / "index"
    for path in root.glob("*.py"):
        source = path.read_text()
        assert "import pickle" not in source, path
        assert "allow_pickle=True" not in source, path
        assert "load_local" not in source, path


def test_rebuild_hints_quote_an_index_dir_with_spaces(tmp_path: Path) -> None:
    # The hint is a command to paste: an unquoted "My Index" would be two arguments.
    index_dir = tmp_path / "My Index [2]"
    index_dir.mkdir()
    with pytest.raises(IndexNotFound) as error:
        Index.open(index_dir)
    assert f"carqa build --index-dir '{index_dir}'" in (error.value.hint or "")
    (index_dir / CURRENT_LINK).symlink_to("builds/missing")
    with pytest.raises(IndexCorrupt) as error:
        Index.open(index_dir)
    assert f"carqa build --index-dir '{index_dir}' --from FILE" in (error.value.hint or "")
