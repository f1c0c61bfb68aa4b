"""Growing the corpus beyond the seed's references: citing papers, similar articles, updates,
and every paper's relation to the seed (store, migration, JSONL, snapshot, hash)."""

from __future__ import annotations

import json
import re
import sqlite3
from pathlib import Path

import pytest
from carqa.index.corpus.entrez import EntrezClient
from carqa.index.corpus.expand import parse_expand
from carqa.index.corpus.models import Paper
from carqa.index.corpus.pipeline import build
from carqa.index.corpus.sources import load_sources
from carqa.index.corpus.store import CorpusStore
from carqa.index.corpus.update import CorpusBusy, corpus_lock

from carqa.errors import InputError
from carqa.settings import Settings
from tests.index.fixtures.entrez.fake_entrez import (
    SEED_PMID,
    FakeClock,
    FakeEntrez,
    Invented,
    NeighbourRoutes,
)

CITING = [Invented("90300001", 2020, "Clinical Trial, Phase II"), Invented("90300002", 2018)]
SIMILAR = [
    Invented("90400001", 2021, "Review", score=30),
    Invented("90400002", 2022, "Randomized Controlled Trial", score=90),
    Invented("90400003", 2023, score=60),
    Invented("90200002", 2014, score=99),  # also cited by the seed: stays "cited"
]


def _client(fake: FakeEntrez, cache_dir: Path | None = None) -> EntrezClient:
    clock = FakeClock()
    return EntrezClient(
        email="dev@example.org",
        transport=fake,
        sleep=clock.sleep,
        clock=clock,
        cache_dir=cache_dir,
        batch_size=2,
    )


def _settings(tmp_path: Path) -> Settings:
    return Settings.load(index_dir=tmp_path / "index", seed_pmid=SEED_PMID)


def _routes() -> NeighbourRoutes:
    return NeighbourRoutes(citing=list(CITING), similar=list(SIMILAR))


# -- elink: the real answer's link sets ------------------------------------------------------


def _elink_ids(xml: str, linkname: str) -> list[str]:
    block = re.search(rf"<LinkName>{linkname}</LinkName>(.*?)</LinkSetDb>", xml, re.S)
    assert block is not None
    return re.findall(r"<Id>(\d+)</Id>", block.group(1))


def test_real_elink_answer_yields_the_citing_and_similar_pmids_it_lists(
    shared_data: Path,
) -> None:
    raw = (shared_data / "entrez" / "elink1.xml").read_bytes()
    source = re.search(r"<IdList>\s*<Id>(\d+)</Id>", raw.decode()).group(1)
    fake = FakeEntrez(handler=lambda endpoint, params: raw)
    client = _client(fake)

    citing = client.citing(source)
    assert citing == _elink_ids(raw.decode(), "pubmed_pubmed_citedin")
    assert len(citing) == 39
    similar = [link.pmid for link in client.similar(source)]
    listed = _elink_ids(raw.decode(), "pubmed_pubmed")
    assert listed[0] == source  # PubMed lists the paper itself first; it is not "similar"
    assert similar == listed[1:] and len(similar) == 100
    asked = [call.one("linkname") for call in fake.calls]
    assert asked == ["pubmed_pubmed_citedin", "pubmed_pubmed"]
    assert fake.calls[1].one("cmd") == "neighbor_score"


def test_similar_articles_are_ranked_by_score() -> None:
    client = _client(FakeEntrez(handler=_routes()))
    assert [link.pmid for link in client.similar(SEED_PMID)] == [
        "90200002",
        "90400002",
        "90400003",
        "90400001",
    ]


def test_parse_expand() -> None:
    assert parse_expand("similar,cited-by") == ("citing", "similar")
    assert parse_expand(None) == ()
    with pytest.raises(InputError, match="'cites'"):
        parse_expand("cites")


# -- the build ---------------------------------------------------------------------------------


def test_default_build_adds_no_neighbours(tmp_path: Path) -> None:
    fake = FakeEntrez(handler=_routes())
    report = build(_settings(tmp_path), client=_client(fake), build_index=False)
    assert report.relations == {"seed": 1, "cited": 5}
    assert report.expansion is None
    assert {call.params.get("linkname", [""])[0] for call in fake.calls} <= {
        "",
        "pubmed_pubmed_refs",
    }


def test_expand_adds_citing_and_similar_with_their_relation(tmp_path: Path) -> None:
    fake = FakeEntrez(handler=_routes())
    settings = _settings(tmp_path)
    report = build(
        settings,
        client=_client(fake),
        build_index=False,
        expand=("citing", "similar"),
        since=2019,
        max_expand=2,
    )
    expansion = report.expansion
    assert expansion is not None
    assert expansion.linked == {"citing": 2, "similar": 4}
    assert expansion.added == {"citing": ["90300001"], "similar": ["90400002", "90400003"]}
    assert expansion.too_old == {"citing": 1, "similar": 0}
    assert expansion.already_stored == {"citing": 0, "similar": 1}
    assert report.relations == {"seed": 1, "cited": 5, "citing": 1, "similar": 2}
    with CorpusStore.open(settings.index_dir) as store:
        relations = store.relations()
        assert relations["90300001"] == "citing" and relations["90200002"] == "cited"
        assert store.paper("90400002").publication_types == ["Randomized Controlled Trial"]
        assert store.get_meta("expand") == "citing,similar"


def test_expand_is_refused_with_files(tmp_path: Path) -> None:
    jsonl = tmp_path / "c.jsonl"
    jsonl.write_text(json.dumps({"pmid": "1", "abstract": "Invented."}) + "\n")
    with pytest.raises(InputError, match="--expand"):
        build(_settings(tmp_path), sources=[jsonl], expand=("citing",), build_index=False)
    with pytest.raises(InputError, match="--since"):
        build(_settings(tmp_path), since=2020, build_index=False)


# -- --update ----------------------------------------------------------------------------------


def test_update_fetches_only_new_papers(tmp_path: Path) -> None:
    routes = _routes()
    fake = FakeEntrez(handler=routes)
    settings = _settings(tmp_path)
    cache = settings.index_dir / "cache" / "entrez"
    build(
        settings,
        client=_client(fake, cache),
        build_index=False,
        expand=("citing",),
    )
    routes.citing.insert(0, Invented("90300003", 2024, "Case Reports"))
    fake.calls.clear()
    report = build(settings, client=_client(fake, cache), build_index=False, update=True)
    assert report.changes is not None
    assert report.changes.added == {"cited": [], "citing": ["90300003"]}
    fetched = [call.one("id") for call in fake.calls if call.endpoint == "efetch"]
    # The seed is asked again, the cited record PubMed never returned too, then the new one.
    assert fetched == [SEED_PMID, "90200004", "90300003"]
    assert report.relations["citing"] == 3
    # Nothing new: nothing written, nothing fetched but the lists.
    before = CorpusStore.open(settings.index_dir).updated_at()
    again = build(settings, client=_client(fake, cache), build_index=False, update=True)
    assert again.changes.new_papers == 0
    assert CorpusStore.open(settings.index_dir).updated_at() == before


def test_update_needs_a_pubmed_corpus(tmp_path: Path) -> None:
    jsonl = tmp_path / "c.jsonl"
    jsonl.write_text(json.dumps({"pmid": "1", "abstract": "Invented."}) + "\n")
    settings = _settings(tmp_path)
    build(settings, sources=[jsonl], build_index=False)
    with pytest.raises(InputError, match="not built from a PubMed seed"):
        build(settings, client=_client(FakeEntrez()), build_index=False, update=True)
    with pytest.raises(InputError, match="No corpus"):
        build(Settings.load(index_dir=tmp_path / "none"), update=True, build_index=False)


def test_a_second_writer_is_refused_at_once(tmp_path: Path) -> None:
    with (
        corpus_lock(tmp_path),
        pytest.raises(CorpusBusy, match="Another build or update"),
        corpus_lock(tmp_path),
    ):
        pass


@pytest.mark.slow
def test_update_embeds_only_the_new_papers(tmp_path: Path) -> None:
    routes = _routes()
    fake = FakeEntrez(handler=routes)
    settings = _settings(tmp_path)
    first = build(settings, client=_client(fake), expand=("citing",))
    assert first.index is not None and first.index["texts_cached"] == 0
    routes.citing[:0] = [Invented("90300003", 2024), Invented("90300004", 2025)]
    report = build(settings, client=_client(fake), update=True)
    assert report.changes.added["citing"] == ["90300003", "90300004"]
    index = report.index
    assert index["texts_cached"] == first.index["texts_embedded"]
    # Each new paper is a title chunk + one abstract sentence's chunk and sentence: few texts.
    assert 0 < index["texts_embedded"] <= 2 * 3
    assert index["papers"] == first.index["papers"] + 2


# -- the relation in the store, JSONL, snapshots and the content hash ------------------------


def _v1_store(path: Path, source: str) -> None:
    """A corpus store as written before relations were recorded (schema version 1)."""
    path.mkdir(parents=True)
    conn = sqlite3.connect(path / "corpus.sqlite")
    conn.executescript(
        """
        CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT);
        CREATE TABLE papers (pmid TEXT PRIMARY KEY, title TEXT, journal TEXT, year INTEGER,
            authors TEXT NOT NULL DEFAULT '[]', doi TEXT, mesh TEXT NOT NULL DEFAULT '[]',
            publication_types TEXT NOT NULL DEFAULT '[]', source TEXT NOT NULL DEFAULT '');
        CREATE TABLE sections (pmid TEXT NOT NULL, position INTEGER NOT NULL, label TEXT,
            category TEXT, text TEXT NOT NULL, PRIMARY KEY (pmid, position));
        CREATE TABLE refs (pmid TEXT NOT NULL, position INTEGER NOT NULL, citation TEXT,
            ref_pmid TEXT, ref_doi TEXT, PRIMARY KEY (pmid, position));
        """
    )
    conn.executemany(
        "INSERT INTO meta VALUES (?, ?)",
        [("schema_version", "1"), ("seed_pmid", "1"), ("source", source)],
    )
    conn.executemany(
        "INSERT INTO papers (pmid, title) VALUES (?, ?)", [("1", "R"), ("2", "C"), ("3", "O")]
    )
    conn.execute("INSERT INTO refs VALUES ('1', 0, NULL, '2', NULL)")
    conn.commit()
    conn.close()


@pytest.mark.parametrize(("source", "other"), [("pubmed:pmid:1", "cited"), ("files:x", "file")])
def test_an_old_store_is_migrated(tmp_path: Path, source: str, other: str) -> None:
    _v1_store(tmp_path / "i", source)
    with CorpusStore.open(tmp_path / "i") as store:
        assert store.relations() == {"1": "seed", "2": "cited", "3": other}
        store.add_papers([Paper(pmid="4", relation="citing")])
        assert store.relations()["4"] == "citing"
    conn = sqlite3.connect(tmp_path / "i" / "corpus.sqlite")
    assert conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone() == ("2",)


def test_a_read_only_old_store_is_still_readable(tmp_path: Path) -> None:
    _v1_store(tmp_path / "i", "pubmed:pmid:1")
    path = tmp_path / "i" / "corpus.sqlite"
    path.chmod(0o444)
    try:
        with CorpusStore.open(tmp_path / "i") as store:
            assert [p.relation for p in store.papers()] == ["seed", "cited", "cited"]
    finally:
        path.chmod(0o644)


def test_jsonl_relation(tmp_path: Path) -> None:
    path = tmp_path / "c.jsonl"
    path.write_text(json.dumps({"pmid": "1", "abstract": "Invented.", "relation": "Citing"}) + "\n")
    assert load_sources([path]).papers[0].relation == "citing"
    path.write_text(json.dumps({"pmid": "1", "relation": "cites"}) + "\n")
    with pytest.raises(InputError, match="line 1: 'relation' 'cites'"):
        load_sources([path])


def test_the_hash_counts_only_relations_the_graph_does_not_give(tmp_path: Path) -> None:
    papers = [Paper(pmid="1", title="Invented")]
    with CorpusStore.open(tmp_path / "a") as store:
        store.replace_corpus(papers, source="files:x")
        plain = store.content_hash()
        store.replace_corpus([Paper(pmid="1", title="Invented", relation="file")])
        assert store.content_hash() == plain
        store.replace_corpus([Paper(pmid="1", title="Invented", relation="citing")])
        assert store.content_hash() != plain
