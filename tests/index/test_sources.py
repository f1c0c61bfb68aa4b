from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest
from carqa.index.corpus.models import Reference, Section
from carqa.index.corpus.sources import load_sources, paper_from_record, read_jsonl

from carqa.errors import InputError
from tests.index.medline_xml import medline_set, pubmed_set, write


def _write_jsonl(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


STRUCTURED = {
    "pmid": "101",
    "year": "2011",
    "mesh": ["T-Lymphocytes", "Antigens, CD19"],
    "sections": [
        {"label": "BACKGROUND", "text": "Invented cells were studied."},
        {"label": "MATERIALS AND METHODS", "text": "Invented methods were used."},
    ],
    "conclusion": "Invented cells persisted.",
}
UNSTRUCTURED = {"pmid": "101", "year": "2011", "mesh": [], "abstract": "Invented cells persisted."}


def test_structured_shape_keeps_conclusion_as_labelled_section() -> None:
    paper, is_seed = paper_from_record(STRUCTURED)
    assert not is_seed
    assert paper.pmid == "101"
    assert paper.year == 2011
    assert paper.mesh == ["T-Lymphocytes", "Antigens, CD19"]
    assert paper.sections == [
        Section("Invented cells were studied.", "BACKGROUND", "BACKGROUND"),
        Section("Invented methods were used.", "MATERIALS AND METHODS", None),
        Section("Invented cells persisted.", "CONCLUSIONS", "CONCLUSIONS"),
    ]


def test_unstructured_shape_is_one_unlabelled_section() -> None:
    paper, _ = paper_from_record(UNSTRUCTURED)
    assert paper.sections == [Section("Invented cells persisted.")]
    assert paper.title is None


def test_optional_fields_seed_and_references() -> None:
    record = {
        "pmid": 5,
        "title": "An invented review",
        "journal": "Invented Med",
        "year": 2019,
        "doi": "10.1/x",
        "authors": ["Doe J"],
        "publication_types": ["Review"],
        "is_seed": True,
        "references": ["6", {"citation": "Roe R. Invented. 2017.", "pmid": None}],
        "abstract": "Invented review text.",
    }
    paper, is_seed = paper_from_record(record)
    assert is_seed
    assert (paper.pmid, paper.title, paper.journal, paper.doi) == (
        "5",
        "An invented review",
        "Invented Med",
        "10.1/x",
    )
    assert paper.authors == ["Doe J"] and paper.publication_types == ["Review"]
    assert paper.references == [Reference(pmid="6"), Reference(citation="Roe R. Invented. 2017.")]


def test_no_abstract_is_title_only() -> None:
    paper, _ = paper_from_record({"pmid": "9", "title": "Only a title"})
    assert not paper.has_abstract


def test_missing_pmid_names_the_line(tmp_path: Path) -> None:
    path = _write_jsonl(tmp_path / "c.jsonl", [STRUCTURED, {"abstract": "no id"}])
    with pytest.raises(InputError, match=r"line 2: missing 'pmid'"):
        list(read_jsonl(path))


@pytest.mark.parametrize("pmid", ["abc-1", "12 34", "PMC123", "-5", "１２３", "12345678901"])
def test_non_numeric_pmid_names_the_line(tmp_path: Path, pmid: str) -> None:
    path = _write_jsonl(tmp_path / "c.jsonl", [STRUCTURED, {"pmid": pmid, "abstract": "x"}])
    with pytest.raises(InputError, match=r"c\.jsonl, line 2: 'pmid' .* is not a PubMed id"):
        list(read_jsonl(path))


def test_numeric_pmids_as_strings_or_integers(tmp_path: Path) -> None:
    path = _write_jsonl(tmp_path / "c.jsonl", [{"pmid": 42}, {"pmid": " 43 "}])
    assert [paper.pmid for paper, _ in read_jsonl(path)] == ["42", "43"]


def test_bad_json_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "c.jsonl"
    path.write_text(json.dumps(STRUCTURED) + "\n\n{not json\n")
    with pytest.raises(InputError, match=r"line 3: not valid JSON"):
        list(read_jsonl(path))


def test_gzip_and_directory_and_duplicates(tmp_path: Path) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    _write_jsonl(folder / "a.jsonl", [STRUCTURED])
    with gzip.open(folder / "b.jsonl.gz", "wt") as handle:
        handle.write(json.dumps(UNSTRUCTURED) + "\n" + json.dumps({"pmid": "7"}) + "\n")
    (folder / "notes.txt").write_text("ignored")
    corpus = load_sources([folder])
    assert [p.name for p in corpus.files] == ["a.jsonl", "b.jsonl.gz"]
    assert sorted(p.pmid for p in corpus.papers) == ["101", "7"]
    assert corpus.duplicates == 1
    assert corpus.duplicates_across_files == 1 and corpus.duplicates_within == {}
    later = next(p for p in corpus.papers if p.pmid == "101")
    assert later.sections == [Section("Invented cells persisted.")]


def test_a_directory_s_hidden_files_are_skipped(tmp_path: Path) -> None:
    """macOS's AppleDouble files (``._a.jsonl``, binary) sit beside every copied file; one of
    them failed the whole build. Named on its own, a hidden file is still read."""
    folder = tmp_path / "in"
    folder.mkdir()
    _write_jsonl(folder / "a.jsonl", [STRUCTURED])
    (folder / "._a.jsonl").write_bytes(b"\x00\x05\x16\x07\x00\x02\x00\x00Mac OS X")
    hidden = _write_jsonl(folder / ".b.jsonl", [UNSTRUCTURED])
    corpus = load_sources([folder])
    assert [p.name for p in corpus.files] == ["a.jsonl"]
    assert [p.name for p in load_sources([hidden]).files] == [".b.jsonl"]


@pytest.mark.parametrize("year", [20190101, -5, 0, 2100])
def test_an_integer_year_that_is_no_year_is_refused_by_line(tmp_path: Path, year: int) -> None:
    """20190101 was stored as the year, and year filters then missed the paper silently."""
    path = _write_jsonl(
        tmp_path / "y.jsonl",
        [{**UNSTRUCTURED, "year": 2019}, {**UNSTRUCTURED, "pmid": "102", "year": year}],
    )
    with pytest.raises(InputError, match=rf"line 2: 'year' {year} is not a year"):
        load_sources([path])
    ok = _write_jsonl(tmp_path / "ok.jsonl", [{**UNSTRUCTURED, "year": y} for y in (1800, 2099)])
    assert load_sources([ok]).papers[0].year == 2099  # the later line wins (same pmid)


@pytest.mark.parametrize("bad", ["PMC123", "31501520.1", "", "12345678901", True, 1.5])
def test_a_reference_that_is_no_pmid_is_refused_by_line(tmp_path: Path, bad: object) -> None:
    """It was stored and counted among the seed's cited papers, which no corpus can hold."""
    refs = [{"citation": "X", "pmid": bad}] if bad == "" else [bad]
    path = _write_jsonl(tmp_path / "r.jsonl", [{**UNSTRUCTURED, "references": refs}])
    if bad == "":  # an empty pmid in an object means "no PMID", as null does
        assert load_sources([path]).papers[0].references == [Reference(citation="X")]
        return
    with pytest.raises(InputError, match=r"line 1: (reference .* is not a PMID|each reference)"):
        load_sources([path])


def test_reference_pmids_as_numbers_strings_or_objects_are_read(tmp_path: Path) -> None:
    refs = [31501520, " 29385370 ", {"citation": "Y", "pmid": 28424524}, {"pmid": None}]
    path = _write_jsonl(tmp_path / "r.jsonl", [{**UNSTRUCTURED, "references": refs}])
    assert [r.pmid for r in load_sources([path]).papers[0].references] == [
        "31501520",
        "29385370",
        "28424524",
        None,
    ]


def test_duplicates_within_one_file_are_counted_for_that_file(tmp_path: Path) -> None:
    path = _write_jsonl(
        tmp_path / "c.jsonl",
        [{"pmid": "1", "title": "first"}, {"pmid": "2"}, {"pmid": "1", "title": "second"}],
    )
    corpus = load_sources([path])
    assert corpus.duplicates_within == {path: ["1"]}
    assert corpus.duplicates_across_files == 0 and corpus.duplicates == 1
    assert [p.title for p in corpus.papers if p.pmid == "1"] == ["second"]


def test_seed_flag_is_reported(tmp_path: Path) -> None:
    path = _write_jsonl(tmp_path / "c.jsonl", [{"pmid": "1", "is_seed": True}, {"pmid": "2"}])
    assert load_sources([path]).seed_pmid == "1"


def test_missing_and_unknown_files(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="does not exist"):
        load_sources([tmp_path / "nope.jsonl"])
    (tmp_path / "x.csv").write_text("a,b")
    with pytest.raises(InputError, match="Don't know how to read"):
        load_sources([tmp_path / "x.csv"])
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(InputError, match="contains no"):
        load_sources([empty])


def test_pubmedqa_corpus_structured(shared_data: Path) -> None:
    corpus = load_sources([shared_data / "pubmedqa" / "corpus.jsonl"])
    assert len(corpus.papers) == 1000
    assert all(p.sections[-1].label == "CONCLUSIONS" for p in corpus.papers)
    assert all(p.sections[-1].category == "CONCLUSIONS" for p in corpus.papers)
    # a few pubmedqa records carry no year; the rest parse to ints
    assert sum(1 for p in corpus.papers if isinstance(p.year, int)) > 900


def test_pubmedqa_corpus_unstructured(shared_data: Path) -> None:
    structured = load_sources([shared_data / "pubmedqa" / "corpus.jsonl"])
    corpus = load_sources([shared_data / "pubmedqa" / "corpus_unstructured.jsonl"])
    assert {p.pmid for p in corpus.papers} == {p.pmid for p in structured.papers}
    assert all(len(p.sections) == 1 and p.sections[0].label is None for p in corpus.papers)


def test_jsonl_with_byte_order_mark_and_crlf_lines(tmp_path: Path) -> None:
    # As a Windows editor saves it: BOM, CRLF, a blank line; gzipped the same way.
    text = "\ufeff" + json.dumps(UNSTRUCTURED) + "\r\n\r\n" + json.dumps({"pmid": "7"}) + "\r\n"
    plain = tmp_path / "bom.jsonl"
    plain.write_bytes(text.encode("utf-8"))
    packed = tmp_path / "bom.jsonl.gz"
    packed.write_bytes(gzip.compress(text.encode("utf-8")))
    for path in (plain, packed):
        papers = [paper for paper, _ in read_jsonl(path)]
        assert [p.pmid for p in papers] == ["101", "7"]
        assert papers[0].sections == [Section("Invented cells persisted.")]


def test_snapshot_header_after_a_byte_order_mark_is_still_a_header(tmp_path: Path) -> None:
    path = tmp_path / "s.jsonl"
    header = {"format": "carqa-snapshot", "version": 1}
    path.write_bytes(("\ufeff" + json.dumps(header) + "\n" + json.dumps(UNSTRUCTURED)).encode())
    assert [paper.pmid for paper, _ in read_jsonl(path)] == ["101"]


def test_jsonl_compression_is_read_from_the_content_not_the_name(tmp_path: Path) -> None:
    text = json.dumps(UNSTRUCTURED) + "\n"
    plain_named_gz = tmp_path / "a.jsonl.gz"
    plain_named_gz.write_text(text, encoding="utf-8")
    gzip_named_plain = tmp_path / "b.jsonl"
    gzip_named_plain.write_bytes(gzip.compress(text.encode()))
    for path in (plain_named_gz, gzip_named_plain):
        assert [paper.pmid for paper, _ in read_jsonl(path)] == ["101"]


def test_delete_citation_applies_in_file_order(tmp_path: Path) -> None:
    """A deletion removes what earlier files held; a later file may add the paper again."""
    first = write(tmp_path / "a.xml", medline_set("1", "2", "3"))
    update = write(tmp_path / "b.xml", medline_set("4", delete=("2", "3", "9")))
    again = _write_jsonl(tmp_path / "c.jsonl", [{"pmid": "3", "abstract": "Back again."}])
    corpus = load_sources([first, update, again])
    assert sorted(p.pmid for p in corpus.papers) == ["1", "3", "4"]
    assert corpus.deleted == {"2": update, "9": update}  # 3 came back in c.jsonl
    assert corpus.deleted_here == {"2"}  # 9 was not read before: for the store to remove
    assert corpus.duplicates == 0


def test_delete_citation_after_a_citation_in_the_same_file_wins(tmp_path: Path) -> None:
    path = write(tmp_path / "u.xml", pubmed_set("1", "2", delete=("2",)))
    corpus = load_sources([path])
    assert [p.pmid for p in corpus.papers] == ["1"]
    assert corpus.deleted == {"2": path} and corpus.deleted_here == {"2"}


def test_jsonl_that_is_not_utf8_names_the_file_line_and_byte(tmp_path: Path) -> None:
    """A Latin-1 file ("é" as byte 0xe9) on line 3: the error says where, and what to do,
    instead of the codec's bare "can't decode byte 0xe9 in position 32"."""
    lines = [json.dumps({"pmid": str(n), "abstract": "Invented text."}) for n in (1, 2)]
    lines.append('{"pmid": "3", "abstract": "Caf\u00e9 invented."}')
    # Enough lines before it that a block-decoding reader would report the wrong place.
    path = tmp_path / "latin1.jsonl"
    path.write_bytes(("\n".join(lines) + "\n").encode("latin-1"))
    with pytest.raises(InputError) as error:
        list(read_jsonl(path))
    assert error.value.message == f"{path}:3: not UTF-8 text (byte 0xe9)."
    assert "UTF-8" in (error.value.hint or "")
