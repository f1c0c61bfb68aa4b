"""The answering layer's public data types: what the CLI and the HTTP API receive.

They are plain dataclasses (not pydantic models) so ``qa`` stays free of serving concerns;
``Answer.to_dict`` is the one JSON shape every consumer (``carqa ask --json``, ``/api/query``,
the ``done`` event of a stream) shares.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Literal

EventType = Literal["sources", "delta", "done"]


@dataclass
class Citation:
    """One numbered piece of evidence: the sentence ``text`` from paper ``pmid``.

    ``n`` is the number the answer's ``[n]`` markers refer to; ``section`` is the abstract
    section the sentence came from (e.g. ``"CONCLUSIONS"``) or None for an unlabelled abstract;
    ``score`` is the evidence score that selected it (higher is better, comparable only within
    one answer). ``relation`` is how the paper relates to the seed review (``seed``, ``cited``,
    ``citing``, ``similar`` or ``file``) and ``publication_types`` are PubMed's (Review,
    Randomized Controlled Trial, Clinical Trial, Phase II, ...), so a reader sees at a glance
    what kind of evidence a sentence is.
    """

    n: int
    pmid: str
    title: str | None
    year: int | None
    url: str
    section: str | None
    text: str
    score: float
    relation: str | None = None
    publication_types: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


EVIDENCE_KINDS = (
    ("Meta-Analysis", "meta-analysis"),
    ("Systematic Review", "systematic review"),
    ("Randomized Controlled Trial", "randomized trial"),
    ("Clinical Trial, Phase IV", "phase IV trial"),
    ("Clinical Trial, Phase III", "phase III trial"),
    ("Clinical Trial, Phase II", "phase II trial"),
    ("Clinical Trial, Phase I", "phase I trial"),
    ("Clinical Trial", "clinical trial"),
    ("Practice Guideline", "guideline"),
    ("Guideline", "guideline"),
    ("Observational Study", "observational study"),
    ("Case Reports", "case report"),
    ("Review", "review"),
    ("Editorial", "editorial"),
    ("Letter", "letter"),
    ("Comment", "comment"),
)
"""PubMed publication types → a short name, the most telling first (a phase II trial is also
a "Clinical Trial"; a review of trials is still a review). The widget keeps the same table."""

RELATION_PHRASES = {
    "seed": "the review",
    "cited": "cited by the review",
    "citing": "cites the review",
    "similar": "similar to the review",
}


def evidence_label(publication_types: Iterable[str], relation: str | None, year: int | None) -> str:
    """A compact line saying what kind of evidence a citation is:
    ``"phase II trial · cites the review · 2021"`` (parts that are unknown are left out)."""
    types = {kind.casefold() for kind in publication_types}
    kind = next((name for pubmed, name in EVIDENCE_KINDS if pubmed.casefold() in types), None)
    parts = [kind, RELATION_PHRASES.get(relation or ""), str(year) if year else None]
    return " · ".join(part for part in parts if part)


@dataclass
class Filters:
    """Restrict retrieval. ``year_from``/``year_to`` are inclusive; ``pmids`` limits to a set of
    papers; ``exclude_pmids`` leaves a set of papers out (it wins over ``pmids``);
    ``cited_only`` keeps only papers cited by the seed review; ``include_seed=False`` leaves the
    seed review itself out. ``relations`` keeps papers with one of those relations to the seed
    (``["citing"]``: what came after the review); ``publication_types`` keeps papers of at
    least one of those PubMed publication types (compared case-insensitively).

    ``pmids=[]`` is an empty allow-list: no paper passes (it is not "no restriction"; for that,
    leave ``pmids`` None). ``is_empty`` and the retriever's mask must agree on this, or an
    empty list would abstain with "the index holds no papers". The same holds for
    ``relations=[]`` and ``publication_types=[]``."""

    year_from: int | None = None
    year_to: int | None = None
    pmids: list[str] | None = None
    exclude_pmids: list[str] | None = None
    cited_only: bool = False
    include_seed: bool = True
    relations: list[str] | None = None
    publication_types: list[str] | None = None

    def __post_init__(self) -> None:
        """Check the types a Python caller (a LangChain chain, a notebook) can get wrong and
        the HTTP API and CLI cannot: ``pmids="31844332"`` was read character by character and
        matched nothing, and ``year_from="2020"`` failed deep inside numpy."""
        from carqa.errors import InputError

        for name in ("year_from", "year_to"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or isinstance(value, bool)):
                raise InputError(f"{name} must be a year (an int) or None, not {value!r}.")
        for name in ("pmids", "exclude_pmids"):
            value = getattr(self, name)
            if value is None:
                continue
            if isinstance(value, (str, bytes)) or not isinstance(value, Iterable):
                raise InputError(
                    f"{name} must be a list of PMIDs, not {value!r}.",
                    hint=f"Write {name}=[{value!r}] for one paper.",
                )
            setattr(self, name, [str(pmid).strip() for pmid in value])
        for name in ("relations", "publication_types"):
            value = getattr(self, name)
            listish = isinstance(value, Iterable) and not isinstance(value, (str, bytes))
            if value is not None and not listish:
                raise InputError(
                    f"{name} must be a list, not {value!r}.",
                    hint=f"Write {name}=[{value!r}] for one value.",
                )
        if self.relations is not None:
            from carqa.index.corpus.models import RELATIONS

            self.relations = [str(relation).strip().lower() for relation in self.relations]
            unknown = [relation for relation in self.relations if relation not in RELATIONS]
            if unknown:
                raise InputError(
                    f"Unknown relation(s): {', '.join(unknown)}.",
                    hint=f"Relations to the seed review are {', '.join(RELATIONS)}.",
                )
        if self.publication_types is not None:
            self.publication_types = [
                " ".join(str(kind).split()) for kind in self.publication_types if str(kind).strip()
            ]

    @classmethod
    def coerce(cls, value: Any) -> Filters | None:
        """``value`` as Filters: None and Filters pass through, a mapping of field names (what
        LangChain callers naturally pass: ``retriever.invoke(q, filters={"year_from": 2020})``)
        is converted. Unknown keys and other types are an ``InputError`` rather than a filter
        silently ignored (``"year"`` for ``"year_from"`` would otherwise search everything)."""
        from carqa.errors import InputError

        if value is None or isinstance(value, cls):
            return value
        names = [f.name for f in fields(cls)]
        if isinstance(value, Mapping):
            unknown = sorted(str(key) for key in value if key not in names)
            if unknown:
                raise InputError(
                    f"Unknown filter(s): {', '.join(unknown)}.",
                    hint=f"Filters are {', '.join(names)}.",
                )
            return cls(**value)
        raise InputError(
            f"filters must be a carqa.qa.types.Filters or a dict, not {type(value).__name__}.",
            hint=f"Pass e.g. {{'year_from': 2020}}; filters are {', '.join(names)}.",
        )

    def is_empty(self) -> bool:
        return (
            self.year_from is None
            and self.year_to is None
            and self.pmids is None
            and not self.exclude_pmids
            and not self.cited_only
            and self.include_seed
            and self.relations is None
            and self.publication_types is None
        )

    def admits(self, paper: Any) -> bool:
        """Whether ``paper`` (an index's ``PaperMeta``) passes the relation and publication
        type filters (the others are applied as arrays by the retriever)."""
        if self.relations is not None and getattr(paper, "relation", "file") not in self.relations:
            return False
        if self.publication_types is not None:
            wanted = {kind.casefold() for kind in self.publication_types}
            if wanted.isdisjoint(kind.casefold() for kind in paper.publication_types):
                return False
        return True


@dataclass
class Segment:
    """A piece of an answer's text and the evidence numbers cited right after it.

    Citations are structure, not text: an abstract sentence may itself contain "[1]" (its own
    reference list), which must stay text. The answer string is the segments joined, each
    followed by its markers: ``"".join(s.text + "".join(f"[{n}]" for n in s.citations))``."""

    text: str
    citations: list[int] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"text": self.text, "citations": list(self.citations)}


def joined(segments: Iterable[Segment]) -> str:
    """The answer string of ``segments`` (each one's text, then its ``[n]`` markers)."""
    return "".join(s.text + "".join(f"[{n}]" for n in s.citations) for s in segments)


@dataclass
class Answer:
    """An answer: sentences each followed by its ``[n]`` marker, and the citations they use.

    ``abstained`` is True when the indexed literature does not answer the question; then
    ``answer`` is empty, ``citations`` holds nothing and ``message`` says why. ``flags`` carries
    machine-readable notes such as ``"llm_removed_citations"``. ``segments`` is the answer's
    text with its citations as structure (see :class:`Segment`): what a client renders links
    from, instead of finding ``[n]`` in the text. ``focus_pmids`` is set by chat only
    (``qa.chat``): the papers the conversation was about that the reply was answered from
    (empty when it searched the whole corpus).
    """

    answer: str
    abstained: bool
    citations: list[Citation]
    took_ms: float
    query: str
    message: str | None = None
    flags: list[str] = field(default_factory=list)
    segments: list[Segment] = field(default_factory=list)
    focus_pmids: list[str] | None = None

    def to_dict(self) -> dict[str, Any]:
        data = {
            "answer": self.answer,
            "segments": [segment.to_dict() for segment in self.segments],
            "abstained": self.abstained,
            "citations": [citation.to_dict() for citation in self.citations],
            "took_ms": round(self.took_ms, 3),
            "query": self.query,
            "message": self.message,
            "flags": list(self.flags),
        }
        if self.focus_pmids is not None:  # chat only: the papers in focus it answered from
            data["focus_pmids"] = list(self.focus_pmids)
        return data


@dataclass
class AnswerEvent:
    """One event of a streamed answer, in this order: one ``sources`` (``{"citations": [...]}``,
    the evidence first), zero or more ``delta`` (``{"text": "..."}`` pieces of the answer), one
    ``done`` (the full ``Answer.to_dict()``, plus ``session_id`` for chat)."""

    type: EventType
    data: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {"type": self.type, "data": self.data}
