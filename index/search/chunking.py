"""Structure-aware chunking of abstracts: sections → sentences → chunks of whole sentences.

Why this shape:

* A chunk never spans two abstract sections, so a retrieved chunk is about one thing (the
  methods *or* the results) and carries that section's label.
* Chunks are made of whole sentences (packed by langchain-text-splitters' merge logic with our
  biomedical sentence splitter, :mod:`carqa.index.search.sentences`), so answers can cite the
  exact sentences a chunk was built from: every chunk knows its sentence range.
* The text embedded for a chunk is ``title + "\\n" + chunk text`` when the paper has a title:
  an abstract's sentences rarely repeat the topic the title names.

Sizes are in characters (all-MiniLM-L6-v2 truncates at 256 word pieces, roughly 1,000
characters of biomedical English); the defaults were chosen by measurement on the PubMedQA dev
questions (see docs/benchmarks.md, "Chunk size").
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from carqa.index.corpus.models import Paper
from carqa.index.search.sentences import RULES_VERSION, split_sentences
from langchain_text_splitters import TextSplitter

from carqa.errors import InputError
from carqa.settings import Settings

CHUNK_VECTOR_MODES = ("sentence-mean", "embedded")
TITLE_CATEGORY = "TITLE"
"""``section_category`` of the single chunk a title-only paper (no abstract) gets."""


@dataclass(frozen=True)
class ChunkSettings:
    """How abstracts are cut. Part of the manifest: changing it means a rebuild."""

    # Measured on the 500 PubMedQA dev questions (paper recall@1, bench/chunking.py): chunk
    # size barely matters (0.964-0.972 from 200 to 1500 chars); 400/150 (0.968) keeps 2-3
    # sentences per chunk, with about one sentence of overlap, for context.
    chunk_size: int = 400
    chunk_overlap: int = 150
    title_prefix: bool = True
    # How a chunk gets its vector: "sentence-mean" = the normalised mean of its sentences'
    # vectors and its paper's title vector (each sentence is embedded once, for answers
    # anyway), or "embedded" = the model run on ``title + "\n" + chunk text``. Embedding
    # chunks as well roughly doubles the build's model time for little retrieval gain; see
    # docs/benchmarks.md, "Chunk size", for the measurement.
    chunk_vectors: str = "sentence-mean"
    unit: str = "chars"
    # Which rules made the sentences: an index built by older rules is rebuilt, not kept.
    splitter: str = f"sections>sentences-v{RULES_VERSION}>langchain-merge"

    def __post_init__(self) -> None:
        if self.chunk_vectors not in CHUNK_VECTOR_MODES:
            raise ValueError(f"chunk_vectors must be one of {CHUNK_VECTOR_MODES}")
        if not 0 <= self.chunk_overlap < self.chunk_size:
            raise ValueError("need 0 <= chunk_overlap < chunk_size")

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_env(cls) -> ChunkSettings:
        """Defaults, overridden by ``CARQA_CHUNK_SIZE``, ``CARQA_CHUNK_OVERLAP``,
        ``CARQA_CHUNK_VECTORS`` (``sentence-mean`` or ``embedded``).

        A bad combination is an :class:`InputError` naming the variables (each value alone
        is checked by :class:`Settings`): ``CARQA_CHUNK_SIZE=100`` with the default overlap of
        150 is one, and it is not the constructor's ``ValueError`` a user could do nothing with.
        """
        settings = Settings.load()
        values: dict[str, Any] = {
            name: getattr(settings, name)
            for name in ("chunk_size", "chunk_overlap", "chunk_vectors")
            if getattr(settings, name) is not None
        }
        size = values.get("chunk_size", cls.chunk_size)
        overlap = values.get("chunk_overlap", cls.chunk_overlap)
        if overlap >= size:
            given = {
                name: "" if f"chunk_{name}" in values else ", the default"
                for name in ("size", "overlap")
            }
            raise InputError(
                f"Invalid carqa setting: CARQA_CHUNK_OVERLAP ({overlap}{given['overlap']}) must "
                f"be smaller than CARQA_CHUNK_SIZE ({size}{given['size']}).",
                hint=f"Set CARQA_CHUNK_OVERLAP below CARQA_CHUNK_SIZE (defaults: "
                f"{cls.chunk_overlap} and {cls.chunk_size} characters), or unset both.",
            )
        return cls(**values)


@dataclass(frozen=True)
class ChunkPiece:
    """One chunk of one section. Sentence positions are paper-wide, ``[start, end)``."""

    pmid: str
    section_position: int
    section_label: str | None
    section_category: str | None
    text: str
    embed_text: str
    sentence_start: int
    sentence_end: int


@dataclass(frozen=True)
class SentencePiece:
    """One sentence of an abstract. ``position`` is paper-wide (0-based), ``count`` the number
    of sentences in the paper; ``char_start``/``char_end`` index the section's text;
    ``chunk`` is the paper-local index of the first chunk that holds it."""

    pmid: str
    section_position: int
    section_label: str | None
    section_category: str | None
    position: int
    count: int
    text: str
    char_start: int
    char_end: int
    chunk: int


@dataclass(frozen=True)
class PaperPieces:
    chunks: list[ChunkPiece]
    sentences: list[SentencePiece]


class _OversizeFilter(logging.Filter):
    """langchain warns for every chunk longer than ``chunk_size``; for us that is one long
    sentence kept whole on purpose (the model truncates it), not something to report."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("Created a chunk of size")


logging.getLogger("langchain_text_splitters.base").addFilter(_OversizeFilter())


class SentenceTextSplitter(TextSplitter):
    """A LangChain ``TextSplitter`` whose atoms are sentences: chunks are runs of whole
    sentences, packed up to ``chunk_size`` characters with up to ``chunk_overlap`` characters of
    trailing sentences repeated in the next chunk (LangChain's own merge logic).

    To know exactly which sentences each chunk holds (a text match is ambiguous when an
    abstract repeats a sentence), :meth:`sentence_runs` merges *placeholders* — one per
    sentence, measured as that sentence's length — and reads the indices back.
    """

    separator = " "

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(length_function=self._measure, **kwargs)
        self._lengths: dict[str, int] = {}

    def _measure(self, text: str) -> int:
        return self._lengths.get(text, len(text))

    def split_text(self, text: str) -> list[str]:
        sentences = [s.text for s in split_sentences(text)]
        return [
            self.separator.join(sentences[start:end])
            for start, end in self.sentence_runs(sentences)
        ]

    def sentence_runs(self, sentences: Sequence[str]) -> list[tuple[int, int]]:
        """``[start, end)`` sentence ranges of the chunks made from ``sentences``."""
        placeholders = [f"\x00{i}\x00" for i in range(len(sentences))]
        self._lengths = {p: len(s) for p, s in zip(placeholders, sentences, strict=True)}
        try:
            merged = self._merge_splits(placeholders, self.separator)
        finally:
            self._lengths = {}
        runs = []
        for chunk in merged:
            indices = [int(i) for i in _PLACEHOLDER.findall(chunk)]
            runs.append((indices[0], indices[-1] + 1))
        return runs


_PLACEHOLDER = re.compile("\x00(\\d+)\x00")


def chunk_paper(paper: Paper, settings: ChunkSettings | None = None) -> PaperPieces:
    """Chunks and sentences of one paper (sections in order; none cross a section border)."""
    settings = settings or ChunkSettings()
    splitter = SentenceTextSplitter(
        chunk_size=settings.chunk_size, chunk_overlap=settings.chunk_overlap
    )
    title = (paper.title or "").strip()
    prefix = f"{title}\n" if title and settings.title_prefix else ""

    raw_sentences: list[tuple[int, Any, Any]] = []  # (section position, section, Sentence)
    for section_position, section in enumerate(paper.sections):
        for sentence in split_sentences(section.text or ""):
            raw_sentences.append((section_position, section, sentence))
    count = len(raw_sentences)

    chunks: list[ChunkPiece] = []
    first_chunk_of: dict[int, int] = {}
    offset = 0
    for section_position, section in enumerate(paper.sections):
        in_section = [s for p, _, s in raw_sentences if p == section_position]
        texts = [s.text for s in in_section]
        for start, end in splitter.sentence_runs(texts):
            text = SentenceTextSplitter.separator.join(texts[start:end])
            for position in range(offset + start, offset + end):
                first_chunk_of.setdefault(position, len(chunks))
            chunks.append(
                ChunkPiece(
                    pmid=paper.pmid,
                    section_position=section_position,
                    section_label=section.label,
                    section_category=section.category,
                    text=text,
                    embed_text=prefix + text,
                    sentence_start=offset + start,
                    sentence_end=offset + end,
                )
            )
        offset += len(in_section)

    if not chunks and title:
        # A title-only record stays findable: its title is its only chunk (and no sentences).
        chunks.append(
            ChunkPiece(
                pmid=paper.pmid,
                section_position=-1,
                section_label=None,
                section_category=TITLE_CATEGORY,
                text=title,
                embed_text=title,
                sentence_start=0,
                sentence_end=0,
            )
        )

    sentences = [
        SentencePiece(
            pmid=paper.pmid,
            section_position=section_position,
            section_label=section.label,
            section_category=section.category,
            position=position,
            count=count,
            text=sentence.text,
            char_start=sentence.start,
            char_end=sentence.end,
            chunk=first_chunk_of[position],
        )
        for position, (section_position, section, sentence) in enumerate(raw_sentences)
    ]
    return PaperPieces(chunks=chunks, sentences=sentences)


def chunk_papers(
    papers: Iterable[Paper], settings: ChunkSettings | None = None
) -> list[tuple[Paper, PaperPieces]]:
    """:func:`chunk_paper` for many papers, keeping each paper beside its pieces."""
    settings = settings or ChunkSettings()
    return [(paper, chunk_paper(paper, settings)) for paper in papers]
