"""Invented MEDLINE/PubMed XML for tests: citations and ``<DeleteCitation>`` blocks."""

from __future__ import annotations

from pathlib import Path

_MEDLINE_DOCTYPE = (
    '<!DOCTYPE MedlineCitationSet PUBLIC "-//NLM//DTD Medline Citation, 1st January, 2016//EN"'
    ' "https://www.nlm.nih.gov/databases/dtd/nlmmedlinecitationset_160101.dtd">'
)
_PUBMED_DOCTYPE = (
    '<!DOCTYPE PubmedArticleSet PUBLIC "-//NLM//DTD PubMedArticle, 1st January 2025//EN"'
    ' "https://dtd.nlm.nih.gov/ncbi/pubmed/out/pubmed_250101.dtd">'
)


def citation(pmid: str, abstract: str = "An invented abstract.") -> str:
    return (
        f'<MedlineCitation Status="MEDLINE" Owner="NLM"><PMID Version="1">{pmid}</PMID>'
        '<Article PubModel="Print"><Journal><JournalIssue><PubDate><Year>2016</Year></PubDate>'
        "</JournalIssue><Title>Invented journal</Title></Journal>"
        f"<ArticleTitle>Invented paper {pmid}.</ArticleTitle>"
        f"<Abstract><AbstractText>{abstract}</AbstractText></Abstract></Article>"
        "</MedlineCitation>"
    )


def delete_citation(*pmids: str) -> str:
    inner = "".join(f'<PMID Version="1">{pmid}</PMID>' for pmid in pmids)
    return f"<DeleteCitation>{inner}</DeleteCitation>"


def medline_set(*pmids: str, delete: tuple[str, ...] = ()) -> bytes:
    """A MedlineCitationSet (a MEDLINE baseline/update file) with a trailing deletion block."""
    body = "".join(citation(pmid) for pmid in pmids)
    if delete:
        body += delete_citation(*delete)
    return (
        f'<?xml version="1.0" encoding="UTF-8"?>\n{_MEDLINE_DOCTYPE}\n'
        f"<MedlineCitationSet>{body}</MedlineCitationSet>\n"
    ).encode()


def pubmed_set(*pmids: str, delete: tuple[str, ...] = (), abstract: str | None = None) -> bytes:
    """A PubmedArticleSet (today's baseline/update shape) with a trailing deletion block."""
    body = "".join(
        f"<PubmedArticle>{citation(pmid, *([abstract] if abstract else []))}</PubmedArticle>"
        for pmid in pmids
    )
    if delete:
        body += delete_citation(*delete)
    return (
        f'<?xml version="1.0" encoding="UTF-8"?>\n{_PUBMED_DOCTYPE}\n'
        f"<PubmedArticleSet>{body}</PubmedArticleSet>\n"
    ).encode()


def write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path
