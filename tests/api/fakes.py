"""A small fake of the answering facade (``carqa.qa.engine.Engine`` +
``carqa.qa.chat.ChatService``).

It implements the same contract with canned, invented papers so the HTTP layer can be tested
quickly and deterministically (and before the real engine exists). Tests of the real engine on
the fixture index live beside these and use the same assertions where they can.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

from carqa.qa.types import Answer, AnswerEvent, Citation, Filters, Segment, joined

PAPERS: dict[str, dict[str, Any]] = {
    "90000002": {
        "title": "Durable remissions with CD19-directed CAR T cells (invented)",
        "year": 2014,
        "section": "RESULTS",
        "text": "Complete remission was reached in 27 of 30 patients.",
        "words": {"remission", "cd19", "leukaemia", "response"},
    },
    "90000003": {
        "title": "Antigen escape after CD19 CAR T cells (invented)",
        "year": 2018,
        "section": "CONCLUSIONS",
        "text": "Loss of CD19 expression was the main cause of relapse.",
        "words": {"relapse", "cd19", "escape", "antigen"},
    },
    "90000012": {
        "title": "An invented case of unexpected markup in an abstract",
        "year": 2019,
        "section": None,
        "text": "This invented abstract tests how text is rendered: <img src=x onerror=alert(1)> "
        "must appear as plain text.",
        "words": {"markup", "injection", "rendered"},
    },
}
ABSTAIN_MESSAGE = "The indexed literature does not answer this question."


class FakeEngine:
    """Keyword-matching stand-in for ``carqa.qa.engine.Engine`` with the same method signatures."""

    def __init__(self, *, delay: float = 0.0) -> None:
        self.delay = delay
        self.calls: list[tuple[str, int, Filters | None]] = []

    def _citations(self, question: str, k: int, filters: Filters | None) -> list[Citation]:
        words = {word.strip("?.,!").lower() for word in question.split()}
        found = []
        for pmid, paper in PAPERS.items():
            if filters and filters.pmids and pmid not in filters.pmids:
                continue
            if filters and filters.year_from and paper["year"] < filters.year_from:
                continue
            if words & paper["words"]:
                found.append((pmid, paper))
        return [
            Citation(
                n=n,
                pmid=pmid,
                title=paper["title"],
                year=paper["year"],
                url=f"https://pubmed.ncbi.nlm.nih.gov/{pmid}/",
                section=paper["section"],
                text=paper["text"],
                score=1.0 / n,
            )
            for n, (pmid, paper) in enumerate(found[:k], start=1)
        ]

    def ask(self, question: str, *, k: int = 5, filters: Filters | None = None) -> Answer:
        started = time.perf_counter()
        self.calls.append((question, k, filters))
        citations = self._citations(question, k, filters)
        if not citations:
            return Answer(
                answer="",
                abstained=True,
                citations=[],
                took_ms=(time.perf_counter() - started) * 1000,
                query=question,
                message=ABSTAIN_MESSAGE,
            )
        segments = [Segment(f"{' ' if i else ''}{c.text} ", [c.n]) for i, c in enumerate(citations)]
        return Answer(
            answer=joined(segments),
            segments=segments,
            abstained=False,
            citations=citations,
            took_ms=(time.perf_counter() - started) * 1000,
            query=question,
        )

    def ask_stream(
        self, question: str, *, k: int = 5, filters: Filters | None = None
    ) -> Iterator[AnswerEvent]:
        answer = self.ask(question, k=k, filters=filters)
        yield AnswerEvent("sources", {"citations": [c.to_dict() for c in answer.citations]})
        for citation in answer.citations:
            if self.delay:
                time.sleep(self.delay)
            yield AnswerEvent("delta", {"text": f"{citation.text} [{citation.n}] "})
        yield AnswerEvent("done", answer.to_dict())

    def paper(self, pmid: str) -> dict[str, Any] | None:
        paper = PAPERS.get(pmid)
        if paper is None:
            return None
        return {
            "pmid": pmid,
            "title": paper["title"],
            "journal": "Journal of Invented Medicine",
            "year": paper["year"],
            "authors": ["Doe J"],
            "doi": None,
            "mesh": [],
            "publication_types": [],
            "sections": [{"label": paper["section"], "category": None, "text": paper["text"]}],
            "is_seed": False,
            "cited_by_seed": True,
            "url": f"https://pubmed.ncbi.nlm.nih.gov/{pmid}/",
        }

    def stats(self) -> dict[str, Any]:
        return {
            "papers": len(PAPERS),
            "chunks": len(PAPERS),
            "sentences": len(PAPERS),
            "model": "fake",
            "built_at": "2024-01-01T00:00:00Z",
            "index_dir": "/nowhere",
        }


class FakeChat:
    """Stand-in for ``carqa.qa.chat.ChatService``: a follow-up is answered with the previous turn's
    question prepended, which is enough to observe that the session is used."""

    def __init__(self, engine: FakeEngine) -> None:
        self.engine = engine
        self.sessions: dict[str, list[str]] = {}
        self._lock = threading.Lock()

    def _turn(self, message: str, session_id: str | None) -> tuple[str, str]:
        with self._lock:
            if session_id is None or session_id not in self.sessions:
                session_id = session_id or uuid.uuid4().hex
                self.sessions[session_id] = []
            history = self.sessions[session_id]
            query = f"{history[-1]} {message}" if history else message
            history.append(message)
        return session_id, query

    def reply(
        self,
        message: str,
        session_id: str | None = None,
        *,
        k: int = 5,
        filters: Filters | None = None,
    ) -> tuple[str, Answer]:
        session_id, query = self._turn(message, session_id)
        return session_id, self.engine.ask(query, k=k, filters=filters)

    def reply_stream(
        self,
        message: str,
        session_id: str | None = None,
        *,
        k: int = 5,
        filters: Filters | None = None,
    ) -> Iterator[AnswerEvent]:
        session_id, query = self._turn(message, session_id)
        for event in self.engine.ask_stream(query, k=k, filters=filters):
            if event.type == "done":
                event = AnswerEvent("done", {**event.data, "session_id": session_id})
            yield event


class BrokenChat(FakeChat):
    """A chat service whose stream fails half-way, as a bug in the engine would."""

    def reply_stream(
        self,
        message: str,
        session_id: str | None = None,
        *,
        k: int = 5,
        filters: Filters | None = None,
    ) -> Iterator[AnswerEvent]:
        yield AnswerEvent("sources", {"citations": []})
        raise RuntimeError("boom")
