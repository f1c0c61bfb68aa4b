from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from carqa.index.corpus.models import Paper, Reference, Section
from carqa.index.corpus.store import STORE_FILENAME, CorpusStore

from carqa.errors import IndexCorrupt


def _paper(pmid: str, *, abstract: bool = True, refs: list[Reference] | None = None) -> Paper:
    sections = (
        [
            Section("Invented background about T cells.", "BACKGROUND", "BACKGROUND"),
            Section("Invented finding about antigen loss.", "CONCLUSIONS", "CONCLUSIONS"),
        ]
        if abstract
        else []
    )
    return Paper(
        pmid=pmid,
        title=f"Title {pmid}",
        journal="Invented J",
        year=2019,
        authors=["Doe J", "Roe R"],
        doi=f"10.1/{pmid}",
        mesh=["T-Lymphocytes"],
        publication_types=["Journal Article"],
        sections=sections,
        references=refs or [],
    )


@pytest.fixture
def store(tmp_path: Path) -> Iterator[CorpusStore]:
    with CorpusStore.open(tmp_path) as opened:
        yield opened


def test_open_creates_file_in_index_dir(tmp_path: Path) -> None:
    with CorpusStore.open(tmp_path / "new") as store:
        assert store.path == tmp_path / "new" / STORE_FILENAME
        assert list(store.papers()) == []
        assert store.seed_pmid() is None
    assert (tmp_path / "new" / STORE_FILENAME).is_file()


def test_round_trip_keeps_every_field(store: CorpusStore) -> None:
    refs = [Reference(citation="Doe J. Invented. 2018.", pmid="11"), Reference(citation="x")]
    paper = _paper("100", refs=refs)
    store.replace_corpus([paper], seed_pmid="100", source="test")
    assert store.paper("100") == replace(paper, relation="seed")
    assert store.paper("999") is None
    assert store.source() == "test"


def test_papers_ordered_by_pmid_numerically(store: CorpusStore) -> None:
    store.replace_corpus([_paper("100"), _paper("9"), _paper("25")])
    assert [p.pmid for p in store.papers()] == ["9", "25", "100"]


def test_replace_corpus_replaces(store: CorpusStore) -> None:
    store.replace_corpus([_paper("1"), _paper("2")], seed_pmid="1")
    store.replace_corpus([_paper("3")])
    assert [p.pmid for p in store.papers()] == ["3"]
    assert store.seed_pmid() is None


def test_replace_corpus_is_one_transaction(store: CorpusStore) -> None:
    store.replace_corpus([_paper("1")], seed_pmid="1")

    def failing() -> Iterator[Paper]:
        yield _paper("2")
        raise RuntimeError("source died halfway")

    with pytest.raises(RuntimeError):
        store.replace_corpus(failing(), seed_pmid="2")
    assert [p.pmid for p in store.papers()] == ["1"]
    assert store.seed_pmid() == "1"


def test_add_papers_upserts(store: CorpusStore) -> None:
    store.replace_corpus([_paper("1"), _paper("2")], seed_pmid="1")
    changed = _paper("2", abstract=False)
    store.add_papers([changed, _paper("3")])
    assert [p.pmid for p in store.papers()] == ["1", "2", "3"]
    assert store.paper("2") == replace(changed, relation="file")
    assert store.seed_pmid() == "1"


def test_cited_pmids_and_counts(store: CorpusStore) -> None:
    seed = _paper(
        "1",
        refs=[
            Reference(citation="A", pmid="2"),
            Reference(citation="B", pmid="3"),
            Reference(citation="C unresolved"),
        ],
    )
    store.replace_corpus([seed, _paper("2"), _paper("4", abstract=False)], seed_pmid="1")
    assert store.cited_pmids() == {"2", "3"}
    assert store.unresolved_references() == [Reference(citation="C unresolved")]
    counts = store.counts()
    assert counts["papers"] == 3
    assert counts["with_abstract"] == 2
    assert counts["title_only"] == 1
    assert counts["seed_references"] == 3
    assert counts["seed_references_resolved"] == 2
    assert counts["seed_references_unresolved"] == 1
    assert counts["cited_pmids"] == 2
    assert counts["cited_in_corpus"] == 1
    assert counts["has_seed"] == 1


def test_a_seed_that_names_itself_is_not_one_of_its_cited_papers(store: CorpusStore) -> None:
    seed = _paper("1", refs=[Reference(citation="A", pmid="2"), Reference(citation="B", pmid="1")])
    store.replace_corpus([seed, _paper("2")], seed_pmid="1")
    assert store.cited_pmids() == {"2"}
    counts = store.counts()
    assert counts["cited_pmids"] == counts["cited_in_corpus"] == 1


def test_no_seed_means_no_cited(store: CorpusStore) -> None:
    store.replace_corpus([_paper("1", refs=[Reference(pmid="2")])])
    assert store.cited_pmids() == set()
    assert store.counts()["has_seed"] == 0


def test_content_hash_is_order_free_and_content_sensitive(tmp_path: Path) -> None:
    with CorpusStore(tmp_path / "a.sqlite") as a, CorpusStore(tmp_path / "b.sqlite") as b:
        a.replace_corpus([_paper("1"), _paper("2")], seed_pmid="1")
        b.add_papers([_paper("2")])
        b.add_papers([_paper("1")])
        b.set_seed_pmid("1")
        assert a.content_hash() == b.content_hash()
        b.add_papers([_paper("2", abstract=False)])
        assert a.content_hash() != b.content_hash()


def test_content_hash_depends_on_seed(store: CorpusStore) -> None:
    store.replace_corpus([_paper("1"), _paper("2")], seed_pmid="1")
    first = store.content_hash()
    store.set_seed_pmid("2")
    assert store.content_hash() != first


def test_data_survives_reopen(tmp_path: Path) -> None:
    with CorpusStore.open(tmp_path) as store:
        store.replace_corpus([_paper("7")], seed_pmid="7")
    with CorpusStore.open(tmp_path) as store:
        assert store.seed_pmid() == "7"
        assert store.paper("7") == replace(_paper("7"), relation="seed")


def test_not_a_database_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / STORE_FILENAME).write_bytes(b"this is not sqlite at all" * 100)
    with pytest.raises(IndexCorrupt, match="not a readable SQLite"):
        CorpusStore.open(tmp_path)


def test_other_schema_version_is_refused(tmp_path: Path) -> None:
    CorpusStore.open(tmp_path).close()
    with sqlite3.connect(tmp_path / STORE_FILENAME) as conn:
        conn.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    with pytest.raises(IndexCorrupt, match="schema version 99"):
        CorpusStore.open(tmp_path)
