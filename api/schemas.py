"""Pydantic models for every HTTP request and response body.

They are the API's contract (they generate the OpenAPI document at ``/docs``) and its first line
of defence: anything a client can send that does not fit them is a 422, never a 500. The
answering layer speaks plain dataclasses (:mod:`carqa.qa.types`); this module only describes JSON.

Request models forbid unknown fields so a typo (``"filter"`` for ``"filters"``) is an error the
client sees rather than a silently ignored option.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from carqa.index.corpus.models import RELATIONS
from carqa.index.corpus.sources import PMID
from carqa.qa.blank import NOT_BLANK_PATTERN, is_blank
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    model_validator,
)

PMID_PATTERN = (
    rf"^{PMID.pattern}$"  # the one rule, in carqa.index.corpus.sources (files use it too)
)
SESSION_ID_PATTERN = r"^[A-Za-z0-9_-]{1,128}$"
MAX_K = 20

Pmid = Annotated[str, Field(pattern=PMID_PATTERN, examples=["31844332"])]
Relation = Literal["seed", "cited", "citing", "similar", "file"]
PublicationType = Annotated[
    str, Field(min_length=1, max_length=200, examples=["Randomized Controlled Trial"])
]


def _non_blank(value: str) -> str:
    """Reject blank text (empty, or only whitespace and invisible characters: the one rule, in
    :mod:`carqa.qa.blank`, whose NOT_BLANK_PATTERN the schema documents, so the documented pattern
    and this check accept exactly the same text), and text that is not encodable Unicode (JSON
    allows lone surrogates like ``"\\ud800"``; nothing downstream can handle them)."""
    if is_blank(value):
        raise ValueError("must not be empty")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("must be valid Unicode text (it contains a lone surrogate)") from None
    return value


NonBlankText = Annotated[str, AfterValidator(_non_blank)]


def _json_integer(value: Any) -> Any:
    """JSON Schema's integer, which the OpenAPI document promises: ``5`` and ``5.0``, not
    ``true`` or ``"5"``, which pydantic's lax ``int`` would take as 1 and 5."""
    if isinstance(value, bool | str):
        raise ValueError("must be an integer")
    return value


# The bounds go before the validator: after it, the OpenAPI document would get pydantic's
# names for them ("ge", "le") instead of JSON Schema's ("minimum", "maximum").
Year = Annotated[int, Field(ge=1800, le=2200), BeforeValidator(_json_integer)]
K = Annotated[int, Field(ge=1, le=MAX_K), BeforeValidator(_json_integer)]


class FiltersModel(BaseModel):
    """Restrict which papers may answer. ``year_from`` must not be after ``year_to`` (the
    request is refused with 422 otherwise: JSON Schema cannot express a rule between two
    fields). Mirrors :class:`carqa.qa.types.Filters`."""

    model_config = ConfigDict(extra="forbid")

    year_from: Year | None = Field(None, description="Inclusive.")
    year_to: Year | None = Field(None, description="Inclusive; not before year_from (else 422).")
    pmids: list[Pmid] | None = Field(None, max_length=1000, description="Only these papers.")
    exclude_pmids: list[Pmid] | None = Field(
        None, max_length=1000, description="Never these papers (wins over pmids)."
    )
    cited_only: StrictBool = Field(False, description="Only papers the seed review cites.")
    include_seed: StrictBool = Field(True, description="Whether the seed review itself may answer.")
    relations: list[Relation] | None = Field(
        None,
        max_length=len(RELATIONS),
        description="Only papers with one of these relations to the seed review: seed, cited "
        "(the review cites it), citing (it cites the review), similar, file.",
    )
    publication_types: list[PublicationType] | None = Field(
        None,
        max_length=50,
        description="Only papers of at least one of these PubMed publication types "
        "(case-insensitive), e.g. Randomized Controlled Trial, Review.",
    )

    @model_validator(mode="after")
    def _years_in_order(self) -> FiltersModel:
        """Reversed years match no paper: an empty answer would hide the client's mistake."""
        start, end = self.year_from, self.year_to
        if start is not None and end is not None and start > end:
            raise ValueError(f"year_from ({start}) is after year_to ({end})")
        return self


class QueryRequest(BaseModel):
    """One stand-alone question."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"question": "Why do patients relapse after CD19 CAR T?"}]},
    )

    question: NonBlankText = Field(
        ...,
        min_length=1,
        json_schema_extra={"pattern": NOT_BLANK_PATTERN},
        description="The question (not blank; at most max_question_chars characters).",
    )
    k: K = Field(5, description="How many papers to draw evidence from.")
    filters: FiltersModel | None = None


class ChatRequest(BaseModel):
    """One chat turn. Without ``session_id`` a new conversation starts."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"message": "What causes CD19-negative relapse?"}]},
    )

    session_id: str | None = Field(None, pattern=SESSION_ID_PATTERN)
    message: NonBlankText = Field(
        ...,
        min_length=1,
        json_schema_extra={"pattern": NOT_BLANK_PATTERN},
        description="The user's message (same rules as a question).",
    )
    k: K = 5
    filters: FiltersModel | None = None
    stream: StrictBool = Field(
        False, description="Stream Server-Sent Events (same as `Accept: text/event-stream`)."
    )


class CitationModel(BaseModel):
    """One numbered piece of evidence; the answer's ``[n]`` markers refer to ``n``."""

    n: int
    pmid: str
    title: str | None
    year: int | None
    url: str
    section: str | None
    text: str
    score: float
    relation: str | None = Field(
        None,
        description="seed, cited, citing, similar or file: how the paper relates to the "
        "seed review.",
    )
    publication_types: list[str] = Field(
        default_factory=list, description="PubMed publication types of the paper."
    )


FLAGS = {
    "session_expired": "chat only: the session_id sent was unknown or had expired (or was "
    "deleted to keep CARQA_MAX_SESSIONS), so a new session was started and the message was "
    "read without the earlier turns",
    "focus_widened": "chat only: the message asked about the papers the conversation was "
    "about, which do not say, so all indexed papers were searched",
    "llm_truncated": "the model's reply was cut at the length cap (CARQA_LLM_MAX_TOKENS)",
    "llm_uncited": "some of the model's sentences cite no evidence",
    "llm_invalid_citations_removed": "citations to evidence that does not exist were removed",
    "llm_empty": "the model wrote no answer from the evidence",
}
"""Every value of ``flags``, documented in the OpenAPI description (a test keeps it in step
with the ``FLAG_*`` constants of :mod:`qa`)."""


class SegmentModel(BaseModel):
    """A piece of the answer's text, then the evidence numbers (``citations[].n``) it cites."""

    text: str
    citations: list[int] = Field(default_factory=list)


class QueryResponse(BaseModel):
    """A cited answer, or an abstention (``abstained`` true, ``answer`` empty, ``message`` why)."""

    answer: str = Field(
        ...,
        description="The answer as plain text, each cited piece followed by its `[n]` markers. "
        "To show citations, use `segments`: the text itself may contain brackets.",
    )
    segments: list[SegmentModel] = Field(
        default_factory=list,
        description="The answer with its citations as structure: each segment's `text`, then "
        "a marker for each of its `citations` (numbers of `citations[].n`). Joined this way "
        "they give `answer`. Render citation links from these, never by searching the text "
        "for `[n]`: an abstract's own `[1]` is text.",
    )
    abstained: bool
    citations: list[CitationModel]
    took_ms: float
    query: str | None = Field(None, description="The query retrieval ran with.")
    message: str | None = Field(
        None,
        description="A note on how to read the answer (why it abstained, or what each flag "
        "means for this answer); show it with the answer.",
    )
    flags: list[str] = Field(
        default_factory=list,
        description="How to read the answer; each comes with a note in `message`. Values: "
        + "; ".join(f"`{flag}`: {meaning}" for flag, meaning in FLAGS.items())
        + ". Clients should ignore values they do not know.",
        examples=[["llm_uncited"]],
    )


class ChatResponse(QueryResponse):
    """A chat reply: the answer plus the session to continue with."""

    session_id: str
    focus_pmids: list[str] = Field(
        default_factory=list,
        description="The papers the conversation was about that this reply was answered "
        "from, the one discussed first first: set when the message asked about a detail of "
        'them ("how many patients were included?"); empty when the whole corpus was searched.',
        examples=[["17179167"]],
    )


class SectionModel(BaseModel):
    label: str | None = None
    category: str | None = None
    text: str


class PaperResponse(BaseModel):
    """A paper's metadata and abstract, and how it relates to the seed review."""

    model_config = ConfigDict(extra="allow")

    pmid: str
    title: str | None = None
    journal: str | None = None
    year: int | None = None
    authors: list[str] = Field(default_factory=list)
    doi: str | None = None
    mesh: list[str] = Field(default_factory=list)
    publication_types: list[str] = Field(default_factory=list)
    sections: list[SectionModel] = Field(default_factory=list)
    is_seed: bool = False
    cited_by_seed: bool = False
    relation: str | None = None
    url: str


class StatsResponse(BaseModel):
    """Corpus and index counts, the embedding model and when the index was built.

    The answering layer decides the exact keys; the ones below are described, others pass
    through unchanged.
    """

    model_config = ConfigDict(extra="allow")

    papers: int | None = None
    chunks: int | None = None
    sentences: int | None = None
    model: str | None = None
    built_at: str | None = None
    sessions_persistent: bool | None = Field(
        None,
        description="Whether chat sessions are kept in a file and survive a restart; false "
        "when the sessions file could not be written and they are kept in memory (set "
        "CARQA_SESSIONS_PATH to a writable file).",
    )


class HealthResponse(BaseModel):
    status: str


class ReadyResponse(BaseModel):
    ready: bool
    reason: str | None = None
    hint: str | None = None


class ErrorBody(BaseModel):
    code: str = Field(..., examples=["invalid_request"])
    message: str
    hint: str | None = None
    details: list[dict[str, Any]] | None = None


class ErrorResponse(BaseModel):
    """Every error, whatever its status: ``{"error": {"code": ..., "message": ...}}``."""

    error: ErrorBody
