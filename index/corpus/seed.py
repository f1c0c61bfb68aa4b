"""The seed flow: a review's DOI (or PMID) → the review and every paper it cites, from PubMed.

Steps (each a few E-utilities calls through :class:`carqa.index.corpus.entrez.EntrezClient`):

1. resolve the seed: ``--pmid`` as given, else esearch ``"<doi>"[doi]``;
2. efetch the seed record and collect cited PMIDs from three sources, as a union:
   its ``ReferenceList`` (``ArticleIdList`` per reference, present only when the publisher
   deposited references), elink ``pubmed_pubmed_refs``, and — for references with citation
   text but no PMID — a DOI lookup when the reference has a DOI, then ECitMatch on
   journal/year/volume/first page/first author parsed from the citation text;
3. efetch every cited record in batches (``known`` PMIDs, already stored, are skipped).

Run with ``fresh``, steps 1-2 ask PubMed again instead of the response cache (``--update``:
the seed's record may have gained a reference list, elink new links). Expanding the corpus
beyond the references lives in :mod:`carqa.index.corpus.expand`.

References that stay unresolved are kept (with their citation text) on the seed paper and in
the :class:`SeedReport`, never dropped silently.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from contextlib import nullcontext
from dataclasses import dataclass, field, replace
from urllib.parse import unquote

from carqa.index.corpus.entrez import EntrezClient
from carqa.index.corpus.entrez_links import CitationQuery
from carqa.index.corpus.models import Paper, Reference
from carqa.index.corpus.sources import PMID

from carqa.errors import InputError
from carqa.progress import ProgressCallback


@dataclass
class SeedReport:
    """How the seed's references were resolved, and what was fetched."""

    seed_pmid: str
    seed_title: str | None = None
    seed_doi: str | None = None
    references_listed: int = 0  # entries in the record's ReferenceList
    from_reference_list: int = 0  # ... that carried a PMID
    from_doi: int = 0  # ... resolved by an esearch on their DOI
    from_ecitmatch: int = 0  # ... resolved by ECitMatch from the citation text
    from_elink_only: int = 0  # cited PMIDs only elink knew about
    unresolved: list[Reference] = field(default_factory=list)
    cited_pmids: int = 0
    fetched: int = 0
    already_stored: int = 0  # cited PMIDs not fetched: the corpus holds them (--update)
    missing_records: list[str] = field(default_factory=list)  # cited PMIDs efetch lacked
    notes: list[str] = field(default_factory=list)

    @property
    def resolved(self) -> int:
        return self.references_listed - len(self.unresolved)

    @property
    def share_resolved(self) -> float | None:
        """Share of the listed references resolved to a PMID (None without a list)."""
        if not self.references_listed:
            return None
        return self.resolved / self.references_listed

    def as_dict(self) -> dict:
        return {
            "seed_pmid": self.seed_pmid,
            "seed_title": self.seed_title,
            "seed_doi": self.seed_doi,
            "references_listed": self.references_listed,
            "references_resolved": self.resolved,
            "share_resolved": self.share_resolved,
            "from_reference_list": self.from_reference_list,
            "from_doi": self.from_doi,
            "from_ecitmatch": self.from_ecitmatch,
            "from_elink_only": self.from_elink_only,
            "unresolved": [r.citation or r.doi or "" for r in self.unresolved],
            "cited_pmids": self.cited_pmids,
            "fetched": self.fetched,
            "already_stored": self.already_stored,
            "missing_records": list(self.missing_records),
            "notes": list(self.notes),
        }


@dataclass
class SeedCorpus:
    """The seed paper (references resolved), the cited papers, and the report."""

    seed: Paper
    cited: list[Paper]
    report: SeedReport

    @property
    def papers(self) -> list[Paper]:
        return [self.seed, *[p for p in self.cited if p.pmid != self.seed.pmid]]


def resolve_seed(client: EntrezClient, *, doi: str | None, pmid: str | None) -> str:
    """The seed's PMID: ``pmid`` when given (digits only), else the record with ``doi``."""
    if pmid:
        raw, pmid = pmid, normalise_pmid(pmid)
        if not PMID.fullmatch(pmid):
            hint = "A PMID is 1 to 10 digits (pubmed.ncbi.nlm.nih.gov/PMID/)."
            if pmid.upper().startswith("PMC"):
                hint = "That is a PubMed Central id; give the review's PubMed id (PMID) instead."
            raise InputError(f"{raw.strip()!r} is not a PubMed id.", hint=hint)
        return pmid
    if not doi or not doi.strip():
        raise InputError("No seed given.", hint="Pass --doi DOI or --pmid PMID.")
    raw, doi = doi, normalise_doi(doi)
    if not _DOI.fullmatch(doi):
        raise InputError(
            f"{raw.strip()!r} is not a DOI.",
            hint="A DOI looks like 10.1038/s41591-019-0564-6 (a doi.org link or a 'doi:' "
            "prefix is fine); or give the review's PubMed id with --pmid.",
        )
    found = client.search_doi(doi)
    if not found:
        raise InputError(
            f"No PubMed record has the DOI {doi}.",
            hint="Check the DOI, or give the review's PubMed id with --pmid.",
        )
    if len(found) > 1:
        # An erratum or retraction notice can be indexed under the article's DOI: when all
        # but one of the records are such notices, the one left is the paper. Otherwise
        # picking one would build a corpus around a paper the user may not have meant.
        records = {paper.pmid: paper for paper in client.fetch(found)}
        papers = [pmid for pmid in found if pmid in records and not is_notice(records[pmid])]
        if len(papers) == 1:
            return papers[0]
        listed = ", ".join(_describe_record(pmid, records.get(pmid)) for pmid in found)
        raise InputError(
            f"{len(found)} PubMed records have the DOI {doi}: PMIDs {listed}.",
            hint="Give the review's PubMed id with --pmid.",
        )
    return found[0]


NOTICE_TYPES = frozenset(
    {"Published Erratum", "Retraction Notice", "Retraction of Publication", "Expression of Concern"}
)
"""PubMed publication types of records that are notices about another paper, not papers."""


def is_notice(paper: Paper) -> bool:
    """Whether ``paper`` is an erratum, retraction or expression of concern (a notice)."""
    return not NOTICE_TYPES.isdisjoint(paper.publication_types)


def _describe_record(pmid: str, paper: Paper | None) -> str:
    notices = sorted(NOTICE_TYPES.intersection(paper.publication_types)) if paper else []
    return f"{pmid} ({notices[0]})" if notices else pmid


_DOI = re.compile(r"10\.\d{4,9}/\S+")
"""A DOI: directory indicator 10, a registrant code, "/", a suffix without whitespace."""
_DOI_PREFIX = re.compile(r"^(?:(?:https?://)?(?:www\.|dx\.)?doi\.org/|doi:?\s*)", re.IGNORECASE)


_PMID_PREFIX = re.compile(
    r"^(?:(?:https?://)?(?:www\.)?(?:pubmed\.ncbi\.nlm\.nih\.gov/|ncbi\.nlm\.nih\.gov/pubmed/)"
    r"|pmid:?\s*)",
    re.IGNORECASE,
)


def normalise_pmid(pmid: str) -> str:
    """The bare PMID in what a user pastes: ``PMID: 31501520`` (as PubMed pages show it),
    ``https://pubmed.ncbi.nlm.nih.gov/31501520/`` or the older ``ncbi.nlm.nih.gov/pubmed/``
    link → ``31501520``. Anything else is returned stripped, for the caller to refuse."""
    text = _PMID_PREFIX.sub("", pmid.strip().strip("<>\"'")).strip()
    text = text.split("?")[0].split("#")[0].rstrip("/").rstrip(".,;:") if text else text
    return text


def normalise_doi(doi: str) -> str:
    """The bare DOI in what a user pastes: ``https://doi.org/10.x/y`` (also percent-encoded,
    as browsers copy it), ``doi:10.x/y`` or ``DOI 10.x/y`` → ``10.x/y``. A DOI holds no
    whitespace, so text after it goes ("doi: 10.x/y. Epub 2019 Sep 9." as PubMed shows it),
    and so does trailing sentence punctuation."""
    doi = doi.strip().strip("<>\"'")
    if _DOI_PREFIX.match(doi) and "://" in doi:
        doi = unquote(doi)
    doi = _DOI_PREFIX.sub("", doi).strip()
    doi = doi.split()[0] if doi else doi
    return doi.rstrip(".,;:")


def fetch_seed_corpus(
    client: EntrezClient,
    *,
    doi: str | None = None,
    pmid: str | None = None,
    on_progress: ProgressCallback | None = None,
    known: Collection[str] = (),
    fresh: bool = False,
) -> SeedCorpus:
    """Run the whole seed flow (module docstring) and return papers plus report. The seed
    and its cited papers come back with their relation (``seed``, ``cited``) set."""
    progress = on_progress or (lambda stage, done, total: None)
    with client.fresh() if fresh else nullcontext():
        seed, report = _discover(client, doi=doi, pmid=pmid, progress=progress)
    seed_pmid = seed.pmid
    cited = list(dict.fromkeys(r.pmid for r in seed.references if r.pmid and r.pmid != seed_pmid))
    report.cited_pmids = len(cited)
    if not cited:
        report.notes.append("No cited PMIDs were found: the corpus is the seed alone.")
    stored = set(known)
    wanted = [p for p in cited if p not in stored]
    report.already_stored = len(cited) - len(wanted)

    total = len(wanted)
    done = 0
    progress("Fetching cited abstracts", 0, total)

    def on_batch(count: int) -> None:
        nonlocal done
        done += count
        progress("Fetching cited abstracts", done, total)

    asked = set(wanted)
    papers = [p for p in client.fetch(wanted, on_batch=on_batch) if p.pmid in asked]
    returned = {p.pmid for p in papers}
    report.missing_records = [p for p in wanted if p not in returned]
    report.fetched = len(papers)
    cited_papers = [replace(p, relation="cited") for p in papers]
    return SeedCorpus(seed=replace(seed, relation="seed"), cited=cited_papers, report=report)


def _discover(
    client: EntrezClient, *, doi: str | None, pmid: str | None, progress: ProgressCallback
) -> tuple[Paper, SeedReport]:
    """The seed's record with every reference resolved as far as PubMed allows."""
    progress("Resolving the seed", 0, None)
    seed_pmid = resolve_seed(client, doi=doi, pmid=pmid)
    fetched = client.fetch([seed_pmid])
    seed = next((p for p in fetched if p.pmid == seed_pmid), None)
    if seed is None:
        raise InputError(
            f"PubMed has no record for PMID {seed_pmid}.", hint="Check the --pmid/--doi given."
        )
    if is_notice(seed):
        # A notice cites nothing: the corpus would be the notice alone, with no word why.
        kind = sorted(NOTICE_TYPES.intersection(seed.publication_types))[0]
        raise InputError(
            f"PMID {seed_pmid} is a notice ({kind}: {seed.title or 'untitled'}), not the review.",
            hint="Give the review's own PubMed id with --pmid (the notice's PubMed page links "
            "to it).",
        )
    report = SeedReport(seed_pmid=seed_pmid, seed_title=seed.title, seed_doi=seed.doi)

    progress("Resolving references", 0, None)
    references = _resolve_references(client, seed.references, report)

    linked = client.cited_by([seed_pmid]).get(seed_pmid, [])
    known = {r.pmid for r in references if r.pmid}
    extra = [p for p in linked if p not in known and p != seed_pmid]
    report.from_elink_only = len(extra)
    references += [Reference(pmid=p) for p in extra]
    if not seed.references:
        report.notes.append(
            "The seed's PubMed record carries no reference list; cited PMIDs come from elink."
        )
    return replace(seed, references=references), report


def _resolve_references(
    client: EntrezClient, listed: list[Reference], report: SeedReport
) -> list[Reference]:
    """Give every listed reference a PMID where we can; count how each was found."""
    report.references_listed = len(listed)
    report.from_reference_list = sum(1 for r in listed if r.pmid)
    resolved = list(listed)

    for i, reference in enumerate(resolved):
        if reference.pmid is None and reference.doi:
            found = client.search_doi(reference.doi)
            if len(found) == 1:
                resolved[i] = replace(reference, pmid=found[0])
                report.from_doi += 1

    queries: list[CitationQuery] = []
    for i, reference in enumerate(resolved):
        if reference.pmid is None and reference.citation:
            query = citation_query(str(i), reference.citation)
            if query is not None:
                queries.append(query)
    for key, pmid in client.citation_match(queries).items():
        i = int(key)
        resolved[i] = replace(resolved[i], pmid=pmid)
        report.from_ecitmatch += 1

    report.unresolved = [r for r in resolved if r.pmid is None]
    return resolved


# -- citation text → ECitMatch fields (best effort) ----------------------------------------

# Vancouver/PubMed style: "... N Engl J Med. 2014 Oct 16;371(16):1507-17."
_VANCOUVER = re.compile(
    r"(?P<year>(?:19|20)\d\d)[^;:]{0,20};\s*(?P<volume>[\w.-]+)\s*(?:\([^)]*\))?\s*:"
    r"\s*(?P<page>[A-Za-z]*\d+[A-Za-z]*)"
)
# Nature style: "... N. Engl. J. Med. 371, 1507–1517 (2014)."
_NATURE = re.compile(
    r"(?P<volume>\d+[A-Za-z]?)\s*,\s*(?P<page>[A-Za-z]*\d+[A-Za-z]*)"
    r"(?:\s*[-–—]\s*[A-Za-z]*\d+[A-Za-z]*)?\s*\((?P<year>(?:19|20)\d\d)\)"
)
_FIRST_AUTHOR = re.compile(
    r"^\s*(?P<last>(?:(?:van|von|der|den|de|la|le|di|da|du|dos)\s)*[A-Z][\w'’-]+)[ ,]+"
    r"(?P<initials>(?:[A-Z]\.?\s?-?){1,3})(?=[,.\s&]|$)"
)


def citation_query(key: str, citation: str) -> CitationQuery | None:
    """ECitMatch fields parsed from one citation string, or None when it has no usable
    journal/year/volume/page (books, web pages). Handles Vancouver/PubMed style
    ("N Engl J Med. 2014;371(16):1507-17") and Nature style ("N. Engl. J. Med. 371,
    1507–1517 (2014)"), with plain or dotted journal abbreviations."""
    text = " ".join(citation.split())
    match = _VANCOUVER.search(text) or _NATURE.search(text)
    if match is None:
        return None
    journal = _trailing_journal(text[: match.start()].rstrip(" .,"))
    author = _FIRST_AUTHOR.match(text)
    if author is not None and journal.startswith(author.group(0).strip()):
        journal = journal[len(author.group(0).strip()) :].strip(" .,")  # "Doe J. Blood. 2011;..."
    if not journal:
        return None
    return CitationQuery(
        key=key,
        journal=" ".join(journal.replace(".", " ").split()).lower(),
        year=match.group("year"),
        volume=match.group("volume"),
        first_page=match.group("page"),
        author=_first_author(text),
    )


_CONNECTORS = frozenset({"of", "and", "the", "in", "de", "&", "for", "et"})


def _trailing_journal(text: str) -> str:
    """The journal at the end of "Authors. Title. Journal": the run of capitalised words and
    short dotted abbreviations ("N. Engl. J. Med.") after the title's final word, which is
    usually lower-case, hyphenated or long."""
    words = text.split()
    journal: list[str] = []
    for position, word in enumerate(reversed(words)):
        core = word.rstrip(".,;:")
        if core.lower() in _CONNECTORS and journal:
            journal.insert(0, word)
            continue
        if not core or not core[0].isupper():
            break
        if (
            position > 0
            and word.endswith(".")
            and (not core.isalpha() or len(core) > 10 or (len(core) > 1 and core.isupper()))
        ):
            break  # the title's last word: hyphenated, long, or an acronym ("B-ALL.", "PMID.")
        journal.insert(0, word)
    while journal and journal[0].rstrip(".").lower() in _CONNECTORS:
        journal.pop(0)
    return " ".join(journal)


def _first_author(text: str) -> str:
    """ "maude sl" from "Maude SL, ..." or "Maude, S. L. et al. ..." (ECitMatch's form)."""
    match = _FIRST_AUTHOR.match(text)
    if match is None:
        return ""
    initials = re.sub(r"[^A-Z]", "", match.group("initials"))
    return f"{match.group('last')} {initials}".lower().strip()
