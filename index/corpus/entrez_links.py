"""What elink and ECitMatch answer: links between papers, and citations matched to PMIDs.

:class:`carqa.index.corpus.entrez.EntrezClient` sends the requests; this module holds the
values they are made of and read into — the link names PubMed uses, a :class:`Link` with its
score, a :class:`CitationQuery` — and reads the answers: Bio.Entrez-parsed eLinkResult link
sets, and ECitMatch's plain-text lines (which Bio.Entrez does not parse).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from carqa.index.corpus.entrez_transport import seconds
from carqa.index.corpus.pubmed_xml import MalformedXML


@dataclass(frozen=True)
class CitationQuery:
    """One ECitMatch lookup: the fields NCBI matches on, and our key to find the answer."""

    key: str
    journal: str = ""
    year: str = ""
    volume: str = ""
    first_page: str = ""
    author: str = ""

    def bdata(self) -> str:
        fields = (self.journal, self.year, self.volume, self.first_page, self.author, self.key)
        return "|".join(_bdata_field(value) for value in fields) + "|"


def _bdata_field(value: str) -> str:
    # "|" and line breaks delimit ECitMatch fields and citations.
    return " ".join(value.replace("|", " ").split())


REFS = "pubmed_pubmed_refs"
CITED_IN = "pubmed_pubmed_citedin"
SIMILAR = "pubmed_pubmed"


@dataclass(frozen=True)
class Link:
    """One elink link: the linked PMID and, for similar articles asked with
    ``cmd=neighbor_score``, PubMed's relatedness score."""

    pmid: str
    score: float | None = None


def link_sets(record: Any, linkname: str) -> dict[str, list[Link]]:
    """``{source pmid: [links]}`` of the ``linkname`` link sets in a Bio.Entrez-parsed
    eLinkResult (other link sets in the same answer are ignored); duplicates dropped."""
    found: dict[str, list[Link]] = {}
    for link_set in record:
        ids = [str(pmid) for pmid in link_set.get("IdList", [])]
        links: list[Link] = []
        for link_set_db in link_set.get("LinkSetDb", []):
            if link_set_db.get("LinkName") == linkname:
                links.extend(
                    Link(str(link["Id"]), seconds(link.get("Score")))
                    for link in link_set_db.get("Link", [])
                )
        for pmid in ids:
            found.setdefault(pmid, []).extend(links)
    return {pmid: _first_of_each(links) for pmid, links in found.items()}


def _first_of_each(links: list[Link]) -> list[Link]:
    seen: dict[str, Link] = {}
    for link in links:
        seen.setdefault(link.pmid, link)
    return list(seen.values())


def refs_link_sets(record: Any) -> dict[str, list[str]]:
    """``{source pmid: [referenced pmids]}`` from a Bio.Entrez-parsed eLinkResult."""
    return {pmid: [link.pmid for link in links] for pmid, links in link_sets(record, REFS).items()}


def parse_ecitmatch(data: bytes) -> dict[str, str]:
    """``{key: pmid}`` for the citations ECitMatch matched (see :func:`ecitmatch_answers`)."""
    return {key: answer for key, answer in ecitmatch_answers(data).items() if answer.isdigit()}


def ecitmatch_answers(data: bytes) -> dict[str, str]:
    """ECitMatch's plain-text answer, ``{key: answer}`` for every citation line: one
    ``journal|year|volume|page|author|key|pmid`` line per citation; the last field is a PMID,
    or ``NOT_FOUND``/``AMBIGUOUS ...`` when unmatched."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise MalformedXML(f"ECitMatch answer is not UTF-8 ({error})") from None
    if text.lstrip().startswith("<"):
        raise MalformedXML("ECitMatch answered with markup instead of citation lines")
    matches: dict[str, str] = {}
    for line in text.splitlines():
        fields = line.strip().split("|")
        if len(fields) < 7:
            continue
        key, answer = fields[5].strip(), fields[6].strip()
        if key:
            matches[key] = answer
    return matches
