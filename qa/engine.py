"""The answering facade: what the CLI and the HTTP API call.

``Engine.open(settings)`` loads the index once (vectors, metadata, BM25, priors); ``ask`` and
``ask_stream`` are then cheap and thread-safe (no shared mutable state besides a locked LRU
cache of query vectors). Without an LLM an answer is extractive (:mod:`carqa.qa.answer`); with one
(:mod:`carqa.qa.llm`) the model writes from the same numbered evidence.
"""

from __future__ import annotations

import re
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import chain
from typing import Any, Protocol, runtime_checkable

from carqa.index.corpus.models import PUBMED_URL
from carqa.index.search.backends import SearchBackend
from carqa.qa import agreement
from carqa.qa import answer as extractive
from carqa.qa.abbreviations import with_abbreviations
from carqa.qa.blank import is_blank, visible_text
from carqa.qa.lexicon import Lexicon, default_lexicon
from carqa.qa.llm import (
    EMPTY_MESSAGE,
    FLAG_EMPTY,
    FLAG_REMOVED,
    FLAG_UNCITED,
    CitationFilter,
    LLMWriter,
    chat_model_from_settings,
    marker_segments,
    uncited_message,
    uncited_sentences,
)
from carqa.qa.retrieve import HybridRetriever, IndexLike, Retrieval
from carqa.qa.types import Answer, AnswerEvent, Citation, Filters, Segment, joined

from carqa.errors import InputError
from carqa.settings import Settings

MAX_K = 50
LLM_EVIDENCE = 8
"""Numbered evidence sentences given to an LLM (two per paper at most)."""
LLM_CHARS_PER_TOKEN = 8
"""An LLM answer is cut at ``llm_max_tokens`` × this many characters (English runs ~4 per
token): the providers are asked for at most ``llm_max_tokens``, but a server may ignore it."""
FLAG_TRUNCATED = "llm_truncated"
NO_ABSTRACT_MESSAGE = "The best matching papers have no abstract."


@runtime_checkable
class EngineIndex(IndexLike, Protocol):
    """What the engine needs from an opened index (:class:`carqa.index.search.reader.Index`):
    what retrieval needs (:class:`carqa.qa.retrieve.IndexLike`), and a paper's sections for
    ``paper``. Tests pass small stand-ins; ``tests/qa/test_engine_index.py`` checks them and
    the real index against it."""

    def sections(self, pmid: str) -> list[Any]: ...


@dataclass
class Result:
    """An answer with the retrieval behind it (what ``carqa eval`` measures)."""

    answer: Answer
    retrieval: Retrieval


class Engine:
    """Answers questions over one opened index."""

    def __init__(
        self,
        index: EngineIndex,
        *,
        settings: Settings | None = None,
        llm: LLMWriter | None = None,
        lexicon: Lexicon | None = None,
        backend: SearchBackend | None = None,
    ) -> None:
        self.index = index
        self.settings = settings or Settings.load()
        if lexicon is None:  # the shipped names plus the abbreviations the corpus defines
            lexicon = with_abbreviations(default_lexicon(), (s.text for s in index.sentences))
        self.retriever = HybridRetriever(index, lexicon=lexicon, backend=backend)
        self.llm = llm

    @classmethod
    def open(cls, settings: Settings) -> Engine:
        """Load the index in ``settings.index_dir`` (raises ``IndexNotFound`` & co with hints).

        A model asked for (``--model``, ``CARQA_MODEL``) must be the index's own: another one is
        an ``IndexMismatch`` with the rebuild command. Unset, the index's own model is used."""
        from carqa.index.search.reader import Index

        index = Index.open(
            settings.index_dir,
            model=settings.requested_model,
            query_precision=settings.query_precision,
        )
        from carqa.index.search.backends import open_backend

        backend = open_backend(settings, index.manifest, settings.index_dir)
        model = chat_model_from_settings(settings)
        engine = cls(
            index,
            settings=settings,
            llm=LLMWriter(model) if model is not None else None,
            backend=backend,
        )
        engine.warm_up()
        return engine

    def warm_up(self) -> None:
        """Load the query encoder now (it loads lazily), so the first question is not slow."""
        self.index.encode_query("CAR T cells")

    # -- input ------------------------------------------------------------------------------

    def validate(self, question: str, k: int = 5) -> str:
        """The question as it reads (:func:`carqa.qa.blank.visible_text`: invisible characters
        dropped, whitespace collapsed); an InputError if it is blank (:mod:`carqa.qa.blank`: empty,
        or only whitespace and invisible characters), too long or k is out of range."""
        if not isinstance(question, str) or is_blank(question):
            raise InputError("The question is empty.", hint="Ask a question in words.")
        question = visible_text(question)
        limit = self.settings.max_question_chars
        if len(question) > limit:
            raise InputError(
                f"The question is {len(question)} characters long; the limit is {limit}.",
                hint="Ask a shorter question (CARQA_MAX_QUESTION_CHARS sets the limit).",
            )
        if not 1 <= k <= MAX_K:
            raise InputError(f"k must be between 1 and {MAX_K}, not {k}.")
        return question

    # -- answering ----------------------------------------------------------------------------

    def retrieve(self, question: str, *, k: int = 10, filters: Filters | None = None) -> Retrieval:
        """Ranked papers for a question (no answer composed)."""
        return self.retriever.retrieve(self.validate(question, k), k=k, filters=filters)

    def ask(self, question: str, *, k: int = 5, filters: Filters | None = None) -> Answer:
        """A cited answer, or an abstention with a message."""
        if self.llm is None:
            return self.ask_detailed(question, k=k, filters=filters).answer
        done: dict[str, Any] = {}
        for event in self.ask_stream(question, k=k, filters=filters):
            if event.type == "done":
                done = event.data
        return _answer_from_dict(done)

    def ask_detailed(
        self, question: str, *, k: int = 5, filters: Filters | None = None, ranked: int = 10
    ) -> Result:
        """The extractive answer together with its retrieval (``ranked`` papers kept)."""
        started = time.perf_counter()
        question = self.validate(question, k)
        retrieval = self.retriever.retrieve(question, k=max(k, ranked), filters=filters)
        abstained = self._abstention(question, retrieval, filters, started)
        if abstained is not None:
            return Result(abstained, retrieval)
        papers_read = min(k, extractive.PAPERS_READ)
        chosen = extractive.select_evidence(self.retriever, retrieval, papers_read=papers_read)
        if not chosen:
            return Result(self._abstain(question, started, NO_ABSTRACT_MESSAGE), retrieval)
        agreeing = agreement.agreeing_evidence(
            self.retriever, retrieval, chosen, papers_read=papers_read
        )
        citations, segments = agreement.cited(self.retriever, chosen, agreeing)
        answer = Answer(
            answer=joined(segments),
            segments=segments,
            abstained=False,
            citations=citations,
            took_ms=(time.perf_counter() - started) * 1000,
            query=question,
        )
        return Result(answer, retrieval)

    def ask_stream(
        self, question: str, *, k: int = 5, filters: Filters | None = None
    ) -> Iterator[AnswerEvent]:
        """Events in order: ``sources`` (the evidence), ``delta``... (answer text), ``done``."""
        started = time.perf_counter()
        if self.llm is None:
            answer = self.ask_detailed(question, k=k, filters=filters).answer
            yield AnswerEvent("sources", {"citations": [c.to_dict() for c in answer.citations]})
            for piece in agreement.sentence_pieces(answer.segments):
                yield AnswerEvent("delta", {"text": piece})
            answer.took_ms = (time.perf_counter() - started) * 1000
            yield AnswerEvent("done", answer.to_dict())
            return
        yield from self._llm_stream(question, k, filters, started)

    def _llm_stream(
        self, question: str, k: int, filters: Filters | None, started: float
    ) -> Iterator[AnswerEvent]:
        assert self.llm is not None
        question = self.validate(question, k)
        retrieval = self.retriever.retrieve(question, k=k, filters=filters)
        abstained = self._abstention(question, retrieval, filters, started)
        if abstained is not None:
            yield AnswerEvent("sources", {"citations": []})
            yield AnswerEvent("done", abstained.to_dict())
            return
        evidence = extractive.select_evidence(
            self.retriever,
            retrieval,
            max_sentences=LLM_EVIDENCE,
            papers_read=k,
        )
        if not evidence:
            # As the extractive answer does: with nothing to cite, the model would answer
            # from its own memory, uncited. It is not asked.
            abstained = self._abstain(question, started, NO_ABSTRACT_MESSAGE)
            yield AnswerEvent("sources", {"citations": []})
            yield AnswerEvent("done", abstained.to_dict())
            return
        citations = [
            extractive.citation_for(self.retriever, ev, n) for n, ev in enumerate(evidence, 1)
        ]
        yield AnswerEvent("sources", {"citations": [c.to_dict() for c in citations]})
        pieces: list[str] = []
        checker = CitationFilter(valid={c.n for c in citations})
        limit = self.settings.llm_max_tokens * LLM_CHARS_PER_TOKEN
        written, truncated = 0, False
        stream = self.llm.stream(question, citations, checker)
        try:
            for piece in stream:
                if written + len(piece) > limit:
                    # A server that ignores the token cap would stream on without end, and the
                    # whole reply is kept in the chat session: cut it here.
                    piece, truncated = piece[: limit - written], True
                pieces.append(piece)
                written += len(piece)
                if piece:
                    yield AnswerEvent("delta", {"text": piece})
                if truncated:
                    break
        finally:
            stream.close()  # ends the model's request when we stop early (or the client left)
        text = "".join(pieces)  # spaced as it streamed: what the client already shows
        flags: list[str] = []
        notes: list[str] = []
        if truncated:
            flags.append(FLAG_TRUNCATED)
            notes.append(f"The model's answer was cut at {limit} characters.")
        if not text:
            # Not an abstention (the evidence was good enough): the model failed to use it.
            flags.append(FLAG_EMPTY)
            notes.append(EMPTY_MESSAGE)
        if checker.removed:
            flags.append(FLAG_REMOVED)
            removed = ", ".join(f"[{n}]" for n in checker.removed)
            notes.append(f"Removed citation(s) to evidence that does not exist: {removed}.")
        uncited, sentences = uncited_sentences(text, cut=truncated)
        if uncited:  # the contract is that every sentence cites
            flags.append(FLAG_UNCITED)
            notes.append(uncited_message(uncited, sentences))
        answer = Answer(
            answer=text,
            abstained=False,
            citations=citations,
            took_ms=(time.perf_counter() - started) * 1000,
            query=question,
            message=" ".join(notes) or None,
            flags=flags,
            segments=marker_segments(text),  # every marker in it was checked as it streamed
        )
        yield AnswerEvent("done", answer.to_dict())

    def _abstention(
        self, question: str, retrieval: Retrieval, filters: Filters | None, started: float
    ) -> Answer | None:
        if not retrieval.papers:
            # Blame the filters only when some were set and there were papers to filter: the
            # CLI and the API always pass a Filters object, usually an empty one.
            filtered = filters is not None and not filters.is_empty()
            if filtered and self.index.papers:
                message = self._no_papers_message(filters)
            else:
                message = extractive.EMPTY_INDEX_MESSAGE
            return self._abstain(question, started, message)
        # The word checks only ever turn a refusal into an answer: read them only then.
        if (
            extractive.should_abstain(retrieval, short_covered=False)
            and extractive.should_abstain(
                retrieval,
                short_covered=extractive.short_question_covered(self.retriever, retrieval),
                named=extractive.names_found(self.retriever, retrieval),
            )
            and not extractive.names_in_title(self.retriever, retrieval, self._top_title(retrieval))
        ):
            filtered = filters is not None and not filters.is_empty()
            hint = extractive.abstain_hint(question, self._in_corpus, filtered=filtered)
            return self._abstain(question, started, f"{extractive.ABSTAIN_MESSAGE} {hint}")
        return None

    def _top_title(self, retrieval: Retrieval) -> str:
        paper = self.index.papers.get(retrieval.papers[0].pmid) if retrieval.papers else None
        return str(getattr(paper, "title", "") or "")

    def _in_corpus(self, term: str) -> bool:
        """Whether some indexed sentence or title contains ``term`` as a phrase (any case).
        Scanned once per term and remembered: the corpus does not change under an engine."""
        found: dict[str, bool] = self.__dict__.setdefault("_terms_found", {})
        if term not in found:
            pattern = re.compile(rf"(?<!\w){re.escape(term)}(?!\w)", re.IGNORECASE)
            texts = (row.text for row in self.index.sentences)
            titles = (paper.title or "" for paper in self.index.papers.values())
            found[term] = any(pattern.search(text) for text in chain(titles, texts))
        return found[term]

    def _no_papers_message(self, filters: Filters | None) -> str:
        """Why the filters left no paper. Cited-only on a corpus without a seed review (e.g.
        PubMedQA) can never match, whatever else is asked: say so rather than leave the user
        to try other years or PMIDs."""
        if filters is not None and filters.cited_only:
            papers = self.index.papers.values()
            if not any(p.is_seed or p.cited_by_seed for p in papers):
                return extractive.NO_SEED_MESSAGE
        return extractive.NO_PAPERS_MESSAGE

    def _abstain(self, question: str, started: float, message: str) -> Answer:
        return Answer(
            answer="",
            abstained=True,
            citations=[],
            took_ms=(time.perf_counter() - started) * 1000,
            query=question,
            message=message,
        )

    # -- papers and stats ---------------------------------------------------------------------

    def paper(self, pmid: str) -> dict[str, Any] | None:
        """One paper's metadata and abstract sections, or None if it is not indexed."""
        meta = self.index.papers.get(str(pmid).strip())
        if meta is None:
            return None
        return {
            "pmid": meta.pmid,
            "title": meta.title,
            "journal": meta.journal,
            "year": meta.year,
            "authors": list(meta.authors),
            "doi": meta.doi,
            "mesh": list(meta.mesh),
            "publication_types": list(meta.publication_types),
            "is_seed": meta.is_seed,
            "cited_by_seed": meta.cited_by_seed,
            "relation": getattr(meta, "relation", None),
            "has_abstract": meta.has_abstract,
            "url": PUBMED_URL.format(pmid=meta.pmid),
            "sections": [
                {"label": s.label, "category": s.category, "text": s.text}
                for s in self.index.sections(meta.pmid)
            ],
        }

    def stats(self) -> dict[str, Any]:
        """Counts, model, build time and where the index lives."""
        papers = self.index.papers.values()
        manifest = getattr(self.index, "manifest", {}) or {}
        model = manifest.get("model", {})
        return {
            "papers": len(self.index.papers),
            "with_abstract": sum(1 for p in papers if p.has_abstract),
            "seed": sum(1 for p in papers if p.is_seed),
            "cited_by_seed": sum(1 for p in papers if p.cited_by_seed),
            "relations": dict(Counter(getattr(p, "relation", "file") for p in papers)),
            "chunks": len(getattr(self.index, "chunks", [])),
            "sentences": len(self.index.sentences),
            "model": model.get("name") or model.get("id"),
            "build_id": manifest.get("build_id"),
            "built_at": manifest.get("created_at") or manifest.get("built_at"),
            "query_encoder": _query_encoder(self.index),
            "index_dir": str(getattr(self.index, "index_dir", self.settings.index_dir)),
            "llm": self.settings.llm_provider if self.llm is not None else None,
        }


def _query_encoder(index: EngineIndex) -> str | None:
    """ "onnx-int8", "onnx-fp32" or "torch": what encodes questions (None for a stand-in)."""
    backend = getattr(index, "query_backend", None)
    if backend == "onnx":
        return f"onnx-{getattr(index, 'onnx_precision', 'fp32')}"
    return backend


def _answer_from_dict(data: dict[str, Any]) -> Answer:
    return Answer(
        answer=data.get("answer", ""),
        abstained=bool(data.get("abstained")),
        citations=[Citation(**c) for c in data.get("citations", [])],
        took_ms=float(data.get("took_ms", 0.0)),
        query=data.get("query", ""),
        message=data.get("message"),
        flags=list(data.get("flags", [])),
        segments=[Segment(**segment) for segment in data.get("segments", [])],
    )
