"""carqa as a LangChain retriever, to plug the hybrid search into your own chains.

``CarqaRetriever(engine=Engine.open(settings), k=4).invoke("...")`` returns one ``Document`` per
paper, best first (the same per-paper ranking the answers use), with the abstract as
``page_content`` and everything needed to cite it in ``metadata``. ``k`` can also be given per
call: ``retriever.invoke(query, k=2)``. With ``abstain=True`` a question the corpus does not
answer (see :mod:`carqa.qa.answer`) returns no documents instead of the least bad ones.

``filters`` (on the retriever or per call) is a :class:`carqa.qa.types.Filters` or a dict of its
fields. Per-call ``k`` and ``filters`` work on the async path (``ainvoke``) too.
"""

from __future__ import annotations

from typing import Any

from carqa.index.corpus.models import PUBMED_URL
from carqa.qa import answer as extractive
from carqa.qa.types import Filters
from langchain_core.callbacks import (
    AsyncCallbackManagerForRetrieverRun,
    CallbackManagerForRetrieverRun,
)
from langchain_core.documents import Document
from langchain_core.retrievers import BaseRetriever
from langchain_core.runnables.config import run_in_executor
from pydantic import ConfigDict, field_validator

from carqa.errors import InputError


class CarqaRetriever(BaseRetriever):
    """LangChain retriever over a :class:`carqa.qa.engine.Engine` (see the module doc)."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    engine: Any
    """A :class:`carqa.qa.engine.Engine` (typed loosely so pydantic need not know the class)."""
    k: int = 4
    filters: Filters | None = None
    abstain: bool = False

    @field_validator("filters", mode="before")
    @classmethod
    def _coerce_filters(cls, value: Any) -> Filters | None:
        try:
            return Filters.coerce(value)
        except InputError as error:
            raise ValueError(str(error)) from None

    async def _aget_relevant_documents(
        self,
        query: str,
        *,
        run_manager: AsyncCallbackManagerForRetrieverRun,
        **kwargs: Any,
    ) -> list[Document]:
        """The sync search in an executor. Overridden because BaseRetriever's default passes
        the call's keyword arguments (``k``, ``filters``) on to a method that accepts none,
        so ``ainvoke(q, k=2)`` was a TypeError."""
        return await run_in_executor(
            None,
            self._get_relevant_documents,
            query,
            run_manager=run_manager.get_sync(),
            **kwargs,
        )

    def _get_relevant_documents(
        self,
        query: str,
        *,
        run_manager: CallbackManagerForRetrieverRun | None = None,
        **kwargs: Any,
    ) -> list[Document]:
        k = self.k if kwargs.get("k") is None else int(kwargs["k"])
        filters = Filters.coerce(kwargs.get("filters", self.filters))
        retrieval = self.engine.retrieve(query, k=k, filters=filters)
        if self.abstain and extractive.should_abstain(retrieval):
            return []
        documents = []
        for hit in retrieval.papers[:k]:
            paper = self.engine.index.papers[hit.pmid]
            sections = self.engine.index.sections(hit.pmid)
            abstract = "\n".join(s.text for s in sections if s.text)
            best = extractive.ranked_sentences(
                self.engine.retriever, retrieval, hit.pmid, hit.rank, limit=1
            )
            documents.append(
                Document(
                    id=hit.pmid,
                    page_content=abstract or (paper.title or ""),
                    metadata={
                        "pmid": hit.pmid,
                        "title": paper.title,
                        "journal": paper.journal,
                        "year": paper.year,
                        "doi": paper.doi,
                        "url": PUBMED_URL.format(pmid=hit.pmid),
                        "rank": hit.rank,
                        "score": hit.score,
                        "is_seed": paper.is_seed,
                        "cited_by_seed": paper.cited_by_seed,
                        "relation": getattr(paper, "relation", None),
                        "publication_types": list(paper.publication_types),
                        "best_sentence": best[0].text if best else None,
                        "best_sentence_section": best[0].section if best else None,
                    },
                )
            )
        return documents
