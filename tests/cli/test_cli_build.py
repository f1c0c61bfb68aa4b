"""``carqa build`` from files: sources read, refused or reported, the index build run or
checked before the corpus is written."""

from __future__ import annotations

from pathlib import Path

import pytest
from carqa.index.corpus.store import CorpusStore

from tests.cli.helpers import (
    CAR_T,
    MARKUP_XML,
    invoke,
    no_traceback,
    store_car_t,
    write_jsonl,
)
from tests.index.fixtures.entrez.fake_entrez import FakeEntrez
from tests.index.medline_xml import medline_set, write

# -- offline sources -----------------------------------------------------------------------


def test_build_from_jsonl_without_index(tmp_path: Path) -> None:
    result = invoke("build", "--from", str(CAR_T), "--index-dir", str(tmp_path), "--no-index")
    assert result.exit_code == 0, result.output
    assert "Papers written" in result.output and "22" in result.output
    assert "90000001" in result.output  # the seed
    assert "not built (--no-index)" in result.output
    with CorpusStore.open(tmp_path) as store:
        assert store.counts()["papers"] == 22
        assert store.seed_pmid() == "90000001"


def test_build_from_xml_then_add_upserts(tmp_path: Path) -> None:
    extra = write_jsonl(tmp_path / "extra.jsonl", [{"pmid": "5", "abstract": "Invented."}])
    assert (
        invoke(
            "build", "--from", str(MARKUP_XML), "--index-dir", str(tmp_path), "--no-index"
        ).exit_code
        == 0
    )
    result = invoke(
        "build", "--from", str(extra), "--add", "--index-dir", str(tmp_path), "--no-index"
    )
    assert result.exit_code == 0, result.output
    assert "add (upsert)" in result.output
    with CorpusStore.open(tmp_path) as store:
        assert store.pmids() == ["5", "90100001", "90100002"]
    # without --add the corpus is replaced
    assert (
        invoke("build", "--from", str(extra), "--index-dir", str(tmp_path), "--no-index").exit_code
        == 0
    )
    with CorpusStore.open(tmp_path) as store:
        assert store.pmids() == ["5"]


def test_build_runs_the_index_builder(tmp_path: Path, fake_index_builder: list) -> None:
    result = invoke(
        "build", "--from", str(CAR_T), "--index-dir", str(tmp_path), "--model", "some-model"
    )
    assert result.exit_code == 0, result.output
    assert fake_index_builder == [(22, tmp_path, "some-model")]
    assert "built: build b1" in result.output
    assert "22 papers, 44 chunks, 66 sentences" in result.output
    assert "110 texts embedded, 0 from cache (fake-model, onnx) in 1.5 s" in result.output


def test_index_only_indexes_the_stored_corpus(
    tmp_path: Path, fake_index_builder: list, fake_pubmed: FakeEntrez
) -> None:
    before = store_car_t(tmp_path)
    result = invoke("build", "--index-only", "--index-dir", str(tmp_path), "--model", "m")
    assert result.exit_code == 0, result.output
    assert fake_index_builder == [(22, tmp_path, "m")]
    assert fake_pubmed.calls == []  # nothing fetched
    assert "the stored corpus (--index-only)" in result.output
    assert "index only: corpus unchanged" in result.output
    assert "built: build b1" in result.output
    with CorpusStore.open(tmp_path) as store:
        assert store.content_hash() == before


def test_index_only_without_a_corpus_is_a_clear_error(
    tmp_path: Path, fake_index_builder: list
) -> None:
    result = invoke("build", "--index-only", "--index-dir", str(tmp_path / "none"))
    assert result.exit_code == 2
    assert "No corpus at" in result.stderr
    assert not (tmp_path / "none").exists()
    with CorpusStore.open(tmp_path / "empty"):
        pass  # a store without papers
    result = invoke("build", "--index-only", "--index-dir", str(tmp_path / "empty"))
    assert result.exit_code == 2
    assert "holds no papers" in result.stderr
    result = invoke("build", "--index-only", "--from", str(CAR_T), "--index-dir", str(tmp_path))
    assert result.exit_code == 2 and "cannot be combined" in result.stderr
    assert fake_index_builder == []
    no_traceback(result)


def test_unknown_index_summary_shape_is_listed() -> None:
    from rich.console import Console

    from carqa.cli.build import _add_index_rows, _table

    table = _table("t")
    _add_index_rows(table, {"chunks": 3, "nested": {"x": 1}})
    console = Console(width=100, record=True)
    console.print(table)
    text = console.export_text()
    assert "Index: chunks" in text and "nested" not in text


def test_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    result = invoke("build", "--from", str(tmp_path / "nope.jsonl"), "--index-dir", str(tmp_path))
    assert result.exit_code == 2
    assert "does not exist" in result.output
    no_traceback(result)


def test_jsonl_line_without_pmid_names_the_line(tmp_path: Path) -> None:
    bad = write_jsonl(tmp_path / "bad.jsonl", [{"pmid": "1", "abstract": "a"}, {"abstract": "b"}])
    result = invoke("build", "--from", str(bad), "--index-dir", str(tmp_path / "i"))
    assert result.exit_code == 2
    assert "line 2: missing 'pmid'" in result.output
    no_traceback(result)


def test_malformed_xml_is_a_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.xml"
    bad.write_bytes(MARKUP_XML.read_bytes()[:900])
    result = invoke("build", "--from", str(bad), "--index-dir", str(tmp_path / "i"))
    assert result.exit_code == 2
    assert "not well-formed" in result.output
    no_traceback(result)


def test_sources_without_papers_leave_the_corpus_alone(
    tmp_path: Path, fake_index_builder: list
) -> None:
    """An empty --from file used to replace the corpus with nothing and publish an empty index."""
    before = store_car_t(tmp_path)
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    blank = write_jsonl(tmp_path / "blank.jsonl", [])
    for args in (["--from", str(empty)], ["--from", str(blank), "--add"]):
        result = invoke("build", *args, "--index-dir", str(tmp_path))
        assert result.exit_code == 2, result.output
        assert "hold no papers" in result.output and "nothing was built" in result.output
        no_traceback(result)
    assert fake_index_builder == []  # no (empty) index was built
    with CorpusStore.open(tmp_path) as store:
        assert store.content_hash() == before
        assert store.counts()["papers"] == 22


def test_empty_sources_create_no_store(tmp_path: Path) -> None:
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n")
    result = invoke("build", "--from", str(empty), "--index-dir", str(tmp_path / "new"))
    assert result.exit_code == 2
    assert not (tmp_path / "new").exists()


def test_non_numeric_pmid_names_the_file_and_line(tmp_path: Path) -> None:
    bad = write_jsonl(tmp_path / "bad.jsonl", [{"pmid": "1", "abstract": "a"}, {"pmid": "abc-1"}])
    result = invoke("build", "--from", str(bad), "--index-dir", str(tmp_path / "i"), "--no-index")
    assert result.exit_code == 2
    assert "bad.jsonl, line 2: 'pmid' 'abc-1' is not a PubMed id" in result.output
    no_traceback(result)


def test_duplicates_within_and_across_files_are_told_apart(tmp_path: Path) -> None:
    one = write_jsonl(
        tmp_path / "one.jsonl",
        [{"pmid": "1", "abstract": "a"}, {"pmid": "2"}, {"pmid": "1", "abstract": "b"}],
    )
    two = write_jsonl(tmp_path / "two.jsonl", [{"pmid": "2", "abstract": "c"}])
    result = invoke(
        "build",
        "--from",
        str(one),
        "--from",
        str(two),
        "--index-dir",
        str(tmp_path / "i"),
        "--no-index",
    )
    assert result.exit_code == 0, result.output
    note = " ".join(result.stderr.split())
    assert "one.jsonl has 1 duplicate PMID line(s) (the later line won): 1" in note
    assert "1 PMIDs appear in more than one source file (the later file won)" in note
    assert "across sources" not in note


def test_from_with_doi_is_refused(tmp_path: Path) -> None:
    result = invoke("build", "--from", str(CAR_T), "--doi", "10.1/x", "--index-dir", str(tmp_path))
    assert result.exit_code == 2
    assert "cannot be combined" in result.output


# -- settings the index build needs are checked before the corpus is written ----------------


@pytest.mark.parametrize(
    ("env", "flags", "named"),
    [
        ({"CARQA_CHUNK_SIZE": "100"}, (), "CARQA_CHUNK_SIZE (100)"),
        ({"CARQA_CHUNK_OVERLAP": "400"}, (), "CARQA_CHUNK_OVERLAP (400)"),
        ({"CARQA_CHUNK_VECTORS": "foo"}, (), "CARQA_CHUNK_VECTORS"),
        ({}, ("--model", "/nonexistent/model"), "/nonexistent/model does not exist"),
    ],
)
def test_invalid_index_settings_leave_the_corpus_as_it_was(
    tmp_path: Path, env: dict[str, str], flags: tuple[str, ...], named: str
) -> None:
    before = store_car_t(tmp_path)
    other = write_jsonl(tmp_path / "other.jsonl", [{"pmid": "5", "abstract": "Invented."}])

    result = invoke("build", "--from", str(other), "--index-dir", str(tmp_path), *flags, env=env)
    assert result.exit_code != 0
    no_traceback(result)
    assert named in result.stderr
    with CorpusStore.open(tmp_path) as store:
        assert store.content_hash() == before  # not replaced by other.jsonl


@pytest.mark.slow
def test_build_with_the_real_index_builder(tmp_path: Path) -> None:
    result = invoke("build", "--from", str(CAR_T), "--index-dir", str(tmp_path))
    assert result.exit_code == 0, result.output
    assert "built: build" in result.output
    assert (tmp_path / "current" / "manifest.json").is_file()
    again = invoke("build", "--from", str(CAR_T), "--index-dir", str(tmp_path))
    assert again.exit_code == 0, again.output
    assert "up to date" in again.output


# -- an --index-dir that is a file ----------------------------------------------------------


@pytest.mark.parametrize(
    "command",
    [
        ("build", "--from", str(CAR_T), "--no-index"),
        ("build", "--from", str(CAR_T)),
        ("build", "--index-only"),
        ("snapshot", "import", str(CAR_T), "--no-index"),
        ("snapshot", "export", "out.carqa.jsonl.gz"),
    ],
)
def test_an_index_dir_that_is_a_file_is_a_clear_error(
    tmp_path: Path, command: tuple[str, ...]
) -> None:
    """`--index-dir corpus.jsonl` (the file meant for --from) was a FileExistsError traceback."""
    not_a_dir = tmp_path / "corpus.jsonl"
    not_a_dir.write_text("{}\n")
    result = invoke(*command, "--index-dir", str(not_a_dir))
    assert result.exit_code == 2, result.output
    assert f"{not_a_dir} is a file, not a directory" in result.stderr
    assert "--index-dir" in result.stderr  # the hint says which flag to fix
    no_traceback(result)
    assert not_a_dir.read_text() == "{}\n"


def test_delete_citation_is_reported_and_a_deleted_seed_refused(tmp_path: Path) -> None:
    store_car_t(tmp_path)
    update = write(tmp_path / "update.xml", medline_set("7", delete=("90000002", "8")))
    result = invoke(
        "build", "--from", str(update), "--add", "--index-dir", str(tmp_path), "--no-index"
    )
    assert result.exit_code == 0, result.output
    assert "Papers deleted" in result.output
    assert "1 (DeleteCitation lists 2 PMIDs; 1 not in the corpus)" in result.output
    withdrawn = write(tmp_path / "seed.xml", medline_set(delete=("90000001",)))
    result = invoke(
        "build", "--from", str(withdrawn), "--add", "--index-dir", str(tmp_path), "--no-index"
    )
    assert result.exit_code == 2
    assert "PMID 90000001 is the seed review" in result.output
    no_traceback(result)
    with CorpusStore.open(tmp_path) as store:
        assert store.seed_pmid() == "90000001" and store.paper("90000001") is not None
