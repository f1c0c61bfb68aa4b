"""The corpus data model shared by every layer: papers, their abstract sections, references.

Plain dataclasses: sources (PubMed XML, JSONL) produce them, the store persists them, the
index builder chunks them. Keeping them free of I/O lets every step be tested on its own.
"""

from __future__ import annotations

from dataclasses import dataclass, field

PUBMED_URL = "https://pubmed.ncbi.nlm.nih.gov/{pmid}/"

RELATIONS = ("seed", "cited", "citing", "similar", "file")
"""How a paper came into the corpus, relative to the seed review: the review itself, a paper
it cites, a paper citing it (PubMed "Cited by"), one of its "Similar articles", or a paper read
from ``--from`` files with no link to a seed. A paper both cited by the seed and similar to it
is ``cited``: the first that applies in this order wins."""


@dataclass(frozen=True)
class Section:
    """One part of an abstract. ``label`` is the publisher's (e.g. ``"CONCLUSIONS"``) or None
    for an unlabelled abstract; ``category`` is NLM's normalised label when known
    (BACKGROUND, OBJECTIVE, METHODS, RESULTS, CONCLUSIONS), else None."""

    text: str
    label: str | None = None
    category: str | None = None


@dataclass(frozen=True)
class Reference:
    """One entry of a paper's reference list: the citation text as deposited, and the PMID
    when it is known (from the ReferenceList, elink or ECitMatch)."""

    citation: str | None = None
    pmid: str | None = None
    doi: str | None = None


@dataclass
class Paper:
    """A PubMed record reduced to what carqa needs. ``sections`` in abstract order; empty
    when the record has no abstract (kept as a title-only paper)."""

    pmid: str
    title: str | None = None
    journal: str | None = None
    year: int | None = None
    authors: list[str] = field(default_factory=list)
    doi: str | None = None
    mesh: list[str] = field(default_factory=list)
    publication_types: list[str] = field(default_factory=list)
    sections: list[Section] = field(default_factory=list)
    references: list[Reference] = field(default_factory=list)
    relation: str | None = None
    """One of :data:`RELATIONS`; None when the source did not say (the store then decides,
    see :meth:`carqa.index.corpus.store.CorpusStore.papers`)."""

    @property
    def has_abstract(self) -> bool:
        return any(section.text.strip() for section in self.sections)

    @property
    def abstract(self) -> str:
        """The abstract as one text, sections joined in order."""
        return "\n".join(section.text for section in self.sections if section.text)

    @property
    def url(self) -> str:
        return PUBMED_URL.format(pmid=self.pmid)


@dataclass(frozen=True)
class Deletion:
    """PMIDs a source withdraws: a MEDLINE/PubMed update file's ``<DeleteCitation>`` block.
    Applied in file order, so a deletion removes what earlier files (or, with ``--add``, the
    stored corpus) hold, and a later file may add the paper again."""

    pmids: tuple[str, ...]


NLM_CATEGORIES = frozenset({"BACKGROUND", "OBJECTIVE", "METHODS", "RESULTS", "CONCLUSIONS"})
"""NLM's normalised abstract section categories (``NlmCategory``)."""


def nlm_category(label: str | None) -> str | None:
    """The NLM category a label names exactly ("RESULTS" → RESULTS), else None."""
    if label is None:
        return None
    upper = label.strip().upper()
    return upper if upper in NLM_CATEGORIES else None
