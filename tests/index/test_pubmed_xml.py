from __future__ import annotations

import gzip
import re
from pathlib import Path

import pytest
from carqa.index.corpus.models import Deletion, Reference, Section
from carqa.index.corpus.pubmed_xml import clean_text, parse_bytes, parse_file, parse_file_items
from carqa.index.corpus.sources import load_sources

from carqa.errors import InputError
from tests.index.medline_xml import medline_set, pubmed_set

FIXTURES = Path(__file__).parent / "fixtures" / "entrez"
MARKUP = FIXTURES / "efetch_markup.xml"
# Inline tags NLM allows in text fields, and the entities they would leak as.
LEAK = re.compile(r"</?(i|b|u|sub|sup|mml:\w+)[\s>/]|&(lt|gt|amp|#\d+);")


def test_invented_record_fields() -> None:
    first, _ = parse_file(MARKUP)
    assert first.pmid == "90100001"
    assert first.title == "Persistence of invented CD19 CAR T cells & IL-2+ subsets."
    assert first.journal == "Invented journal of cell therapy"
    assert first.year == 2017  # from <MedlineDate>2017 Jul-Aug</MedlineDate>
    assert first.doi == "10.9999/invented.0001"
    assert first.authors == ["Doe J", "Invented CAR T Consortium"]
    assert first.mesh == ["T-Lymphocytes"]
    assert first.publication_types == ["Journal Article"]
    assert first.sections == [
        Section(
            "Invented T cells with a CD3ζ1 domain were studied in vitro.",
            "BACKGROUND",
            "BACKGROUND",
        ),
        Section(
            "Cells with a CD4/CD8 ratio <1 persisted for 90 days (P < 0.05).", "FINDINGS", "RESULTS"
        ),
        # no NlmCategory attribute: the label names a category exactly
        Section("Invented persistence depended on 4-1BB.", "CONCLUSIONS", "CONCLUSIONS"),
    ]


def test_title_only_record_and_reference_list() -> None:
    second = list(parse_file(MARKUP))[1]
    assert not second.has_abstract and second.sections == []
    assert second.doi == "10.9999/invented.0002"  # from PubmedData/ArticleIdList
    assert second.references == [
        Reference("Doe J. Invented persistence. Invented J Cell Ther. 2017;12:101-9.", "90100001"),
        Reference("Roe R, Poe P. An invented trial without a PMID. Invented Med. 2016;3(2):45-50."),
    ]


def test_gzip_file_and_directory(tmp_path: Path) -> None:
    with gzip.open(tmp_path / "set.xml.gz", "wb") as handle:
        handle.write(MARKUP.read_bytes())
    assert [p.pmid for p in parse_file(tmp_path / "set.xml.gz")] == ["90100001", "90100002"]
    assert len(load_sources([tmp_path]).papers) == 2


def test_unknown_dtd_version_needs_no_network() -> None:
    data = MARKUP.read_bytes().replace(b"pubmed_250101.dtd", b"pubmed_990101.dtd")
    assert [p.pmid for p in parse_bytes(data)] == ["90100001", "90100002"]


def test_missing_doctype_is_supplied() -> None:
    data = re.sub(rb"<!DOCTYPE[^>]*>", b"", MARKUP.read_bytes())
    assert len(parse_bytes(data)) == 2


_DECLARATION = re.compile(rb"<\?xml[^>]*\?>\s*")


@pytest.mark.parametrize(
    "variant",
    [
        pytest.param(lambda data: _DECLARATION.sub(b"", data), id="no-declaration"),
        pytest.param(
            lambda data: re.sub(rb"<!DOCTYPE[^>]*>\s*", b"", _DECLARATION.sub(b"", data)),
            id="no-declaration-no-doctype",
        ),
        pytest.param(lambda data: b"\n  \n" + data, id="leading-whitespace"),
        pytest.param(lambda data: b"\xef\xbb\xbf" + data, id="bom"),
        pytest.param(
            lambda data: b"\xef\xbb\xbf\n" + _DECLARATION.sub(b"", data), id="bom-no-decl"
        ),
    ],
)
def test_well_formed_xml_without_a_leading_declaration_parses(variant, tmp_path: Path) -> None:
    """The XML declaration is optional; Bio.Entrez alone would refuse these files."""
    path = tmp_path / "set.xml"
    path.write_bytes(variant(MARKUP.read_bytes()))
    assert [p.pmid for p in parse_file(path)] == ["90100001", "90100002"]
    assert next(iter(parse_file(path))).title == (
        "Persistence of invented CD19 CAR T cells & IL-2+ subsets."
    )


def test_malformed_xml_is_an_input_error(tmp_path: Path) -> None:
    broken = tmp_path / "broken.xml"
    broken.write_bytes(MARKUP.read_bytes()[:1500])
    with pytest.raises(InputError, match=r"broken.xml is not well-formed"):
        list(parse_file(broken))
    garbage = tmp_path / "garbage.xml"
    garbage.write_text("this is not xml <<<")
    with pytest.raises(InputError, match="not well-formed"):
        list(parse_file(garbage))


def test_truncated_gzip_is_an_input_error(tmp_path: Path) -> None:
    path = tmp_path / "cut.xml.gz"
    path.write_bytes(gzip.compress(MARKUP.read_bytes())[:200])
    with pytest.raises(InputError, match=r"cut\.xml\.gz"):
        list(parse_file(path))


def test_clean_text_keeps_real_angle_brackets() -> None:
    assert clean_text("a &lt;b&gt; <i>c</i>\n  d") == "a <b> c d"


def test_medline_2016_excerpt(shared_data: Path) -> None:
    papers = list(parse_file(shared_data / "medline" / "medline16n0902.xml.gz"))
    assert len(papers) == 604
    assert sum(p.has_abstract for p in papers) == 526
    labels = {s.label for p in papers for s in p.sections}
    assert {"BACKGROUND", "METHODS", "RESULTS", "CONCLUSIONS"} <= labels
    first = papers[0]
    assert [(s.label, s.category) for s in first.sections] == [
        ("PURPOSE", "OBJECTIVE"),
        ("METHODS", "METHODS"),
        ("RESULTS", "RESULTS"),
        ("CONCLUSIONS", "CONCLUSIONS"),
    ]
    texts = [p.title or "" for p in papers] + [s.text for p in papers for s in p.sections]
    assert not [t for t in texts if LEAK.search(t)]
    # Escaped text in the XML ("&lt;r.m.s. deviation&gt;") is text, not markup: it survives.
    assert any("<r.m.s. deviation>" in t for t in texts)


def test_efetch_record_with_inline_markup(shared_data: Path) -> None:
    (paper,) = parse_file(shared_data / "medline" / "pubmed-29768149.xml")
    assert paper.pmid == "29768149"
    assert [s.label for s in paper.sections] == ["BACKGROUND", "METHODS", "RESULTS", "CONCLUSIONS"]
    assert "fast-acting β2-agonist" in paper.sections[0].text
    assert not any(LEAK.search(s.text) for s in paper.sections)


def test_efetch_record_without_declaration_and_doctype(shared_data: Path, tmp_path: Path) -> None:
    lines = (shared_data / "medline" / "pubmed-29768149.xml").read_bytes().splitlines(True)
    stripped = tmp_path / "stripped.xml"
    stripped.write_bytes(b"".join(x for x in lines if not x.startswith((b"<?xml", b"<!DOCTYPE"))))
    (paper,) = parse_file(stripped)
    assert paper.pmid == "29768149"
    assert len(paper.sections) == 4


def test_current_medline_record(shared_data: Path) -> None:
    papers = list(parse_file(shared_data / "medline" / "test_current_medline.xml.gz"))
    assert papers and all(p.pmid.isdigit() for p in papers)


def test_compression_is_read_from_the_content_not_the_name(tmp_path: Path) -> None:
    # A browser saves "x.xml.gz" already decompressed; a gzipped download may lack ".gz".
    plain_named_gz = tmp_path / "saved.xml.gz"
    plain_named_gz.write_bytes(MARKUP.read_bytes())
    gzip_named_xml = tmp_path / "download.xml"
    gzip_named_xml.write_bytes(gzip.compress(MARKUP.read_bytes()))
    expected = list(parse_file(MARKUP))
    assert expected
    assert list(parse_file(plain_named_gz)) == expected
    assert list(parse_file(gzip_named_xml)) == expected


def test_doi_marked_invalid_by_nlm_gives_way_to_the_article_id_doi() -> None:
    data = MARKUP.read_bytes().replace(
        b'<ELocationID EIdType="doi" ValidYN="Y">10.9999/invented.0001</ELocationID>',
        b'<ELocationID EIdType="doi" ValidYN="N">10.9999/invented.000l</ELocationID>',
    )
    data = data.replace(
        b'<ArticleIdList><ArticleId IdType="pubmed">90100001</ArticleId></ArticleIdList>',
        b'<ArticleIdList><ArticleId IdType="pubmed">90100001</ArticleId>'
        b'<ArticleId IdType="doi">10.9999/invented.0001</ArticleId></ArticleIdList>',
        1,
    )
    assert b'ValidYN="N"' in data and b'IdType="doi">10.9999/invented.0001' in data
    assert parse_bytes(data)[0].doi == "10.9999/invented.0001"
    only_invalid = data.replace(b'<ArticleId IdType="doi">10.9999/invented.0001</ArticleId>', b"")
    assert parse_bytes(only_invalid)[0].doi is None


# -- <DeleteCitation> (MEDLINE update files) -----------------------------------------------


@pytest.mark.parametrize("make_set", [medline_set, pubmed_set], ids=["medline", "pubmed"])
def test_delete_citation_blocks_come_as_deletions_in_document_order(
    make_set, tmp_path: Path
) -> None:
    path = tmp_path / "update.xml"
    path.write_bytes(make_set("90300001", "90300002", delete=("90300003", "90300004")))
    items = list(parse_file_items(path))
    assert [getattr(item, "pmid", None) for item in items[:2]] == ["90300001", "90300002"]
    assert items[2:] == [Deletion(("90300003", "90300004"))]
    # parse_file (and the efetch path) still yields papers only
    assert [p.pmid for p in parse_file(path)] == ["90300001", "90300002"]
    assert [p.pmid for p in parse_bytes(path.read_bytes())] == ["90300001", "90300002"]


def test_medline_2016_excerpt_deletes_one_citation(shared_data: Path) -> None:
    items = list(parse_file_items(shared_data / "medline" / "medline16n0902.xml.gz"))
    assert items[-1] == Deletion(("26432306",))
    assert sum(isinstance(item, Deletion) for item in items) == 1


# -- MathML ------------------------------------------------------------------------------------

_MML = 'xmlns:mml="http://www.w3.org/1998/Math/MathML"'
# Pretty-printed as PubMed ships it: the layout whitespace between elements is not text.
_ISOTOPES = f"""inhaled <mml:math {_MML}>
      <mml:mrow>
        <mml:mmultiscripts>
          <mml:mrow><mml:mi>He</mml:mi></mml:mrow>
          <mml:mprescripts/>
          <mml:none/>
          <mml:mrow><mml:mn>3</mml:mn></mml:mrow>
        </mml:mmultiscripts>
        <mml:mo>/</mml:mo>
        <mml:mmultiscripts>
          <mml:mi>Xe</mml:mi><mml:mprescripts/><mml:none/><mml:mn>129</mml:mn>
        </mml:mmultiscripts>
        <mml:mtext>&#8201;</mml:mtext>
        <mml:mi>MRI</mml:mi>
      </mml:mrow>
    </mml:math> ventilation"""


def _math(inner: str) -> str:
    return f"<mml:math {_MML}>{inner}</mml:math>"


def _abstract_text(abstract: str) -> str:
    (paper,) = parse_bytes(pubmed_set("90400001", abstract=abstract))
    (section,) = paper.sections
    assert not LEAK.search(section.text), section.text
    return section.text


@pytest.mark.parametrize(
    ("abstract", "expected"),
    [
        pytest.param(_ISOTOPES, "inhaled ³He/¹²⁹Xe MRI ventilation", id="prescripts"),
        pytest.param(
            "an invented "
            + _math("<mml:msup><mml:mi>x</mml:mi><mml:mn>2</mml:mn></mml:msup>")
            + " test",
            "an invented x² test",
            id="msup",
        ),
        pytest.param(
            "invented "
            + _math("<mml:msub><mml:mi>CO</mml:mi><mml:mn>2</mml:mn></mml:msub>")
            + " and "
            + _math(
                "<mml:msubsup><mml:mi>Ca</mml:mi><mml:mi/><mml:mrow><mml:mn>2</mml:mn>"
                "<mml:mo>+</mml:mo></mml:mrow></mml:msubsup>"
            ),
            "invented CO₂ and Ca²⁺",
            id="msub-msubsup",
        ),
        pytest.param(
            _math("<mml:mfrac><mml:mi>a</mml:mi><mml:mi>b</mml:mi></mml:mfrac>")
            + ", "
            + _math(
                "<mml:mfrac><mml:mrow><mml:mi>a</mml:mi><mml:mo>+</mml:mo><mml:mi>b</mml:mi>"
                "</mml:mrow><mml:mn>2</mml:mn></mml:mfrac>"
            ),
            "a/b, (a+b)/2",
            id="mfrac",
        ),
        pytest.param(
            _math(
                "<mml:msup><mml:mi>e</mml:mi><mml:mrow><mml:mo>−</mml:mo><mml:mi>k</mml:mi>"
                "<mml:mi>t</mml:mi></mml:mrow></mml:msup>"
            )
            + " and "
            + _math("<mml:msub><mml:mi>C</mml:mi><mml:mi>max</mml:mi></mml:msub>"),
            "e^(−kt) and Cmax",
            id="scripts-without-unicode-forms",
        ),
        pytest.param(
            "P "
            + _math("<mml:mo>&lt;</mml:mo><mml:mn>0.05</mml:mn>")
            + " with "
            + _math("<mml:msqrt><mml:mi>n</mml:mi></mml:msqrt>")
            + " and "
            + _math("<mml:mover><mml:mi>x</mml:mi><mml:mo>¯</mml:mo></mml:mover>"),
            "P <0.05 with √n and x\u0304",
            id="escaped-operator-sqrt-accent",
        ),
    ],
)
def test_mathml_is_rendered_as_readable_text(abstract: str, expected: str) -> None:
    assert _abstract_text(abstract) == expected


def test_mathml_in_a_title_too() -> None:
    data = pubmed_set("90400002").replace(
        b"Invented paper 90400002.",
        _math(
            "<mml:msub><mml:mi>H</mml:mi><mml:mn>2</mml:mn></mml:msub><mml:mi>O</mml:mi>"
        ).encode()
        + b" in invented cells.",
    )
    assert parse_bytes(data)[0].title == "H₂O in invented cells."


def test_mathml_that_cannot_be_rendered_degrades_to_its_text() -> None:
    # Not well-formed (as a Bio.Entrez string with an unescaped "&" in an attribute would be):
    # the tags are stripped as before and the text content stays.
    broken = '<math alttext="a&b">\n <mi>He</mi>\n <mn>3</mn>\n</math> gas'
    assert clean_text(broken) == "He 3 gas"
    # elements the renderer does not know give their children's text
    assert clean_text("<math><mstyle><mi>k</mi><mn>2</mn></mstyle></math>") == "k2"


def test_real_mathml_in_an_efetch_record(shared_data: Path) -> None:
    (paper,) = parse_bytes((shared_data / "entrez" / "pubmed7.xml").read_bytes())
    text = paper.sections[0].text
    assert "inhaled ³He/¹²⁹Xe MRI ventilation" in text
    assert "ultrashort echo-time ¹H MRI proton density" in text
    assert "He 3" not in text and not LEAK.search(text)
