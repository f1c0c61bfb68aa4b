"""Hybrid retrieval: dense (sentence vectors) + lexical (BM25) evidence, ranked per paper.

The unit we rank is the *paper*: an answer cites papers, and ranking papers (not chunks) means one
long abstract cannot crowd the others out of the top k. Each paper gets three scores:

- ``dense``: the best cosine similarity between the question and one of its sentences (the
  sentence vectors are computed at build time; per question this is one matrix-vector product);
- ``centroid``: similarity to the mean of its sentence vectors — what the abstract is about as a
  whole, which complements the single best sentence. A paper without abstract has no
  sentences; its title vector (the vector of its one, title-only chunk) stands in, so dense
  retrieval still finds it by its title;
- ``lexical``: BM25 over title + abstract + MeSH headings, with the question expanded by the
  CAR T lexicon. The MeSH headings name a paper's topic in controlled vocabulary, often in
  the words a question uses where the abstract uses others; adding them lifted recall@1 on the
  PubMedQA dev questions from 0.99 to 0.998.

Chunk vectors (runs of sentences with the title, in the FAISS chunk index) are not a ranking
signal: a chunk score weighted like the centroid's cost two questions of recall@1 on the PubMedQA
dev questions (0.994 vs 0.998 without it, both corpora, int8 question encoder; the loss is in one
half of the even/odd split, the other half is unchanged), and reading the chunk vectors was a
sixth of the answering time.

Fusion: reciprocal rank fusion of the dense and lexical rankings (each contributes
``w / (K + rank)``; no calibration needed across rankers) plus a weighted sum of the scores
themselves, which decides between papers RRF puts close together by *how much* better one is.
On the PubMedQA dev questions the score term is what lifts recall@1 from 0.98 (RRF alone) to
0.99; weights were tuned there with two-fold cross-validation (docs/benchmarks.md, "Answer
quality").

Filters (year range, a pmid set to keep or to leave out, cited-by-seed only, with or without the
seed review) are a mask applied before ranking, so the top k are always k papers that pass them.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import dataclass, field
from threading import Lock
from typing import Any, Protocol

import numpy as np
from carqa.qa.lexical import LexicalIndex, query_tokens
from carqa.qa.lexicon import Lexicon, default_lexicon
from carqa.qa.priors import sentence_priors
from carqa.qa.types import Filters

RRF_K = 30
RRF_WEIGHTS = {"dense": 1.0, "lexical": 1.5}
SCORE_WEIGHTS = {
    "dense": 1.0,
    "centroid": 0.5,
    "lexical": 0.05,
    "lexical_relative": 0.2,
}
SCORE_SCALE = 0.1
"""Weight of the score sum against the RRF term."""
CANDIDATES = 30
"""Papers taken from each cheap ranking (centroid, BM25) for the sentence-level stage."""


class IndexLike(Protocol):
    """What retrieval needs from :class:`carqa.index.search.reader.Index` (a Protocol, so tests can
    pass a small stand-in)."""

    papers: dict[str, Any]
    sentences: list[Any]
    chunks: list[Any]
    sentence_matrix: np.ndarray

    def encode_query(self, text: str) -> np.ndarray: ...

    def chunk_vectors(self, ids: list[int]) -> np.ndarray: ...


@dataclass(frozen=True)
class PaperHit:
    """One ranked paper and the scores behind its rank."""

    pmid: str
    rank: int
    score: float
    dense: float
    centroid: float
    lexical: float


@dataclass
class Retrieval:
    """Everything retrieval learned about one question; evidence selection reads from it."""

    query: str
    vector: np.ndarray
    papers: list[PaperHit]
    sentence_scores: np.ndarray  # cosine of the question with every sentence, by sentence id
    best_similarity: float  # best cosine of a sentence of ≥ 4 words, among candidates
    coverage: float  # idf share of the question's terms found in the top paper
    terms: int  # how many distinct terms the question has (stop words removed, stemmed)
    confidence: float  # what abstention thresholds: best_similarity + w * coverage
    # Milliseconds: "encode" (the question's vector; ~0 when cached), "rank" (the rest).
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def pmids(self) -> list[str]:
        return [hit.pmid for hit in self.papers]


COVERAGE_WEIGHT = 0.4
"""Weight of ``coverage`` in ``confidence`` (see :mod:`carqa.qa.answer`, "Abstention")."""
MIN_EVIDENCE_WORDS = 4
"""Sentences shorter than this many words ("Melbourne, Australia.", "Case series.",
"Japan.": study settings and design labels) do not count towards ``best_similarity``: such a
fragment can be close to a question about something else entirely ("What is the capital of
Australia?" scored 0.59 on it) while saying nothing that could answer it. They still rank."""


def _substantive(rows: Any) -> np.ndarray:
    """Which rows (objects with ``.text``) have at least ``MIN_EVIDENCE_WORDS`` words."""
    return np.array(
        [len((getattr(row, "text", "") or "").split()) >= MIN_EVIDENCE_WORDS for row in rows],
        dtype=bool,
    )


def _ranks(scores: np.ndarray) -> np.ndarray:
    """0-based rank of every entry (0 = highest score)."""
    order = np.argsort(-scores, kind="stable")
    ranks = np.empty(len(scores), dtype=np.float32)
    ranks[order] = np.arange(len(scores), dtype=np.float32)
    return ranks


class _Groups:
    """Rows (sentences) grouped by paper: ``rows_of(p)`` and per-paper maxima over
    any subset of papers, without touching the rows of the others."""

    def __init__(self, owner: np.ndarray, n_papers: int) -> None:
        valid = owner >= 0
        order = np.argsort(owner, kind="stable")
        self.order = order[valid[order]]
        counts = np.bincount(owner[valid], minlength=n_papers)
        self.offsets = np.zeros(n_papers + 1, dtype=np.int64)
        np.cumsum(counts, out=self.offsets[1:])

    def rows_of(self, paper: int) -> np.ndarray:
        return self.order[self.offsets[paper] : self.offsets[paper + 1]]

    def max_over(
        self, papers: np.ndarray, matrix: np.ndarray, vector: np.ndarray, out: np.ndarray
    ) -> np.ndarray:
        """Cosine of ``vector`` with the rows of ``papers``; writes each paper's best into
        ``out[papers]`` (papers without rows keep their value). Returns (row ids, cosines)."""
        starts = self.offsets[papers]
        lengths = self.offsets[papers + 1] - starts
        keep = lengths > 0
        papers, starts, lengths = papers[keep], starts[keep], lengths[keep]
        if not len(papers):
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
        # Row ids of all selected papers, concatenated (vectorised np.r_ of the ranges).
        segment = np.repeat(np.cumsum(lengths) - lengths, lengths)
        positions = np.repeat(starts, lengths) + (np.arange(lengths.sum()) - segment)
        rows = self.order[positions]
        # np.take copies the rows a little faster than fancy indexing (0.30 vs 0.34 ms for a
        # question's ~600 sentence rows, cold caches, on the 2-core machine).
        cosines = np.take(matrix, rows, axis=0) @ vector
        out[papers] = np.maximum.reduceat(cosines, np.cumsum(lengths) - lengths)
        return rows, cosines


class HybridRetriever:
    """Ranks the papers of one opened index for a question. Build once per index (it tokenizes
    every paper for BM25 and precomputes per-paper structures); ``retrieve`` is then cheap.

    Two stages keep a question to a few milliseconds on a laptop: cheap whole-corpus scores
    (BM25, similarity to each paper's centroid) pick ``CANDIDATES`` papers each; sentence
    similarities are computed for those papers only. On the PubMedQA dev questions the
    source paper was always among the candidates (the top 30 of either list).
    """

    def __init__(self, index: IndexLike, *, lexicon: Lexicon | None = None) -> None:
        self.index = index
        self.pmids: list[str] = sorted(index.papers)
        self.position = {pmid: i for i, pmid in enumerate(self.pmids)}
        n_papers = len(self.pmids)

        sentences = index.sentences
        self.sentence_owner = np.array(
            [self.position.get(s.pmid, -1) for s in sentences], dtype=np.int64
        )
        self._sentences = _Groups(self.sentence_owner, n_papers)
        self._sentence_substantive = _substantive(sentences)
        self.sentence_priors = sentence_priors(sentences)
        self._matrix = np.ascontiguousarray(index.sentence_matrix, dtype=np.float32)
        dim = self._matrix.shape[1] if self._matrix.ndim == 2 else 0

        centroids = np.zeros((n_papers, dim), np.float32)
        valid = self.sentence_owner >= 0
        if valid.any():
            np.add.at(centroids, self.sentence_owner[valid], self._matrix[valid])
        for paper, vector in _title_only_vectors(index, self.position, self._sentences).items():
            centroids[paper] = vector
        norms = np.linalg.norm(centroids, axis=1, keepdims=True)
        self._centroids = centroids / np.where(norms > 0, norms, 1.0)

        paper_texts = []
        for p, pmid in enumerate(self.pmids):
            meta = index.papers[pmid]
            title = getattr(meta, "title", None) or ""
            texts = [sentences[i].text for i in self._sentences.rows_of(p).tolist()]
            mesh = " ; ".join(getattr(meta, "mesh", None) or [])
            paper_texts.append(" ".join([title, *texts, mesh]).strip())
        self.lexical = LexicalIndex(
            paper_texts, lexicon=lexicon if lexicon is not None else default_lexicon()
        )

        def flag(name: str) -> np.ndarray:
            return np.array(
                [bool(getattr(index.papers[p], name, False)) for p in self.pmids], dtype=bool
            )

        self._years = np.array(
            [getattr(index.papers[p], "year", None) or -1 for p in self.pmids], dtype=np.int64
        )
        self._is_seed = flag("is_seed")
        self._cited = flag("cited_by_seed")
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self._cache_lock = Lock()

    # -- query encoding -------------------------------------------------------------------

    def encode(self, text: str, *, cache_size: int = 1024) -> np.ndarray:
        """The question's vector, from a small LRU cache (chat and the API repeat questions)."""
        with self._cache_lock:
            vector = self._cache.get(text)
            if vector is not None:
                self._cache.move_to_end(text)
                return vector
        vector = np.asarray(self.index.encode_query(text), dtype=np.float32).reshape(-1)
        with self._cache_lock:
            self._cache[text] = vector
            while len(self._cache) > cache_size:
                self._cache.popitem(last=False)
        return vector

    # -- filters ----------------------------------------------------------------------------

    def mask(self, filters: Filters | None) -> np.ndarray:
        """Which papers pass ``filters`` (all of them for None). Years are inclusive; a paper
        without a year fails any year bound."""
        allowed = np.ones(len(self.pmids), dtype=bool)
        if filters is None:
            return allowed
        if filters.year_from is not None or filters.year_to is not None:
            allowed &= self._years >= 0  # no year (stored as -1), whatever the bound says
        if filters.year_from is not None:
            allowed &= self._years >= filters.year_from
        if filters.year_to is not None:
            allowed &= self._years <= filters.year_to
        if filters.pmids is not None:
            wanted = np.zeros(len(self.pmids), dtype=bool)
            wanted[self._positions(filters.pmids)] = True
            allowed &= wanted
        allowed[self._positions(filters.exclude_pmids or [])] = False
        if filters.cited_only:
            allowed &= self._cited | self._is_seed
        if not filters.include_seed:
            allowed &= ~self._is_seed
        return allowed

    def _positions(self, pmids: list[str]) -> list[int]:
        """Paper positions of ``pmids``; unknown ones are ignored."""
        found = (self.position.get(str(pmid).strip()) for pmid in pmids)
        return [position for position in found if position is not None]

    # -- ranking -----------------------------------------------------------------------------

    def candidates(
        self, centroid: np.ndarray, lexical: np.ndarray, allowed: np.ndarray
    ) -> np.ndarray:
        """Papers worth a closer look: the best ``CANDIDATES`` by centroid and by BM25."""
        pool = np.flatnonzero(allowed)
        if len(pool) <= 2 * CANDIDATES:
            return pool
        chosen = np.zeros(len(allowed), dtype=bool)
        for scores in (centroid, lexical):
            chosen[pool[np.argpartition(-scores[pool], CANDIDATES - 1)[:CANDIDATES]]] = True
        return np.flatnonzero(chosen)

    def paper_scores(
        self, question: str, vector: np.ndarray, allowed: np.ndarray | None = None
    ) -> dict[str, np.ndarray]:
        """Per-paper dense / centroid / lexical scores (dense is -1 outside the candidates), the
        candidates, the sentence cosines (-1 where not computed), and ``best``: the best cosine
        of a candidate's sentence of at least ``MIN_EVIDENCE_WORDS`` words (what abstention
        looks at)."""
        n_papers = len(self.pmids)
        if allowed is None:
            allowed = np.ones(n_papers, dtype=bool)
        centroid = (self._centroids @ vector).astype(np.float32)
        lexical = self.lexical.scores(question) if n_papers else np.zeros(0, np.float32)
        candidates = self.candidates(centroid, lexical, allowed)

        dense = np.full(n_papers, -1.0, dtype=np.float32)
        sentence_scores = np.full(len(self.sentence_owner), -1.0, dtype=np.float32)
        rows, cosines = self._sentences.max_over(candidates, self._matrix, vector, dense)
        sentence_scores[rows] = cosines
        best = float(cosines[self._sentence_substantive[rows]].max(initial=-1.0))
        return {
            "best": np.array([best], dtype=np.float32),
            "sentences": sentence_scores,
            "candidates": candidates,
            "dense": dense,
            "centroid": centroid,
            "lexical": lexical,
        }

    def fuse(self, scores: dict[str, np.ndarray]) -> np.ndarray:
        """RRF of the dense and lexical rankings + a weighted score sum, over the candidates
        (everything else is -inf)."""
        fused = np.full(len(self.pmids), -np.inf, dtype=np.float64)
        candidates = scores["candidates"]
        if not len(candidates):
            return fused
        lexical = scores["lexical"][candidates]
        value = np.zeros(len(candidates), dtype=np.float64)
        for name, weight in RRF_WEIGHTS.items():
            value += weight / (RRF_K + _ranks(scores[name][candidates]))
        top_lexical = float(scores["lexical"].max())
        summed = (
            SCORE_WEIGHTS["dense"] * scores["dense"][candidates]
            + SCORE_WEIGHTS["centroid"] * scores["centroid"][candidates]
            + SCORE_WEIGHTS["lexical"] * lexical
            + SCORE_WEIGHTS["lexical_relative"] * lexical / max(top_lexical, 1e-6)
        )
        fused[candidates] = value + SCORE_SCALE * summed
        return fused

    def retrieve(self, question: str, *, k: int = 10, filters: Filters | None = None) -> Retrieval:
        """The top ``k`` papers for ``question`` that pass ``filters``."""
        started = time.perf_counter()
        vector = self.encode(self.lexical.dense_query(question))
        encoded = time.perf_counter()
        allowed = self.mask(filters)
        scores = self.paper_scores(question, vector, allowed)
        fused = self.fuse(scores)
        candidates = scores["candidates"]
        k = max(0, min(k, len(candidates)))
        top = candidates[np.argsort(-fused[candidates], kind="stable")[:k]]
        hits = [
            PaperHit(
                pmid=self.pmids[p],
                rank=rank,
                score=float(fused[p]),
                dense=float(scores["dense"][p]),
                centroid=float(scores["centroid"][p]),
                lexical=float(scores["lexical"][p]),
            )
            for rank, p in enumerate(top.tolist())
        ]
        best_similarity = float(scores["best"][0]) if len(candidates) else -1.0
        coverage = float(self.lexical.coverage(question, top[:1].tolist())[0]) if k else 0.0
        return Retrieval(
            query=question,
            vector=vector,
            papers=hits,
            sentence_scores=scores["sentences"],
            best_similarity=best_similarity,
            coverage=coverage,
            terms=len(set(query_tokens(question))),
            confidence=best_similarity + COVERAGE_WEIGHT * coverage,
            timings={
                "encode": (encoded - started) * 1000,
                "rank": (time.perf_counter() - encoded) * 1000,
            },
        )

    def paper_sentences(self, pmid: str) -> np.ndarray:
        """Global ids of the sentences of one paper, in abstract order."""
        position = self.position.get(pmid)
        if position is None:
            return np.zeros(0, dtype=np.int64)
        return self._sentences.rows_of(position)


def _title_only_vectors(
    index: IndexLike, position: dict[str, int], sentences: _Groups
) -> dict[int, np.ndarray]:
    """Paper position → title vector, for the papers without sentences (no abstract): the
    vector of the paper's first chunk, which for such a paper holds its title only."""
    first_chunk: dict[int, int] = {}
    for chunk in getattr(index, "chunks", []):
        paper = position.get(chunk.pmid)
        if paper is None or paper in first_chunk or len(sentences.rows_of(paper)):
            continue
        first_chunk[paper] = int(chunk.id)
    if not first_chunk:
        return {}
    vectors = np.asarray(index.chunk_vectors(list(first_chunk.values())), dtype=np.float32)
    return dict(zip(first_chunk, vectors, strict=True))
