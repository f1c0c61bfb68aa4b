from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from carqa.index.corpus.entrez import EntrezClient
from carqa.index.corpus.seed import citation_query, fetch_seed_corpus, normalise_doi, resolve_seed

from carqa.errors import InputError, SourceError
from tests.index.fixtures.entrez.fake_entrez import (
    SEED_DOI,
    SEED_PMID,
    FakeClock,
    FakeEntrez,
    efetch_for_ids,
    fixture,
    seed_routes,
    transient,
)


def _client(fake: FakeEntrez, cache_dir: Path | None = None) -> EntrezClient:
    clock = FakeClock()
    return EntrezClient(
        email="dev@example.org",
        transport=fake,
        sleep=clock.sleep,
        clock=clock,
        cache_dir=cache_dir,
    )


def test_seed_flow_unions_reference_list_doi_ecitmatch_and_elink() -> None:
    fake = FakeEntrez()
    stages: list[tuple[str, int, int | None]] = []
    corpus = fetch_seed_corpus(
        _client(fake), doi=SEED_DOI, on_progress=lambda *args: stages.append(args)
    )
    report = corpus.report
    assert corpus.seed.pmid == SEED_PMID
    assert report.references_listed == 6
    assert report.from_reference_list == 3
    assert report.from_doi == 1
    assert report.from_ecitmatch == 1
    assert report.from_elink_only == 1
    assert report.resolved == 5
    assert report.share_resolved == pytest.approx(5 / 6)
    assert [r.citation for r in report.unresolved] == [
        "Invented Society. Invented guidance on CAR T cells. Available at: "
        "https://example.org/guidance (2019)."
    ]
    # The seed keeps every reference, the unresolved one included, plus the elink-only one.
    assert [r.pmid for r in corpus.seed.references] == [
        "90200002",
        "90200003",
        "90200004",
        "90200005",
        "90200006",
        None,
        "90200007",
    ]
    assert report.cited_pmids == 6
    assert sorted(p.pmid for p in corpus.cited) == [
        "90200002",
        "90200003",
        "90200005",
        "90200006",
        "90200007",
    ]
    assert report.missing_records == ["90200004"]
    assert corpus.papers[0].pmid == SEED_PMID
    assert stages[-1] == ("Fetching cited abstracts", 6, 6)


def test_cited_records_are_fetched_in_one_batch_with_every_id() -> None:
    fake = FakeEntrez()
    fetch_seed_corpus(_client(fake), pmid=SEED_PMID)
    efetches = [c for c in fake.calls if c.endpoint == "efetch"]
    assert [c.one("id") for c in efetches] == [
        SEED_PMID,
        "90200002,90200003,90200004,90200005,90200006,90200007",
    ]
    assert fake.count("esearch") == 1  # the reference DOI only: --pmid skips the seed search


def test_elink_fallback_when_record_has_no_reference_list() -> None:
    seed_without_list = fixture("efetch_seed.xml").split(b"<ReferenceList>")[0] + (
        b"</PubmedData></PubmedArticle></PubmedArticleSet>"
    )

    def routes(endpoint: str, params: dict[str, list[str]]) -> bytes:
        if endpoint == "efetch" and params["id"] == [SEED_PMID]:
            return seed_without_list
        return seed_routes(endpoint, params)

    fake = FakeEntrez(handler=routes)
    corpus = fetch_seed_corpus(_client(fake), doi=SEED_DOI)
    assert corpus.report.references_listed == 0
    assert corpus.report.share_resolved is None
    assert [r.pmid for r in corpus.seed.references] == ["90200002", "90200003", "90200007"]
    assert any("no reference list" in note for note in corpus.report.notes)
    assert fake.count("ecitmatch") == 0


def test_bookshelf_chapter_as_seed_keeps_its_reference_list_and_doi() -> None:
    # A review chapter (PubmedBookArticle) lists its references in BookDocument/ReferenceList.
    book_pmid = "90200101"

    def routes(endpoint: str, params: dict[str, list[str]]) -> bytes:
        if endpoint == "efetch" and params["id"] == [book_pmid]:
            return fixture("efetch_book.xml")
        return seed_routes(endpoint, params)

    corpus = fetch_seed_corpus(_client(FakeEntrez(handler=routes)), pmid=book_pmid)
    report = corpus.report
    assert report.seed_doi == "10.9999/invented.book.1"
    assert (report.references_listed, report.from_reference_list, report.from_doi) == (2, 1, 1)
    assert report.unresolved == []
    assert not any("no reference list" in note for note in report.notes)
    assert [r.pmid for r in corpus.seed.references][:2] == ["90200002", "90200005"]


def test_unknown_doi_is_an_input_error() -> None:
    with pytest.raises(InputError, match=r"No PubMed record has the DOI 10\.9999/nothing"):
        fetch_seed_corpus(_client(FakeEntrez()), doi="https://doi.org/10.9999/nothing")


def test_bad_pmid_and_missing_seed() -> None:
    with pytest.raises(InputError, match="not a PubMed id"):
        resolve_seed(_client(FakeEntrez()), doi=None, pmid="abc")
    with pytest.raises(InputError, match="No seed given"):
        resolve_seed(_client(FakeEntrez()), doi=" ", pmid=None)
    empty = FakeEntrez(
        handler=lambda *_: (
            fixture("efetch_cited.xml").split(b"<PubmedArticle>")[0] + b"</PubmedArticleSet>"
        )
    )
    with pytest.raises(InputError, match="no record for PMID 123"):
        fetch_seed_corpus(_client(empty), pmid="123")


def test_interrupted_run_resumes_from_cache(tmp_path: Path) -> None:
    # First run: the cited-records efetch dies (PubMed goes away mid-run).
    def flaky(endpoint: str, params: dict[str, list[str]]) -> bytes:
        if endpoint == "efetch" and params["id"] != [SEED_PMID]:
            raise transient(None)
        return seed_routes(endpoint, params)

    failing = FakeEntrez(handler=flaky)
    with pytest.raises(SourceError, match="unreachable"):
        fetch_seed_corpus(_client(failing, tmp_path), doi=SEED_DOI)
    # Second run: everything before the failure comes from the cache.
    fake = FakeEntrez()
    client = _client(fake, tmp_path)
    corpus = fetch_seed_corpus(client, doi=SEED_DOI)
    assert [c.endpoint for c in fake.calls] == ["efetch"]
    assert client.stats.fetched == 1
    assert client.stats.cached == 5  # seed esearch, seed efetch, ref esearch, ecitmatch, elink
    assert len(corpus.cited) == 5
    # Third run: nothing fetched at all.
    again = _client(FakeEntrez(handler=lambda *_: pytest.fail("network used")), tmp_path)
    fetch_seed_corpus(again, doi=SEED_DOI)
    assert again.stats.fetched == 0 and again.stats.cached == 6


def test_normalise_doi() -> None:
    assert (
        normalise_doi(" https://doi.org/10.1038/s41591-019-0564-6 ") == "10.1038/s41591-019-0564-6"
    )
    assert normalise_doi("doi:10.1/x") == "10.1/x"


@pytest.mark.parametrize(
    "pasted",
    [
        # as the review's PubMed page shows it, copied with the sentence around it
        f"doi: {SEED_DOI}. Epub 2019 Sep 9.",
        f"{SEED_DOI}.",
        f"DOI: {SEED_DOI.upper()},",
        f"https://doi.org/{SEED_DOI.replace('/', '%2F')}",  # a browser's address bar
        f"doi.org/{SEED_DOI}",
        f"https://www.doi.org/{SEED_DOI}",
        f" <{SEED_DOI}>\n",
    ],
)
def test_pasted_doi_forms_find_the_seed(pasted: str) -> None:
    fake = FakeEntrez()
    assert resolve_seed(_client(fake), doi=pasted, pmid=None) == SEED_PMID
    assert fake.calls[0].one("term").lower() == f'"{SEED_DOI}"[doi]'


def test_a_url_that_is_not_a_doi_is_refused_without_a_search() -> None:
    fake = FakeEntrez()
    with pytest.raises(InputError, match="is not a DOI") as raised:
        resolve_seed(_client(fake), doi="https://www.nature.com/articles/s41591-019", pmid=None)
    assert "--pmid" in (raised.value.hint or "")
    assert fake.calls == []


def test_doi_matching_several_records_is_refused_not_guessed() -> None:
    two = fixture("esearch_seed_doi.xml").replace(
        b"<Id>90200001</Id>", b"<Id>90200001</Id>\n<Id>90200009</Id>"
    )

    def routes(endpoint: str, params: dict[str, list[str]]) -> bytes:
        if endpoint == "esearch":
            return two
        return efetch_for_ids(params["id"][0].split(","))

    with pytest.raises(InputError, match="2 PubMed records have the DOI") as raised:
        resolve_seed(_client(FakeEntrez(handler=routes)), doi=SEED_DOI, pmid=None)
    assert "90200001, 90200009" in raised.value.message
    assert "--pmid" in (raised.value.hint or "")


ERRATUM_TYPE = b'<PublicationTypeList><PublicationType UI="D016425">Published Erratum'
ERRATUM_TYPE += b"</PublicationType></PublicationTypeList></Article>"


def _with_erratum(erratum: str) -> Callable[[str, dict[str, list[str]]], bytes]:
    """The seed scenario, plus PMID ``erratum``: a Published Erratum indexed under the seed's
    DOI (esearch finds both)."""

    def routes(endpoint: str, params: dict[str, list[str]]) -> bytes:
        if endpoint == "esearch" and SEED_DOI in params["term"][0]:
            return fixture("esearch_seed_doi.xml").replace(
                b"<Id>90200001</Id>", f"<Id>{erratum}</Id>\n<Id>90200001</Id>".encode()
            )
        if endpoint == "efetch" and erratum in params["id"][0].split(","):
            ids = params["id"][0].split(",")
            records = efetch_for_ids(ids).split(b"</PubmedArticle>")
            at = ids.index(erratum)
            records[at] = records[at].replace(b"</Article>", ERRATUM_TYPE)
            return b"</PubmedArticle>".join(records)
        return seed_routes(endpoint, params)

    return routes


def test_doi_shared_with_an_erratum_resolves_to_the_article() -> None:
    fake = FakeEntrez(handler=_with_erratum("90200009"))
    corpus = fetch_seed_corpus(_client(fake), doi=SEED_DOI)
    assert corpus.seed.pmid == SEED_PMID
    assert len(corpus.cited) == 5  # the flow goes on as for an unambiguous DOI


def test_a_doi_shared_by_two_articles_and_an_erratum_lists_the_erratum() -> None:
    three = fixture("esearch_seed_doi.xml").replace(
        b"<Id>90200001</Id>", b"<Id>90200001</Id><Id>90200008</Id><Id>90200009</Id>"
    )
    erratum = _with_erratum("90200009")

    def routes(endpoint: str, params: dict[str, list[str]]) -> bytes:
        return three if endpoint == "esearch" else erratum(endpoint, params)

    with pytest.raises(InputError, match="3 PubMed records") as raised:
        resolve_seed(_client(FakeEntrez(handler=routes)), doi=SEED_DOI, pmid=None)
    assert "90200001, 90200008, 90200009 (Published Erratum)" in raised.value.message


def test_an_erratum_as_seed_is_refused_not_built_alone() -> None:
    fake = FakeEntrez(handler=_with_erratum("90200009"))
    with pytest.raises(InputError, match=r"PMID 90200009 is a notice \(Published Erratum") as error:
        fetch_seed_corpus(_client(fake), pmid="90200009")
    assert "--pmid" in (error.value.hint or "")
    assert fake.count("elink") == 0


@pytest.mark.parametrize(
    ("citation", "expected"),
    [
        (
            "Alpha A, Beta B, et al. Invented CAR T cells persist. N Engl J Med. "
            "2014 Oct 16;371(16):1507-17.",
            ("n engl j med", "2014", "371", "1507", "alpha a"),
        ),
        (
            "Alpha, A. B. et al. Invented CAR T cells persist in leukemia. N. Engl. J. Med. "
            "371, 1507–1517 (2014).",
            ("n engl j med", "2014", "371", "1507", "alpha ab"),
        ),
        (
            "Alpha AB, et al. Invented remission in B-ALL. J. Clin. Oncol. 2015;33:540–549.",
            ("j clin oncol", "2015", "33", "540", "alpha ab"),
        ),
        (
            "van der Gamma SJ, Delta M. Invented pharmacology. Nat Rev Drug Discov. "
            "2015;14:499-509.",
            ("nat rev drug discov", "2015", "14", "499", "van der gamma sj"),
        ),
        ("Radiology. 2015 Jan;274(1):250-9", ("radiology", "2015", "274", "250", "")),
        ("Alpha AB. Blood. 2011;118(18):4817-28.", ("blood", "2011", "118", "4817", "alpha ab")),
    ],
)
def test_citation_query_parses_common_styles(citation: str, expected: tuple) -> None:
    query = citation_query("k", citation)
    assert query is not None
    assert (query.journal, query.year, query.volume, query.first_page, query.author) == expected


def test_citation_without_volume_or_page_is_skipped() -> None:
    assert citation_query("k", "Invented Society. Guidance. Available at: https://x.org") is None


@pytest.mark.parametrize(
    "pasted",
    [
        "90200001",
        " PMID: 90200001 ",  # as a PubMed page shows it
        "pmid90200001",
        "https://pubmed.ncbi.nlm.nih.gov/90200001/",
        "pubmed.ncbi.nlm.nih.gov/90200001",
        "https://www.ncbi.nlm.nih.gov/pubmed/90200001",
        "https://pubmed.ncbi.nlm.nih.gov/90200001/?from_single_result=x",
        "90200001.",
    ],
)
def test_pasted_pmid_forms_name_the_seed(pasted: str) -> None:
    fake = FakeEntrez()
    assert resolve_seed(_client(fake), doi=None, pmid=pasted) == "90200001"
    assert fake.calls == []  # a PMID needs no search


@pytest.mark.parametrize("bad", ["PMC6748321", "１２３", "123456789012", "https://example.org/123"])
def test_what_is_not_a_pmid_is_refused(bad: str) -> None:
    with pytest.raises(InputError, match="is not a PubMed id") as raised:
        resolve_seed(_client(FakeEntrez()), doi=None, pmid=bad)
    if bad.startswith("PMC"):
        assert "PubMed Central" in (raised.value.hint or "")
