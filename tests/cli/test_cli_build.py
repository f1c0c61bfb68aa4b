from __future__ import annotations

import json
import sys
import types
from dataclasses import replace
from pathlib import Path

import carqa.index.corpus.pipeline
import pytest
from carqa.index.corpus.entrez import EntrezClient
from carqa.index.corpus.store import CorpusStore
from typer.testing import CliRunner

from carqa.cli import app
from tests.index.fixtures.entrez.fake_entrez import (
    SEED_DOI,
    FakeClock,
    FakeEntrez,
    transient,
)
from tests.index.medline_xml import medline_set, write

REPO = Path(__file__).resolve().parents[2]
CAR_T = REPO / "tests" / "fixtures" / "car_t_papers.jsonl"
MARKUP_XML = REPO / "tests" / "index" / "fixtures" / "entrez" / "efetch_markup.xml"

runner = CliRunner()


def invoke(*args: str, env: dict[str, str] | None = None):
    return runner.invoke(app, list(args), env={"COLUMNS": "250", **(env or {})})


def _no_traceback(result) -> None:
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)


def _store_car_t(index_dir: Path) -> str:
    """Store the CAR T fixture corpus (no index) in ``index_dir``; its content hash."""
    result = invoke("build", "--from", str(CAR_T), "--index-dir", str(index_dir), "--no-index")
    assert result.exit_code == 0, result.output
    with CorpusStore.open(index_dir) as store:
        return store.content_hash()


@pytest.fixture
def fake_pubmed(monkeypatch: pytest.MonkeyPatch) -> FakeEntrez:
    """Route `carqa build`'s PubMed requests to the invented fake, keeping the real client."""
    fake = FakeEntrez()
    real = carqa.index.corpus.pipeline.entrez_client

    def client(settings, index_dir: Path) -> EntrezClient:
        clock = FakeClock()
        return replace(real(settings, index_dir), transport=fake, sleep=clock.sleep, clock=clock)

    monkeypatch.setattr(carqa.index.corpus.pipeline, "entrez_client", client)
    return fake


@pytest.fixture
def fake_index_builder(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, Path, str]]:
    """Stand in for carqa.index.search.build.build_index: records calls, returns a summary."""
    calls: list[tuple[int, Path, str]] = []

    class Report:
        def __init__(self, papers: int) -> None:
            self.papers = papers

        def as_dict(self) -> dict:  # the shape of carqa.index.search.build.BuildReport.as_dict()
            return {
                "build_id": "b1",
                "up_to_date": False,
                "model": "fake-model",
                "papers": self.papers,
                "chunks": self.papers * 2,
                "sentences": self.papers * 3,
                "texts_embedded": self.papers * 5,
                "texts_cached": 0,
                "embed_backend": "onnx",
                "seconds": 1.5,
            }

    def build_index(
        store: CorpusStore, index_dir: Path, *, model: str, on_progress=None, chunk_settings=None
    ):
        calls.append((store.counts()["papers"], index_dir, model))
        return Report(store.counts()["papers"])

    module = types.ModuleType("carqa.index.search.build")
    module.build_index = build_index  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "carqa.index.search.build", module)
    return calls


def _write(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


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
    extra = _write(tmp_path / "extra.jsonl", [{"pmid": "5", "abstract": "Invented."}])
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
    before = _store_car_t(tmp_path)
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
    _no_traceback(result)


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
    _no_traceback(result)


def test_jsonl_line_without_pmid_names_the_line(tmp_path: Path) -> None:
    bad = _write(tmp_path / "bad.jsonl", [{"pmid": "1", "abstract": "a"}, {"abstract": "b"}])
    result = invoke("build", "--from", str(bad), "--index-dir", str(tmp_path / "i"))
    assert result.exit_code == 2
    assert "line 2: missing 'pmid'" in result.output
    _no_traceback(result)


def test_malformed_xml_is_a_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.xml"
    bad.write_bytes(MARKUP_XML.read_bytes()[:900])
    result = invoke("build", "--from", str(bad), "--index-dir", str(tmp_path / "i"))
    assert result.exit_code == 2
    assert "not well-formed" in result.output
    _no_traceback(result)


def test_sources_without_papers_leave_the_corpus_alone(
    tmp_path: Path, fake_index_builder: list
) -> None:
    """An empty --from file used to replace the corpus with nothing and publish an empty index."""
    before = _store_car_t(tmp_path)
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    blank = _write(tmp_path / "blank.jsonl", [])
    for args in (["--from", str(empty)], ["--from", str(blank), "--add"]):
        result = invoke("build", *args, "--index-dir", str(tmp_path))
        assert result.exit_code == 2, result.output
        assert "hold no papers" in result.output and "nothing was built" in result.output
        _no_traceback(result)
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
    bad = _write(tmp_path / "bad.jsonl", [{"pmid": "1", "abstract": "a"}, {"pmid": "abc-1"}])
    result = invoke("build", "--from", str(bad), "--index-dir", str(tmp_path / "i"), "--no-index")
    assert result.exit_code == 2
    assert "bad.jsonl, line 2: 'pmid' 'abc-1' is not a PubMed id" in result.output
    _no_traceback(result)


def test_duplicates_within_and_across_files_are_told_apart(tmp_path: Path) -> None:
    one = _write(
        tmp_path / "one.jsonl",
        [{"pmid": "1", "abstract": "a"}, {"pmid": "2"}, {"pmid": "1", "abstract": "b"}],
    )
    two = _write(tmp_path / "two.jsonl", [{"pmid": "2", "abstract": "c"}])
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


# -- PubMed (fake transport) ---------------------------------------------------------------


def test_pubmed_seed_flow_summary(tmp_path: Path, fake_pubmed: FakeEntrez) -> None:
    args = (
        "build",
        "--doi",
        SEED_DOI,
        "--email",
        "dev@example.org",
        "--index-dir",
        str(tmp_path),
        "--no-index",
    )
    result = invoke(*args)
    assert result.exit_code == 0, result.output
    out = result.output
    assert "PubMed, seed PMID 90200001" in out
    assert "5/6 (83%)" in out
    assert "Unresolved references (1)" in out and "Invented Society" in out
    assert "1 elink-only" in out
    assert "PubMed returned no record for 1 cited PMIDs: 90200004" in out
    assert "6 fetched, 0 from cache" in out
    assert all(call.one("email") == "dev@example.org" for call in fake_pubmed.calls)
    with CorpusStore.open(tmp_path) as store:
        assert store.seed_pmid() == "90200001"
        assert store.counts()["papers"] == 6
        assert store.cited_pmids() == {f"9020000{i}" for i in range(2, 8)}
    # A re-run is served from the cache.
    again = invoke(*args)
    assert again.exit_code == 0
    assert "0 fetched, 6 from cache" in again.output


def test_pubmed_credentials_from_ncbi_env(tmp_path: Path, fake_pubmed: FakeEntrez) -> None:
    result = invoke(
        "build",
        "--pmid",
        "90200001",
        "--index-dir",
        str(tmp_path),
        "--no-index",
        env={"NCBI_EMAIL": "env@example.org", "NCBI_API_KEY": "envkey"},
    )
    assert result.exit_code == 0, result.output
    assert {c.one("email") for c in fake_pubmed.calls} == {"env@example.org"}
    assert {c.one("api_key") for c in fake_pubmed.calls} == {"envkey"}
    assert fake_pubmed.count("esearch") == 1  # --pmid: no seed DOI search


def test_missing_email_is_noted(
    tmp_path: Path, fake_pubmed: FakeEntrez, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("NCBI_EMAIL", "CARQA_NCBI_EMAIL"):
        monkeypatch.delenv(name, raising=False)
    result = invoke("build", "--pmid", "90200001", "--index-dir", str(tmp_path), "--no-index")
    assert result.exit_code == 0
    assert "No contact email" in result.output


def test_unknown_doi_is_a_clear_error(tmp_path: Path, fake_pubmed: FakeEntrez) -> None:
    result = invoke("build", "--doi", "10.9999/nothing", "--index-dir", str(tmp_path))
    assert result.exit_code == 2
    assert "No PubMed record has the DOI 10.9999/nothing" in result.output
    _no_traceback(result)


def test_unreachable_pubmed_points_to_offline_paths(
    tmp_path: Path, fake_pubmed: FakeEntrez
) -> None:
    fake_pubmed.failures["esearch"] = [transient(None)] * 10
    result = invoke("build", "--index-dir", str(tmp_path))
    assert result.exit_code == 1
    assert "unreachable" in result.output
    assert "--from" in result.output and "snapshot import" in result.output
    _no_traceback(result)


# -- snapshots -----------------------------------------------------------------------------


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
    _no_traceback(result)


def test_snapshot_export_to_a_directory_or_missing_folder(tmp_path: Path) -> None:
    _store_car_t(tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    result = invoke("snapshot", "export", str(out), "--index-dir", str(tmp_path))
    assert result.exit_code == 2, result.output
    assert "is a directory" in result.stderr
    _no_traceback(result)
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
    _no_traceback(result)


def test_snapshot_export_onto_the_corpus_store_is_refused(tmp_path: Path) -> None:
    """It wrote the snapshot over corpus.sqlite, said "Wrote 22 papers", and every later
    command found no readable corpus."""
    before = _store_car_t(tmp_path)
    store = tmp_path / "corpus.sqlite"
    result = invoke("snapshot", "export", str(store), "--index-dir", str(tmp_path))
    assert result.exit_code == 2, result.output
    assert "is the corpus store" in result.stderr
    _no_traceback(result)
    with CorpusStore.open(tmp_path) as opened:
        assert opened.content_hash() == before


def test_snapshot_import_of_a_directory_says_so(tmp_path: Path) -> None:
    result = invoke("snapshot", "import", str(tmp_path), "--index-dir", str(tmp_path / "b"))
    assert result.exit_code == 2, result.output
    assert "is a directory, not a snapshot file" in result.stderr
    _no_traceback(result)
    assert not (tmp_path / "b").exists()


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
    before = _store_car_t(tmp_path)
    other = _write(tmp_path / "other.jsonl", [{"pmid": "5", "abstract": "Invented."}])

    result = invoke("build", "--from", str(other), "--index-dir", str(tmp_path), *flags, env=env)
    assert result.exit_code != 0
    _no_traceback(result)
    assert named in result.stderr
    with CorpusStore.open(tmp_path) as store:
        assert store.content_hash() == before  # not replaced by other.jsonl


def test_snapshot_import_checks_chunk_settings_before_replacing(tmp_path: Path) -> None:
    source, target = tmp_path / "a", tmp_path / "b"
    other = _write(tmp_path / "other.jsonl", [{"pmid": "5", "abstract": "Invented."}])
    for corpus, where in ((CAR_T, source), (other, target)):
        built = invoke("build", "--from", str(corpus), "--index-dir", str(where), "--no-index")
        assert built.exit_code == 0, built.output
    snap = tmp_path / "corpus.carqa.jsonl.gz"
    assert invoke("snapshot", "export", str(snap), "--index-dir", str(source)).exit_code == 0

    env = {"CARQA_CHUNK_SIZE": "100"}
    result = invoke("snapshot", "import", str(snap), "--index-dir", str(target), env=env)
    assert result.exit_code == 2
    _no_traceback(result)
    assert "CARQA_CHUNK_OVERLAP (150, the default)" in result.stderr
    with CorpusStore.open(target) as store:
        assert store.pmids() == ["5"]


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
    _no_traceback(result)
    assert not_a_dir.read_text() == "{}\n"


def test_a_refused_snapshot_import_creates_no_store(tmp_path: Path) -> None:
    """As with `build --from` sources holding no papers: a file that is not a snapshot left
    a new, empty corpus.sqlite behind, which `build --index-only` then called 'no papers'."""
    target = tmp_path / "fresh"
    result = invoke("snapshot", "import", str(CAR_T), "--index-dir", str(target), "--no-index")
    assert result.exit_code == 2 and "not a readable carqa snapshot" in result.stderr
    _no_traceback(result)
    assert not target.exists()


def test_snapshot_import_without_index_says_so(tmp_path: Path) -> None:
    _store_car_t(tmp_path / "a")
    snap = tmp_path / "corpus.carqa.jsonl.gz"
    assert (
        invoke("snapshot", "export", str(snap), "--index-dir", str(tmp_path / "a")).exit_code == 0
    )
    result = invoke(
        "snapshot", "import", str(snap), "--index-dir", str(tmp_path / "b"), "--no-index"
    )
    assert result.exit_code == 0, result.output
    assert "not built (--no-index)" in result.stdout  # as `carqa build --no-index` says


def test_delete_citation_is_reported_and_a_deleted_seed_refused(tmp_path: Path) -> None:
    _store_car_t(tmp_path)
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
    _no_traceback(result)
    with CorpusStore.open(tmp_path) as store:
        assert store.seed_pmid() == "90000001" and store.paper("90000001") is not None
