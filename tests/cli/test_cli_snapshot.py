"""``carqa snapshot export`` / ``import``: a corpus moved between machines, and the refusals
that leave the target as it was."""

from __future__ import annotations

from pathlib import Path

from carqa.index.corpus.store import CorpusStore

from tests.cli.helpers import (
    CAR_T,
    invoke,
    no_traceback,
    store_car_t,
    write_jsonl,
)


def test_snapshot_export_then_import(tmp_path: Path, fake_index_builder: list) -> None:
    source, target = tmp_path / "a", tmp_path / "b"
    assert (
        invoke("build", "--from", str(CAR_T), "--index-dir", str(source), "--no-index").exit_code
        == 0
    )
    snap = tmp_path / "corpus.carqa.jsonl.gz"
    exported = invoke("snapshot", "export", str(snap), "--index-dir", str(source))
    assert exported.exit_code == 0, exported.output
    assert "Wrote 22 papers (seed 90000001)" in exported.output

    imported = invoke("snapshot", "import", str(snap), "--index-dir", str(target), "--no-index")
    assert imported.exit_code == 0, imported.output
    assert fake_index_builder == []
    with CorpusStore.open(source) as a, CorpusStore.open(target) as b:
        assert a.content_hash() == b.content_hash()

    rebuilt = invoke("snapshot", "import", str(snap), "--index-dir", str(target))
    assert rebuilt.exit_code == 0, rebuilt.output
    assert fake_index_builder == [(22, target, "default")]


def test_snapshot_errors(tmp_path: Path) -> None:
    result = invoke(
        "snapshot", "export", str(tmp_path / "x.gz"), "--index-dir", str(tmp_path / "empty")
    )
    assert result.exit_code == 2 and "No corpus" in result.output
    result = invoke("snapshot", "import", str(CAR_T), "--index-dir", str(tmp_path), "--no-index")
    assert result.exit_code == 2 and "not a readable carqa snapshot" in result.output
    result = invoke(
        "snapshot",
        "import",
        str(tmp_path / "missing.gz"),
        "--index-dir",
        str(tmp_path),
        "--no-index",
    )
    assert result.exit_code == 2 and "does not exist" in result.output
    no_traceback(result)


def test_snapshot_export_to_a_directory_or_missing_folder(tmp_path: Path) -> None:
    store_car_t(tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    result = invoke("snapshot", "export", str(out), "--index-dir", str(tmp_path))
    assert result.exit_code == 2, result.output
    assert "is a directory" in result.stderr
    no_traceback(result)
    missing = tmp_path / "missing" / "corpus.carqa.jsonl.gz"
    result = invoke("snapshot", "export", str(missing), "--index-dir", str(tmp_path))
    assert result.exit_code == 2, result.output
    assert "does not exist" in result.stderr
    assert not missing.parent.exists() and list(out.iterdir()) == []
    # "new/" is a folder, not a file named "new" (a Path drops the slash).
    result = invoke("snapshot", "export", f"{tmp_path / 'new'}/", "--index-dir", str(tmp_path))
    assert result.exit_code == 2, result.output
    assert "names a folder" in result.stderr
    assert not (tmp_path / "new").exists()
    no_traceback(result)


def test_snapshot_export_onto_the_corpus_store_is_refused(tmp_path: Path) -> None:
    """It wrote the snapshot over corpus.sqlite, said "Wrote 22 papers", and every later
    command found no readable corpus."""
    before = store_car_t(tmp_path)
    store = tmp_path / "corpus.sqlite"
    result = invoke("snapshot", "export", str(store), "--index-dir", str(tmp_path))
    assert result.exit_code == 2, result.output
    assert "is the corpus store" in result.stderr
    no_traceback(result)
    with CorpusStore.open(tmp_path) as opened:
        assert opened.content_hash() == before


def test_snapshot_import_of_a_directory_says_so(tmp_path: Path) -> None:
    result = invoke("snapshot", "import", str(tmp_path), "--index-dir", str(tmp_path / "b"))
    assert result.exit_code == 2, result.output
    assert "is a directory, not a snapshot file" in result.stderr
    no_traceback(result)
    assert not (tmp_path / "b").exists()


def test_snapshot_import_checks_chunk_settings_before_replacing(tmp_path: Path) -> None:
    source, target = tmp_path / "a", tmp_path / "b"
    other = write_jsonl(tmp_path / "other.jsonl", [{"pmid": "5", "abstract": "Invented."}])
    for corpus, where in ((CAR_T, source), (other, target)):
        built = invoke("build", "--from", str(corpus), "--index-dir", str(where), "--no-index")
        assert built.exit_code == 0, built.output
    snap = tmp_path / "corpus.carqa.jsonl.gz"
    assert invoke("snapshot", "export", str(snap), "--index-dir", str(source)).exit_code == 0

    env = {"CARQA_CHUNK_SIZE": "100"}
    result = invoke("snapshot", "import", str(snap), "--index-dir", str(target), env=env)
    assert result.exit_code == 2
    no_traceback(result)
    assert "CARQA_CHUNK_OVERLAP (150, the default)" in result.stderr
    with CorpusStore.open(target) as store:
        assert store.pmids() == ["5"]


def test_a_refused_snapshot_import_creates_no_store(tmp_path: Path) -> None:
    """As with `build --from` sources holding no papers: a file that is not a snapshot left
    a new, empty corpus.sqlite behind, which `build --index-only` then called 'no papers'."""
    target = tmp_path / "fresh"
    result = invoke("snapshot", "import", str(CAR_T), "--index-dir", str(target), "--no-index")
    assert result.exit_code == 2 and "not a readable carqa snapshot" in result.stderr
    no_traceback(result)
    assert not target.exists()


def test_snapshot_import_without_index_says_so(tmp_path: Path) -> None:
    store_car_t(tmp_path / "a")
    snap = tmp_path / "corpus.carqa.jsonl.gz"
    assert (
        invoke("snapshot", "export", str(snap), "--index-dir", str(tmp_path / "a")).exit_code == 0
    )
    result = invoke(
        "snapshot", "import", str(snap), "--index-dir", str(tmp_path / "b"), "--no-index"
    )
    assert result.exit_code == 0, result.output
    assert "not built (--no-index)" in result.stdout  # as `carqa build --no-index` says
