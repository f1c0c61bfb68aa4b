"""PubMed/MEDLINE XML → :class:`carqa.index.corpus.models.Paper`, parsed with Biopython's
``Bio.Entrez``.

Handles both shapes NCBI ships: ``PubmedArticleSet`` (what efetch returns; records carry
``PubmedData`` with the ``ReferenceList``) and ``MedlineCitationSet`` (older MEDLINE baseline
files; references appear as ``CommentsCorrections RefType="Cites"``), from ``.xml`` or
``.xml.gz`` files or from bytes.

Two details of Bio.Entrez matter here:

* **Inline markup.** Bio.Entrez keeps child elements of text fields (``<i>``, ``<sub>``,
  ``<sup>``, ``<b>``, MathML) as literal tags inside the string. We parse with
  ``escape=True``, so text characters come back escaped (``<`` → ``&lt;``) while real tags stay
  tags; stripping ``<...>`` and unescaping then yields plain text that can never leak markup or
  lose a genuine "<" from the abstract. MathML is first rendered as text
  (:mod:`carqa.index.corpus.mathml`), so "³He" does not come out as "He 3".
* **DTDs.** Bio.Entrez validates against the DTD named in the DOCTYPE and downloads it when it
  does not ship it (e.g. the 2016 MEDLINE DTD). We never want a network call while reading a
  local file, so a DOCTYPE naming an unknown DTD is pointed at the closest version of the same
  DTD that Biopython ships, and a missing DOCTYPE is added for the record sets we know.
* **The XML declaration.** Bio.Entrez refuses a document that does not begin with
  ``<?xml ...?>`` ("XML declaration not found"), though the declaration is optional in XML.
  So a UTF-8 byte order mark and whitespace before the first tag are dropped, and a missing
  declaration is supplied (without an encoding: XML without a declaration is UTF-8).

Preparing the bytes (the declaration and the DOCTYPE, the second and third points) is
:mod:`carqa.index.corpus.pubmed_dtd`; rendering MathML is :mod:`carqa.index.corpus.mathml`.
This module parses with Bio.Entrez and maps both record shapes to papers, field by field.
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any
from xml.parsers.expat import ExpatError

from Bio import Entrez
from Bio.Entrez.Parser import (
    CorruptedXMLError,
    DataHandler,
    ListElement,
    NotXMLError,
    ValidationError,
)
from carqa.index.corpus.files import open_binary
from carqa.index.corpus.mathml import MATH
from carqa.index.corpus.mathml import render as render_mathml
from carqa.index.corpus.models import Deletion, Paper, Reference, Section, nlm_category
from carqa.index.corpus.pubmed_dtd import with_known_dtd

from carqa.errors import InputError

_TAG = re.compile(r"<[^<>]*>")
# Pretty-printed XML puts a newline + indentation before inline <sub>/<sup>; that whitespace is
# layout, not text ("β\n\t\t<sub>2</sub>-agonist" is "β2-agonist").
_LAYOUT_BEFORE_SCRIPT = re.compile(r"\s*\n\s*(?=<su[bp][\s>])")
_SPACE = re.compile(r"\s+")
_YEAR = re.compile(r"(1[89]\d\d|20\d\d)")
# Bio.Entrez's own exceptions for unusable input, plus expat's and the ValueError it raises
# for XML without a DTD; RuntimeError is how it reports an <ERROR> element in a response.
PARSE_ERRORS = (
    CorruptedXMLError,
    NotXMLError,
    ValidationError,
    ExpatError,
    ValueError,
    RuntimeError,
    KeyError,
    TypeError,
)


class MalformedXML(Exception):
    """Raised by the parsing helpers; callers turn it into an Input/SourceError with context."""


# -- public API ----------------------------------------------------------------------------


def parse_file(path: Path) -> Iterator[Paper]:
    """Every record in a PubMed/MEDLINE XML file, plain or gzipped (whatever its name says)."""
    for item in parse_file_items(path):
        if isinstance(item, Paper):
            yield item


def parse_file_items(path: Path) -> Iterator[Paper | Deletion]:
    """Like :func:`parse_file`, with the file's ``<DeleteCitation>`` blocks as
    :class:`Deletion` items, in document order (NLM puts them after the citations)."""
    path = Path(path)
    try:
        with open_binary(path) as raw:
            yield from _items_from_stream(raw, origin=str(path))
    except (OSError, EOFError) as error:  # unreadable, or e.g. a truncated .gz
        raise InputError(f"Could not read {path}: {error}") from None
    except MalformedXML as error:
        raise InputError(
            f"{path} is not well-formed PubMed/MEDLINE XML: {error}",
            hint="--from expects PubmedArticleSet (efetch) or MedlineCitationSet files.",
        ) from None


def parse_bytes(data: bytes, *, origin: str = "response") -> list[Paper]:
    """Every record in an XML document held in memory (an efetch response)."""
    from io import BytesIO

    items = _items_from_stream(BytesIO(data), origin=origin)
    return [item for item in items if isinstance(item, Paper)]


def read_entrez(data: bytes) -> Any:
    """``Entrez.read`` on bytes, with the DTD fix-up; raises :class:`MalformedXML`."""
    from io import BytesIO

    stream = with_known_dtd(BytesIO(data))
    try:
        return Entrez.read(stream, validate=False, escape=True)
    except PARSE_ERRORS as error:
        raise MalformedXML(_describe(error)) from None


def clean_text(value: Any) -> str:
    """Plain text from a Bio.Entrez string parsed with ``escape=True``: MathML rendered as
    text (:mod:`carqa.index.corpus.mathml`: "³He", "CO₂", "a/b"), other tags removed, entities
    decoded,
    whitespace collapsed."""
    text = str(value)
    if "math" in text:
        text = MATH.sub(_math_as_text, text)
    text = _LAYOUT_BEFORE_SCRIPT.sub("", text)
    text = _TAG.sub("", text)
    text = html.unescape(text)
    return _SPACE.sub(" ", text).strip()


def _math_as_text(match: re.Match[str]) -> str:
    """A MathML fragment as (re-escaped) text; unchanged when it cannot be rendered, so its
    tags are stripped like any others and its text content stays."""
    rendered = render_mathml(match.group(0))
    return match.group(0) if rendered is None else html.escape(rendered, quote=False)


def paper_from_record(record: Any) -> Paper | None:
    """A Paper from one Bio.Entrez record (PubmedArticle, MedlineCitation or
    PubmedBookArticle); None for anything else (e.g. a DeleteCitation block, see
    :func:`deletion_from_record`)."""
    if not hasattr(record, "get"):
        return None
    if "MedlineCitation" in record:
        return _paper_from_citation(record["MedlineCitation"], record.get("PubmedData"))
    if "PMID" in record and "Article" in record:
        return _paper_from_citation(record, None)
    if "BookDocument" in record:
        return _paper_from_book(record["BookDocument"], record.get("PubmedBookData"))
    return None


def deletion_from_record(record: Any) -> Deletion | None:
    """The PMIDs of a ``<DeleteCitation>`` block (Bio.Entrez gives it as a list of PMID
    strings tagged ``DeleteCitation``); None for anything else."""
    if getattr(record, "tag", None) != "DeleteCitation":
        return None
    pmids = (clean_text(pmid) for pmid in record)
    return Deletion(tuple(dict.fromkeys(pmid for pmid in pmids if pmid)))


# -- streams ------------------------------------------------------------------------------


_RECORD_SETS = frozenset({"MedlineCitationSet", "PubmedArticleSet"})


class _RecordSetHandler(DataHandler):
    """Bio.Entrez's parser, streaming every record set record by record.

    Several NLM DTDs declare the set as ``(MedlineCitation*, DeleteCitation?)`` or
    ``((PubmedArticle | PubmedBookArticle)+, DeleteCitation?)``, which Bio.Entrez maps to a
    dictionary, so ``Entrez.parse`` refuses it and ``Entrez.read`` would hold a whole baseline
    file (~30,000 records) in memory. Declaring the set a list lets ``parse`` yield one record
    at a time (a trailing DeleteCitation comes out as one more item).
    """

    def elementDecl(self, name: str, model: Any) -> None:
        super().elementDecl(name, model)
        if name in _RECORD_SETS:
            self.constructors[name] = (ListElement, (None,))


def _items_from_stream(raw: IO[bytes], *, origin: str) -> Iterator[Paper | Deletion]:
    stream = with_known_dtd(raw)
    handler = _RecordSetHandler(validate=False, escape=True, ignore_errors=False)
    try:
        for record in handler.parse(stream):
            item = paper_from_record(record) or deletion_from_record(record)
            if item is not None:
                yield item
    except PARSE_ERRORS as error:
        raise MalformedXML(_describe(error)) from None


def _describe(error: BaseException) -> str:
    text = str(error).strip() or type(error).__name__
    if isinstance(error, ValueError) and "Document Type Definition" in text:
        return "no DOCTYPE and not a PubmedArticleSet/MedlineCitationSet document"
    return text.splitlines()[0][:300]


# -- record → Paper ------------------------------------------------------------------------


def _paper_from_citation(citation: Any, pubmed_data: Any | None) -> Paper:
    article = citation.get("Article", {})
    journal = article.get("Journal", {})
    return Paper(
        pmid=clean_text(citation["PMID"]),
        title=_title(article),
        journal=_opt(journal.get("Title")) or _opt(journal.get("ISOAbbreviation")),
        year=_year(article, citation),
        authors=_authors(article.get("AuthorList", [])),
        doi=_doi(article, pubmed_data),
        mesh=[
            clean_text(heading["DescriptorName"])
            for heading in citation.get("MeshHeadingList", [])
            if "DescriptorName" in heading
        ],
        publication_types=[clean_text(t) for t in article.get("PublicationTypeList", [])],
        sections=_sections(article.get("Abstract", {})),
        references=_references(citation, pubmed_data),
    )


def _paper_from_book(book: Any, book_data: Any | None = None) -> Paper:
    """A PubmedBookArticle (e.g. a Bookshelf review chapter). Its references sit in
    ``BookDocument/ReferenceList``, its DOI (when it has one) in an ``ArticleIdList``."""
    title = _opt(book.get("ArticleTitle")) or _opt(book.get("Book", {}).get("BookTitle"))
    year = None
    pub_date = book.get("Book", {}).get("PubDate", {})
    if pub_date:
        year = _year_from_date(pub_date)
    return Paper(
        pmid=clean_text(book["PMID"]),
        title=title,
        year=year,
        authors=_authors(_first(book.get("AuthorList", []))),
        doi=_id_of_type("doi", book.get("ArticleIdList", []))
        or _id_of_type("doi", (book_data or {}).get("ArticleIdList", [])),
        sections=_sections(book.get("Abstract", {})),
        publication_types=[clean_text(t) for t in book.get("PublicationType", [])],
        references=[
            reference
            for reference_list in book.get("ReferenceList", [])
            for reference in _reference_list(reference_list)
        ],
    )


def _id_of_type(id_type: str, article_ids: Any) -> str | None:
    for article_id in article_ids:
        if getattr(article_id, "attributes", {}).get("IdType") == id_type:
            return clean_text(article_id) or None
    return None


def _title(article: Any) -> str | None:
    return _opt(article.get("ArticleTitle")) or _opt(article.get("VernacularTitle"))


def _sections(abstract: Any) -> list[Section]:
    sections = []
    for part in abstract.get("AbstractText", []) if abstract else []:
        text = clean_text(part)
        if not text:
            continue
        attributes = getattr(part, "attributes", {}) or {}
        label = _opt(attributes.get("Label"))
        category = _opt(attributes.get("NlmCategory"))
        if category == "UNASSIGNED":
            category = None
        elif category is None:
            category = nlm_category(label)
        sections.append(Section(text=text, label=label, category=category))
    return sections


def _authors(author_list: Any) -> list[str]:
    authors = []
    for author in author_list or []:
        if not hasattr(author, "get"):
            continue
        if author.get("CollectiveName"):
            authors.append(clean_text(author["CollectiveName"]))
            continue
        last = _opt(author.get("LastName"))
        initials = _opt(author.get("Initials")) or _opt(author.get("ForeName"))
        if last:
            authors.append(f"{last} {initials}" if initials else last)
    return authors


def _year(article: Any, citation: Any) -> int | None:
    pub_date = article.get("Journal", {}).get("JournalIssue", {}).get("PubDate", {})
    year = _year_from_date(pub_date)
    if year is None:
        for date in article.get("ArticleDate", []):
            year = _year_from_date(date)
            if year is not None:
                break
    if year is None:
        for key in ("DateCompleted", "DateCreated", "DateRevised"):
            year = _year_from_date(citation.get(key, {}))
            if year is not None:
                break
    return year


def _year_from_date(date: Any) -> int | None:
    """``<Year>`` when present, else the first year in ``<MedlineDate>`` ("2008 Jul-Aug")."""
    if not date:
        return None
    for key in ("Year", "MedlineDate"):
        if date.get(key):
            match = _YEAR.search(str(date[key]))
            if match:
                return int(match.group(1))
    return None


def _doi(article: Any, pubmed_data: Any | None) -> str | None:
    """The ELocationID DOI, unless NLM marked it invalid (``ValidYN="N"``: a DOI the publisher
    got wrong); else the PubmedData ArticleId DOI."""
    for location in article.get("ELocationID", []):
        attributes = getattr(location, "attributes", {})
        if attributes.get("EIdType") == "doi" and attributes.get("ValidYN", "Y") != "N":
            return clean_text(location) or None
    if pubmed_data:
        for article_id in pubmed_data.get("ArticleIdList", []):
            if getattr(article_id, "attributes", {}).get("IdType") == "doi":
                return clean_text(article_id)
    return None


def _references(citation: Any, pubmed_data: Any | None) -> list[Reference]:
    """PubmedData/ReferenceList when present, else MEDLINE's CommentsCorrections "Cites"."""
    references: list[Reference] = []
    if pubmed_data:
        for reference_list in pubmed_data.get("ReferenceList", []):
            references.extend(_reference_list(reference_list))
    if references:
        return references
    for comment in citation.get("CommentsCorrectionsList", []):
        if getattr(comment, "attributes", {}).get("RefType") != "Cites":
            continue
        pmid = comment.get("PMID")
        references.append(
            Reference(citation=_opt(comment.get("RefSource")), pmid=_opt(pmid) if pmid else None)
        )
    return references


def _reference_list(reference_list: Any) -> list[Reference]:
    references = []
    for reference in reference_list.get("Reference", []):
        pmid = doi = None
        for article_id in reference.get("ArticleIdList", []):
            id_type = getattr(article_id, "attributes", {}).get("IdType")
            if id_type == "pubmed" and pmid is None:
                pmid = clean_text(article_id) or None
            elif id_type == "doi" and doi is None:
                doi = clean_text(article_id) or None
        references.append(Reference(citation=_opt(reference.get("Citation")), pmid=pmid, doi=doi))
    for nested in reference_list.get("ReferenceList", []):
        references.extend(_reference_list(nested))
    return references


def _first(value: Any) -> Any:
    """Book records wrap AuthorList in a list (one per role); take the first."""
    if isinstance(value, list) and value and isinstance(value[0], list):
        return value[0]
    return value


def _opt(value: Any) -> str | None:
    if value is None:
        return None
    text = clean_text(value)
    return text or None
