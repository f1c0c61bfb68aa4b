from __future__ import annotations

import sys
import types
from pathlib import Path

import pytest
from carqa.index.corpus.entrez import EntrezClient
from carqa.index.corpus.pipeline import build
from carqa.index.corpus.store import CorpusStore

from carqa.errors import InputError
from carqa.settings import Settings
from tests.index.fixtures.entrez.fake_entrez import SEED_DOI, FakeClock, FakeEntrez
from tests.index.medline_xml import medline_set, pubmed_set, write

CAR_T = Path(__file__).resolve().parents[1] / "fixtures" / "car_t_papers.jsonl"


def _settings(tmp_path: Path, **kwargs) -> Settings:
    return Settings.load(index_dir=tmp_path / "index", **kwargs)


def _client(fake: FakeEntrez) -> EntrezClient:
    clock = FakeClock()
    return EntrezClient(email="dev@example.org", transport=fake, sleep=clock.sleep, clock=clock)


def test_build_from_files_reports_counts(tmp_path: Path) -> None:
    report = build(_settings(tmp_path), sources=[CAR_T], build_index=False)
    assert report.source == "files" and not report.added
    assert report.ingested == 22
    assert report.counts["papers"] == 22
    assert report.seed_pmid == "90000001"
    assert report.counts["seed_references_resolved"] == report.counts["seed_references"] == 20
    assert report.index is None
    assert report.as_dict()["counts"]["papers"] == 22


def test_ingest_reports_progress_through_the_callback(tmp_path: Path) -> None:
    calls: list[tuple[str, int, int | None]] = []
    build(
        _settings(tmp_path),
        sources=[CAR_T],
        build_index=False,
        on_progress=lambda stage, done, total: calls.append((stage, done, total)),
    )
    stages = list(dict.fromkeys(stage for stage, _, _ in calls))
    assert stages == ["Reading source files", "Writing the corpus store"]
    assert ("Reading source files", 1, 1) in calls  # one file, read


def test_build_from_pubmed_uses_settings_seed_doi(tmp_path: Path) -> None:
    fake = FakeEntrez()
    settings = _settings(tmp_path, seed_doi=SEED_DOI)
    report = build(settings, client=_client(fake), build_index=False)
    assert report.source == "pubmed"
    assert report.seed_pmid == "90200001"
    assert report.seed is not None and report.seed.resolved == 5
    assert report.requests == {"cached": 0, "fetched": 6, "retries": 0}
    assert report.unresolved_references[0].startswith("Invented Society")
    with CorpusStore.open(settings.index_dir) as store:
        assert store.counts()["papers"] == 6


def test_add_keeps_existing_papers_and_seed(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    build(settings, sources=[CAR_T], build_index=False)
    extra = tmp_path / "extra.jsonl"
    extra.write_text('{"pmid": "1", "abstract": "Invented."}\n')
    report = build(settings, sources=[extra], add=True, build_index=False)
    assert report.counts["papers"] == 23 and report.seed_pmid == "90000001"


def test_build_index_is_called_with_the_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen = {}

    class Report:
        def as_dict(self) -> dict:
            return {"chunks": 3}

    def build_index(store, index_dir, *, model, on_progress, chunk_settings):
        seen.update(papers=store.counts()["papers"], index_dir=index_dir, model=model)
        seen.update(chunk_size=chunk_settings.chunk_size)  # checked before the store was written
        return Report()

    module = types.ModuleType("carqa.index.search.build")
    module.build_index = build_index  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "carqa.index.search.build", module)
    settings = _settings(tmp_path, model="m")
    report = build(settings, sources=[CAR_T])
    assert seen == {"papers": 22, "index_dir": settings.index_dir, "model": "m", "chunk_size": 400}
    assert report.index == {"chunks": 3}


def test_sources_and_seed_flags_are_exclusive(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="cannot be combined"):
        build(_settings(tmp_path), sources=[CAR_T], pmid="1", build_index=False)


def test_doi_and_pmid_together_are_refused_before_anything_is_fetched(tmp_path: Path) -> None:
    fake = FakeEntrez()
    with pytest.raises(InputError, match="give one of them"):
        build(
            _settings(tmp_path),
            doi=SEED_DOI,
            pmid="1",
            build_index=False,
            client=_client(fake),
        )
    assert fake.calls == []
    assert not (tmp_path / "index" / "corpus.sqlite").exists()


def test_pubmedqa_structured_and_unstructured(shared_data: Path, tmp_path: Path) -> None:
    structured = build(
        _settings(tmp_path / "s"),
        sources=[shared_data / "pubmedqa" / "corpus.jsonl"],
        build_index=False,
    )
    assert structured.counts["papers"] == structured.counts["with_abstract"] == 1000
    with CorpusStore.open(tmp_path / "s" / "index") as store:
        papers = list(store.papers())
        assert all(p.sections[-1].label == "CONCLUSIONS" for p in papers)
        structured_pmids = [p.pmid for p in papers]
    unstructured = build(
        _settings(tmp_path / "u"),
        sources=[shared_data / "pubmedqa" / "corpus_unstructured.jsonl"],
        build_index=False,
    )
    assert unstructured.counts["papers"] == 1000
    with CorpusStore.open(tmp_path / "u" / "index") as store:
        papers = list(store.papers())
        assert [p.pmid for p in papers] == structured_pmids
        assert all(len(p.sections) == 1 and p.sections[0].label is None for p in papers)


def test_medline_excerpt_counts(shared_data: Path, tmp_path: Path) -> None:
    report = build(
        _settings(tmp_path),
        sources=[shared_data / "medline" / "medline16n0902.xml.gz"],
        build_index=False,
    )
    assert (report.counts["papers"], report.counts["with_abstract"]) == (604, 526)
    assert report.counts["title_only"] == 78


# -- MEDLINE <DeleteCitation> ----------------------------------------------------------------


def test_add_with_delete_citation_removes_stored_papers(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    build(settings, sources=[CAR_T], build_index=False)
    update = write(
        tmp_path / "update.xml", medline_set("90000003", delete=("90000002", "90000004", "5"))
    )
    report = build(settings, sources=[update], add=True, build_index=False)
    assert (report.deletions, report.deletions_absent) == (3, 1)  # 5 was never stored
    assert report.as_dict()["deletions"] == 3
    assert report.ingested == 1 and report.counts["papers"] == 20
    with CorpusStore.open(settings.index_dir) as store:
        assert store.paper("90000002") is None and store.paper("90000004") is None
        assert store.paper("90000003").title == "Invented paper 90000003."  # updated
        assert store.seed_pmid() == "90000001"
        # the deleted papers' sections and references went with them
        assert store._scalar("SELECT count(*) FROM sections WHERE pmid = '90000002'") == 0


def test_an_update_that_only_deletes_is_fine_with_add_but_not_alone(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    build(settings, sources=[CAR_T], build_index=False)
    only_deletes = write(tmp_path / "d.xml", pubmed_set(delete=("90000002",)))
    with pytest.raises(InputError, match="hold no papers"):
        build(settings, sources=[only_deletes], build_index=False)
    report = build(settings, sources=[only_deletes], add=True, build_index=False)
    assert (report.deletions, report.deletions_absent, report.counts["papers"]) == (1, 0, 21)


def test_replace_deletes_what_an_earlier_file_of_the_run_added(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    build(settings, sources=[CAR_T], build_index=False)
    base = write(tmp_path / "base.xml", medline_set("1", "2"))
    update = write(tmp_path / "update.xml", medline_set("3", delete=("2", "90000002")))
    report = build(settings, sources=[base, update], build_index=False)
    # replace: 90000002 is in the old stored corpus only, which this run replaces
    assert (report.deletions, report.deletions_absent) == (2, 1)
    with CorpusStore.open(settings.index_dir) as store:
        assert store.pmids() == ["1", "3"]


@pytest.mark.parametrize("add", [True, False], ids=["add-stored-seed", "replace-file-seed"])
def test_deleting_the_seed_is_refused_and_changes_nothing(tmp_path: Path, add: bool) -> None:
    settings = _settings(tmp_path)
    build(settings, sources=[CAR_T], build_index=False)
    with CorpusStore.open(settings.index_dir) as store:
        before = store.content_hash()
    update = write(tmp_path / "update.xml", medline_set("7", delete=("90000001",)))
    sources = [update] if add else [CAR_T, update]
    with pytest.raises(InputError, match=r"PMID 90000001 is the seed review.*update\.xml") as err:
        build(settings, sources=sources, add=add, build_index=False)
    assert "Nothing was changed" in str(err.value) and "another seed" in (err.value.hint or "")
    with CorpusStore.open(settings.index_dir) as store:
        assert store.content_hash() == before
