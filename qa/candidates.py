"""Where the papers a question is scored on come from: the candidate step of retrieval.

:class:`carqa.qa.retrieve.HybridRetriever` ranks papers in two stages. The first picks a few
dozen *candidates* — the best papers by similarity to their centroid (the mean of their sentence
vectors) and the best by BM25 — with their centroid and BM25 scores; the second scores the
candidates' sentences exactly and fuses. Only the first stage ever looks at the whole corpus, so
it is the seam behind a :class:`CandidateSource` Protocol:

- :class:`ExactSource` scores every paper (one matrix-vector product, BM25 of every paper) and
  takes the best: the reference, and the faster path for small corpora;
- :class:`AnnSource` asks an approximate FAISS index over the centroids (HNSW or IVF, chosen by
  size in :mod:`carqa.index.search.vectors`) and reads BM25 from the postings of the question's
  terms only, so its cost follows the number of candidates, not the number of papers. With the
  postings a build writes (:mod:`carqa.index.search.postings`), common terms are read from their
  impact-ordered heads only and the best sums re-scored exactly.

Both return the same thing for the same question whenever the approximate search finds the true
nearest centroids: filters are applied exactly (a bitmap the FAISS search skips through), ties
are broken the same way (the lower paper position first) and the scores of the chosen papers
are recomputed exactly. Another engine (a vector database) fits by implementing
:meth:`CandidateSource.candidates`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import faiss
import numpy as np
from carqa.index.search.postings import Postings, top_k
from carqa.index.search.vector_files import RowFile
from carqa.qa.lexical import EXPANSION_WEIGHT, LexicalIndex, Query
from carqa.qa.types import Filters

OVERFETCH = 2
"""The approximate search fetches this many times ``k`` papers, re-scores them exactly and keeps
``k``: near-ties (replicated texts, equal centroids) then resolve as the exact path does."""


@dataclass(frozen=True)
class Candidates:
    """Papers for the sentence stage, ascending by position, with their first-stage scores."""

    papers: np.ndarray  # int64 paper positions (in the retriever's sorted-pmid order)
    centroid: np.ndarray  # float32 cosine of the question with each paper's centroid
    lexical: np.ndarray  # float32 BM25 of each paper (0 when it has none of the terms)
    lexical_max: float  # the best BM25 of the whole corpus: the scale of the relative term


class CandidateSource(Protocol):
    """Chooses the candidates of one question (see the module doc)."""

    name: str

    def candidates(
        self,
        query: Query,
        vector: np.ndarray,
        k: int,
        allowed: np.ndarray | None,
        filters: Filters | None = None,
    ) -> Candidates:
        """The best ``k`` papers by centroid and the best ``k`` by BM25, among the papers
        ``allowed`` (a boolean mask by position; None: all), all of them when at most ``2k``
        pass. ``filters``: the filters ``allowed`` was made from, for an engine that applies
        them itself (a search server filters by its own fields, not by a mask)."""
        ...


def _lookup(papers: np.ndarray, sparse: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """The sparse BM25 scores of ``papers`` (0 for papers without the terms)."""
    ids, values = sparse
    if not len(ids):
        return np.zeros(len(papers), dtype=np.float32)
    at = np.minimum(np.searchsorted(ids, papers), len(ids) - 1)
    return np.where(ids[at] == papers, values[at], 0.0).astype(np.float32)


class ExactSource:
    """Every paper scored: centroid cosines by one product, BM25 of every paper."""

    name = "exact"

    def __init__(self, centroids: np.ndarray, lexical: LexicalIndex) -> None:
        self.centroids = centroids
        self.lexical = lexical

    def candidates(
        self,
        query: Query,
        vector: np.ndarray,
        k: int,
        allowed: np.ndarray | None,
        filters: Filters | None = None,
    ) -> Candidates:
        n = len(self.centroids)
        centroid = np.asarray(self.centroids @ vector, dtype=np.float32)
        lexical = self.lexical.scores(query) if n else np.zeros(0, np.float32)
        pool = np.arange(n, dtype=np.int64) if allowed is None else np.flatnonzero(allowed)
        if len(pool) <= 2 * k:
            chosen = pool
        else:
            chosen = np.union1d(
                top_k(centroid[pool], pool, k), top_k(lexical[pool], pool, k)
            ).astype(np.int64)
        return Candidates(
            papers=chosen,
            centroid=centroid[chosen],
            lexical=lexical[chosen],
            lexical_max=float(lexical.max()) if n else 0.0,
        )


class AnnSource:
    """Candidates from an approximate index over the centroids plus BM25 from the postings."""

    name = "ann"

    def __init__(self, centroids: np.ndarray, lexical: LexicalIndex, ann: Any) -> None:
        self.centroids = centroids  # may be a memory map: only the candidates' rows are read
        self._rows = RowFile.of(centroids)  # read by pread (see RowFile)
        self.lexical = lexical
        self.ann = ann

    def candidates(
        self,
        query: Query,
        vector: np.ndarray,
        k: int,
        allowed: np.ndarray | None,
        filters: Filters | None = None,
    ) -> Candidates:
        postings = getattr(self.lexical, "postings", None)
        if postings is not None:  # postings written by the build: pruned top-k, exact lookups
            return self._from_postings(postings, query, vector, k, allowed)
        sparse = self.lexical.sparse_scores(query)
        lexical_max = float(sparse[1].max(initial=0.0))
        if allowed is not None and int(allowed.sum()) <= 2 * k:
            pool = np.flatnonzero(allowed)
            return self._scored(pool, vector, sparse, lexical_max)
        # Lexical: the best k of the papers that have a term (the others all score 0).
        ids, values = sparse
        if allowed is not None:
            keep = allowed[ids]
            ids, values = ids[keep], values[keep]
        chosen = self._with_dense(top_k(values, ids, k), vector, k, allowed)
        return self._scored(chosen, vector, sparse, lexical_max)

    def _from_postings(
        self,
        postings: Postings,
        query: Query,
        vector: np.ndarray,
        k: int,
        allowed: np.ndarray | None,
    ) -> Candidates:
        """As :meth:`candidates`, BM25 from the build's postings: the best ``k`` from the heads
        of common terms re-scored exactly (:meth:`Postings.top`), every candidate's BM25 by
        lookup. Never an array of every paper."""
        weighted = [(token, 1.0) for token in query.own]
        weighted += [(token, EXPANSION_WEIGHT) for token in query.extra]
        terms = postings.weighted(weighted)
        if allowed is not None and int(allowed.sum()) <= 2 * k:
            chosen = np.flatnonzero(allowed)
            best = postings.top(terms, k).best
        else:
            found = postings.top(terms, k, allowed)
            chosen, best = self._with_dense(found.papers, vector, k, allowed), found.best
        return Candidates(
            papers=chosen,
            centroid=self._centroid(chosen, vector),
            lexical=postings.lookup(chosen, terms),
            lexical_max=best,
        )

    def _with_dense(
        self, lexical_top: np.ndarray, vector: np.ndarray, k: int, allowed: np.ndarray | None
    ) -> np.ndarray:
        """The candidates: the lexical best ``k`` (topped up with papers scoring 0, lowest
        first, when fewer than ``k`` share a term) and the dense best ``k`` (the approximate
        index asked for more than ``k``, re-scored exactly), ascending."""
        n = len(self.centroids)
        if len(lexical_top) < k:
            lexical_top = np.union1d(
                lexical_top, _first_zero(n, lexical_top, allowed, k - len(lexical_top))
            )
        found = self._search(vector, min(n, OVERFETCH * k), allowed)
        dense_top = top_k(self._centroid(found, vector), found, k)
        return np.union1d(dense_top, lexical_top).astype(np.int64)

    def _centroid(self, papers: np.ndarray, vector: np.ndarray) -> np.ndarray:
        if not len(papers):
            return np.zeros(0, dtype=np.float32)
        return np.asarray(np.take(self._rows, papers, axis=0) @ vector, dtype=np.float32)

    def _scored(
        self,
        papers: np.ndarray,
        vector: np.ndarray,
        sparse: tuple[np.ndarray, np.ndarray],
        lexical_max: float,
    ) -> Candidates:
        return Candidates(
            papers=papers,
            centroid=self._centroid(papers, vector),
            lexical=_lookup(papers, sparse),
            lexical_max=lexical_max,
        )

    def _search(self, vector: np.ndarray, k: int, allowed: np.ndarray | None) -> np.ndarray:
        """Paper positions the approximate index finds nearest (ascending)."""
        if k <= 0:
            return np.zeros(0, dtype=np.int64)
        query = np.ascontiguousarray(vector, dtype=np.float32).reshape(1, -1)
        params = None
        if allowed is not None:
            bitmap = np.packbits(allowed, bitorder="little")
            selector = faiss.IDSelectorBitmap(len(allowed), faiss.swig_ptr(bitmap))
            params = _search_parameters(self.ann, selector)
            _, ids = self.ann.search(query, k, params=params)
        else:
            _, ids = self.ann.search(query, k)
        found = ids[0]
        return np.unique(found[found >= 0]).astype(np.int64)


def _search_parameters(index: Any, selector: Any) -> Any:
    """FAISS search parameters carrying ``selector`` and the index's own search depth."""
    try:
        ivf = faiss.extract_index_ivf(index)
    except RuntimeError:
        ivf = None
    if ivf is not None:
        return faiss.SearchParametersIVF(sel=selector, nprobe=ivf.nprobe)
    hnsw = faiss.downcast_index(index)
    if hasattr(hnsw, "hnsw"):
        return faiss.SearchParametersHNSW(sel=selector, efSearch=hnsw.hnsw.efSearch)
    return faiss.SearchParameters(sel=selector)


def _first_zero(n: int, scored: np.ndarray, allowed: np.ndarray | None, want: int) -> np.ndarray:
    """The ``want`` lowest positions that are allowed and not in ``scored`` (papers with BM25 0,
    in the order the exact path's tie-break takes them)."""
    if want <= 0:
        return np.zeros(0, dtype=np.int64)
    taken = set(scored.tolist())
    out: list[int] = []
    for position in range(n):
        if position in taken or (allowed is not None and not allowed[position]):
            continue
        out.append(position)
        if len(out) >= want:
            break
    return np.array(out, dtype=np.int64)
