from __future__ import annotations

import gzip
import json
from dataclasses import replace
from pathlib import Path

import pytest
from carqa.index.corpus.content_hash import corpus_hash
from carqa.index.corpus.models import Paper, Reference, Section
from carqa.index.corpus.snapshot import (
    SNAPSHOT_VERSION,
    export_snapshot,
    import_snapshot,
    read_snapshot,
)
from carqa.index.corpus.sources import load_sources
from carqa.index.corpus.store import CorpusStore

from carqa.errors import InputError

PAPERS = [
    Paper(
        pmid="1",
        title="An invented review",
        year=2019,
        authors=["Doe J"],
        publication_types=["Review"],
        sections=[Section("Invented review text.")],
        references=[Reference(citation="Roe R. Invented.", pmid="2"), Reference(citation="Web")],
    ),
    Paper(
        pmid="2",
        title="Invented trial",
        journal="Invented J",
        doi="10.1/x",
        mesh=["T-Lymphocytes"],
        # an unassigned category under a category-like label must survive the round trip
        sections=[Section("Invented result.", "RESULTS", None), Section("Done.", "C", "X")],
    ),
    Paper(pmid="3", title="Title only"),
]
STORED = [
    replace(paper, relation=relation)
    for paper, relation in zip(PAPERS, ["seed", "cited", "file"], strict=True)
]
"""PAPERS as the store gives them back: each with its relation to the seed."""


@pytest.fixture
def exported(tmp_path: Path) -> Path:
    with CorpusStore.open(tmp_path / "a") as store:
        store.replace_corpus(PAPERS, seed_pmid="1", source="test")
        export_snapshot(store, tmp_path / "corpus.carqa.jsonl.gz")
    return tmp_path / "corpus.carqa.jsonl.gz"


def test_round_trip_is_exact(exported: Path, tmp_path: Path) -> None:
    with CorpusStore.open(tmp_path / "a") as source:
        expected_hash = source.content_hash()
    with CorpusStore.open(tmp_path / "b") as store:
        store.replace_corpus([Paper(pmid="99")])
        info = import_snapshot(store, exported)
        assert info.papers == 3 and info.seed_pmid == "1"
        assert list(store.papers()) == STORED
        assert store.seed_pmid() == "1"
        assert store.content_hash() == expected_hash == info.content_hash


def test_format_is_documented_gzipped_jsonl(exported: Path) -> None:
    lines = gzip.decompress(exported.read_bytes()).decode().splitlines()
    header = json.loads(lines[0])
    assert header["format"] == "carqa-snapshot"
    assert header["version"] == SNAPSHOT_VERSION
    assert header["papers"] == 3
    first = json.loads(lines[1])
    assert first["pmid"] == "1" and first["is_seed"] is True
    assert first["sections"] == [{"label": None, "category": None, "text": "Invented review text."}]


def test_snapshot_also_works_as_a_from_source(exported: Path) -> None:
    corpus = load_sources([exported])
    assert corpus.seed_pmid == "1"
    assert corpus.papers == STORED


def _rewrite(path: Path, edit) -> None:
    lines = gzip.decompress(path.read_bytes()).decode().splitlines()
    path.write_bytes(gzip.compress(("\n".join(edit(lines)) + "\n").encode()))


def test_tampered_snapshot_is_refused(exported: Path) -> None:
    _rewrite(
        exported,
        lambda lines: [lines[0], lines[1].replace("Invented review", "Edited"), *lines[2:]],
    )
    with pytest.raises(InputError, match="content hash"):
        read_snapshot(exported)


def test_a_line_that_is_not_json_is_named_by_its_number(exported: Path) -> None:
    """Line numbers count the header and blank lines, as an editor shows them."""
    _rewrite(exported, lambda lines: [lines[0], "", lines[1], "{not json", *lines[3:]])
    with pytest.raises(InputError, match=r"line 4: not valid JSON") as raised:
        read_snapshot(exported)
    assert raised.value.hint == "Each line must be one JSON object."


def test_truncated_snapshot_is_refused(exported: Path) -> None:
    _rewrite(exported, lambda lines: lines[:-1])
    with pytest.raises(InputError, match="promises 3 papers, it holds 2"):
        read_snapshot(exported)
    exported.write_bytes(exported.read_bytes()[:40])
    with pytest.raises(InputError, match="not a readable carqa snapshot"):
        read_snapshot(exported)


def test_not_a_snapshot_and_future_versions(tmp_path: Path) -> None:
    plain = tmp_path / "plain.jsonl.gz"
    plain.write_bytes(gzip.compress(b'{"pmid": "1"}\n'))
    with pytest.raises(InputError, match="not a carqa snapshot"):
        read_snapshot(plain)
    future = tmp_path / "future.jsonl.gz"
    future.write_bytes(
        gzip.compress(
            b'{"format": "carqa-snapshot", "version": 9, "papers": 0, "content_hash": ""}\n'
        )
    )
    with pytest.raises(InputError, match="version 9 snapshot"):
        read_snapshot(future)
    with pytest.raises(InputError, match="does not exist"):
        read_snapshot(tmp_path / "missing.gz")


def test_failed_import_leaves_the_corpus_alone(exported: Path, tmp_path: Path) -> None:
    _rewrite(exported, lambda lines: lines[:-1])
    with CorpusStore.open(tmp_path / "c") as store:
        store.replace_corpus([Paper(pmid="42")], seed_pmid="42")
        with pytest.raises(InputError):
            import_snapshot(store, exported)
        assert store.pmids() == ["42"] and store.seed_pmid() == "42"


def test_empty_store_cannot_be_exported(tmp_path: Path) -> None:
    with CorpusStore.open(tmp_path) as store, pytest.raises(InputError, match="empty"):
        export_snapshot(store, tmp_path / "x.jsonl.gz")
    assert not (tmp_path / "x.jsonl.gz").exists()


def test_export_to_a_directory_is_refused(tmp_path: Path) -> None:
    with CorpusStore.open(tmp_path / "a") as store:
        store.replace_corpus(PAPERS, seed_pmid="1", source="test")
        with pytest.raises(InputError, match="is a directory") as error:
            export_snapshot(store, tmp_path)
    assert error.value.hint and "corpus.carqa.jsonl.gz" in error.value.hint
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a"]  # no temp file left behind


def test_export_does_not_create_missing_folders(tmp_path: Path) -> None:
    target = tmp_path / "no" / "such" / "folder" / "x.carqa.jsonl.gz"
    with CorpusStore.open(tmp_path / "a") as store:
        store.replace_corpus(PAPERS, seed_pmid="1", source="test")
        with pytest.raises(InputError, match=r"folder .*folder does not exist"):
            export_snapshot(store, target)
    assert not (tmp_path / "no").exists()


def test_snapshot_without_papers_does_not_replace_the_corpus(tmp_path: Path) -> None:
    header = {
        "format": "carqa-snapshot",
        "version": SNAPSHOT_VERSION,
        "papers": 0,
        "seed_pmid": None,
        "content_hash": corpus_hash([], None),
    }
    path = tmp_path / "empty.carqa.jsonl.gz"
    path.write_bytes(gzip.compress((json.dumps(header) + "\n").encode()))
    with CorpusStore.open(tmp_path / "c") as store:
        store.replace_corpus([Paper(pmid="42")], seed_pmid="42")
        with pytest.raises(InputError, match="holds no papers"):
            import_snapshot(store, path)
        assert store.pmids() == ["42"]


@pytest.mark.parametrize("name", ["corpus.sqlite", "../a/corpus.sqlite", "corpus.sqlite-wal"])
def test_export_onto_the_corpus_store_is_refused(tmp_path: Path, name: str) -> None:
    """Export renames its file over the target: onto the store, it replaced the corpus with
    its own snapshot and left a store that no longer opened."""
    with CorpusStore.open(tmp_path / "a") as store:
        store.replace_corpus(PAPERS, seed_pmid="1", source="test")
        with pytest.raises(InputError, match="is the corpus store") as error:
            export_snapshot(store, tmp_path / "a" / name)
    assert error.value.hint and "corpus.carqa.jsonl.gz" in error.value.hint
    with CorpusStore.open(tmp_path / "a") as store:
        assert list(store.papers()) == STORED
    assert not list((tmp_path / "a").glob(".*.tmp"))


def test_export_into_a_file_says_it_is_a_file(tmp_path: Path) -> None:
    not_a_folder = tmp_path / "notes.txt"
    not_a_folder.write_text("mine")
    with CorpusStore.open(tmp_path / "a") as store:
        store.replace_corpus(PAPERS, seed_pmid="1", source="test")
        with pytest.raises(InputError, match=r"notes\.txt is a file, not a folder"):
            export_snapshot(store, not_a_folder / "x.carqa.jsonl.gz")
    assert not_a_folder.read_text() == "mine"


def test_reading_a_directory_says_it_is_one(tmp_path: Path) -> None:
    # It said "<dir> does not exist".
    with pytest.raises(InputError, match="is a directory, not a snapshot file"):
        read_snapshot(tmp_path)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("papers", True, "paper count"),
        ("papers", -1, "paper count"),
        ("version", True, "version True snapshot"),
    ],
)
def test_a_header_with_a_bool_or_negative_number_is_refused(
    exported: Path, field: str, value: object, message: str
) -> None:
    """JSON ``true`` is not the number 1: it was read as "a version 1 snapshot" and as a
    promise of 1 paper ("promises True papers")."""

    def edit(lines: list[str]) -> list[str]:
        header = json.loads(lines[0])
        header[field] = value
        return [json.dumps(header), *lines[1:]]

    _rewrite(exported, edit)
    with pytest.raises(InputError, match=message):
        read_snapshot(exported)
