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

Fusion (:mod:`carqa.qa.fusion`): the dense and lexical rankings are fused, then the candidates
are ranked a second time, towards the first paper's subject and the whole question.

Filters (year range, a pmid set to keep or to leave out, cited-by-seed only, with or without the
seed review) are a mask applied before ranking, so the top k are always k papers that pass them.

The work per question follows the number of candidates, not the corpus: the candidates come from
a :class:`carqa.qa.candidates.CandidateSource` (approximate search over paper centroids plus BM25
from the question's postings from ``ANN_FROM`` papers on; every paper scored below, where that is
faster), and only their sentences are scored. Both sources choose the same candidates whenever
the approximate search finds the nearest centroids, so they rank alike.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import dataclass, field
from threading import Lock
from typing import Any, Protocol

import numpy as np
from carqa.index.search import paper_vectors
from carqa.index.search.backends import PaperDocs, SearchBackend
from carqa.index.search.vector_files import RowFile
from carqa.qa import fusion
from carqa.qa.asking import without_list_frame
from carqa.qa.candidates import AnnSource, Candidates, CandidateSource, ExactSource
from carqa.qa.lexical import EXPANSION_WEIGHT, LexicalIndex, Query, tokenize
from carqa.qa.lexicon import Lexicon, default_lexicon
from carqa.qa.priors import sentence_priors
from carqa.qa.sentence_rows import Groups, SentenceScores
from carqa.qa.types import Filters

CANDIDATES = 30
"""Papers taken from each cheap ranking (centroid, BM25) for the sentence-level stage."""
ANN_FROM = 10_000
"""Papers from which candidates come from the approximate source (see the module doc). CPU time
of ranking one BioASQ question (the questions' vectors cached): 1.0 ms exact vs 1.4 ms
approximate at 1,000 papers, 8.9 ms vs 2.9 ms at 18,687 (``bench/scale.py``)."""


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
    sentence_scores: Any  # cosine by sentence id (SentenceScores: -1 outside the candidates)
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


class HybridRetriever:
    """Ranks the papers of one opened index for a question. Build once per index (it tokenizes
    every paper for BM25 and precomputes per-paper structures); ``retrieve`` is then cheap.

    Two stages keep a question to a few milliseconds: a :class:`CandidateSource` picks
    ``CANDIDATES`` papers by centroid and ``CANDIDATES`` by BM25; sentence similarities are
    computed for those papers only. On the PubMedQA dev questions the source paper was always
    among the candidates (the top 30 of either list).

    ``source``: "auto" (approximate from ``ann_from`` papers, exact below), "exact" or "ann";
    ``candidates``: papers taken from each of the two cheap rankings.
    """

    def __init__(
        self,
        index: IndexLike,
        *,
        lexicon: Lexicon | None = None,
        source: str = "auto",
        ann_from: int = ANN_FROM,
        candidates: int = CANDIDATES,
        backend: SearchBackend | None = None,
    ) -> None:
        self.index = index
        self.n_candidates = candidates
        self.pmids: list[str] = sorted(index.papers)
        self.position = {pmid: i for i, pmid in enumerate(self.pmids)}
        n_papers = len(self.pmids)

        sentences = index.sentences
        if hasattr(index, "sentence_owner"):  # one column read, no row objects
            self.sentence_owner = index.sentence_owner(self.position)
        else:
            self.sentence_owner = np.array(
                [self.position.get(s.pmid, -1) for s in sentences], dtype=np.int64
            )
        self._sentences = Groups(self.sentence_owner, n_papers)
        self._sentence_substantive = _substantive(sentences)
        self.sentence_priors = sentence_priors(sentences)
        # A memory-mapped file is read by rows (no copy, no mapping of what was not read).
        self._matrix = RowFile.of(index.sentence_matrix)
        stored = getattr(index, "paper_vectors", None)
        if stored is not None:
            self._centroids, ann = stored
            self._centroid_rows = RowFile.of(self._centroids)  # the candidates' rows only
        else:
            titles = _title_only_vectors(index, self.position, self._sentences)
            self._centroids = paper_vectors.centroids(
                self.pmids,
                [s.pmid for s in sentences],
                self._matrix,
                {self.pmids[p]: vector for p, vector in titles.items()},
            )
            self._centroid_rows = self._centroids
            ann = None

        postings = getattr(index, "postings", None)
        if postings is not None:  # written by the build, memory-mapped
            self.lexical = LexicalIndex.from_postings(
                postings, lexicon=lexicon if lexicon is not None else default_lexicon()
            )
        else:
            paper_texts = [self._paper_text(p) for p in range(n_papers)]
            self.lexical = LexicalIndex(
                paper_texts, lexicon=lexicon if lexicon is not None else default_lexicon()
            )
            del paper_texts

        if source not in ("auto", "exact", "ann"):
            raise ValueError(f"unknown candidate source {source!r}")
        self.source: CandidateSource
        if source == "ann" or (source == "auto" and n_papers >= ann_from):
            if ann is None:
                ann = paper_vectors.build_ann(np.asarray(self._centroids))
            self.source = AnnSource(self._centroids, self.lexical, ann)
        else:
            self.source = ExactSource(np.asarray(self._centroids), self.lexical)

        def flag(name: str) -> np.ndarray:
            return np.array(
                [bool(getattr(index.papers[p], name, False)) for p in self.pmids], dtype=bool
            )

        if hasattr(index, "paper_columns"):  # one pass, in the same sorted-pmid order
            columns = index.paper_columns()
            self._years = columns["year"]
            self._is_seed, self._cited = columns["is_seed"], columns["cited_by_seed"]
        else:
            self._years = np.array(
                [getattr(index.papers[p], "year", None) or -1 for p in self.pmids], dtype=np.int64
            )
            self._is_seed = flag("is_seed")
            self._cited = flag("cited_by_seed")
        if backend is not None:  # another engine answers the candidate step
            self.source = backend.source(self._paper_docs(), expansion_weight=EXPANSION_WEIGHT)
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self._cache_lock = Lock()

    def _paper_docs(self) -> PaperDocs:
        """What a search backend indexes per paper: the centroid, the BM25 terms (analysed here,
        as the embedded BM25 analyses them) and the filter fields."""
        return PaperDocs(
            pmids=self.pmids,
            centroids=np.asarray(self._centroids),
            terms=lambda p: tokenize(self._paper_text(p)),
            years=self._years,
            is_seed=self._is_seed,
            cited_by_seed=self._cited,
        )

    def _paper_text(self, paper: int) -> str:
        """What BM25 reads of a paper: title, abstract sentences, MeSH headings."""
        meta = self.index.papers[self.pmids[paper]]
        title = getattr(meta, "title", None) or ""
        sentences = self.index.sentences
        texts = [sentences[i].text for i in self._sentences.rows_of(paper).tolist()]
        mesh = " ; ".join(getattr(meta, "mesh", None) or [])
        return " ".join([title, *texts, mesh]).strip()

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
        if filters.relations is not None or filters.publication_types is not None:
            allowed &= np.array([filters.admits(self.index.papers[p]) for p in self.pmids], bool)
        return allowed

    def allowed(self, filters: Filters | None) -> np.ndarray | None:
        """:meth:`mask`, or None when it lets every paper through (then no paper-sized array
        is made for the question)."""
        if filters is None or filters == Filters():
            return None
        allowed = self.mask(filters)
        return None if allowed.all() else allowed

    def _positions(self, pmids: list[str]) -> list[int]:
        """Paper positions of ``pmids``; unknown ones are ignored."""
        found = (self.position.get(str(pmid).strip()) for pmid in pmids)
        return [position for position in found if position is not None]

    # -- ranking -----------------------------------------------------------------------------

    def paper_scores(
        self,
        query: Query | str,
        vector: np.ndarray,
        allowed: np.ndarray | None = None,
        filters: Filters | None = None,
    ) -> dict[str, Any]:
        """The candidates (ascending paper positions) and, aligned with them, their dense /
        centroid / lexical scores (dense is -1 for a candidate without sentences); the sentence
        cosines (:class:`SentenceScores`); ``lexical_max``, the best BM25 of the corpus; and
        ``best``: the best cosine of a candidate's sentence of at least ``MIN_EVIDENCE_WORDS``
        words (what abstention looks at)."""
        query = self.lexical.parse(query)
        if allowed is not None and allowed.all():
            allowed = None
        if self.pmids:
            found = self.source.candidates(query, vector, self.n_candidates, allowed, filters)
        else:
            empty = np.zeros(0, dtype=np.float32)
            found = Candidates(np.zeros(0, dtype=np.int64), empty, empty, 0.0)
        gathered = self._sentences.gather(found.papers, self._matrix)
        cosines = gathered.vectors @ vector
        dense, rows = gathered.best(cosines), gathered.rows
        best = float(cosines[self._sentence_substantive[rows]].max(initial=-1.0))
        lexical = np.asarray(found.lexical, dtype=np.float32)
        if query.expansion and len(lexical):  # a thing named twice counts once (lexical.py)
            lexical = np.maximum(lexical - self.lexical.double_counted(query, found.papers), 0)
        return {
            "best": best,
            "sentences": SentenceScores(rows, cosines, len(self.sentence_owner)),
            "candidates": found.papers,
            "dense": dense,
            "centroid": found.centroid,
            "lexical": lexical,
            "lexical_max": found.lexical_max,
            "gathered": gathered,  # the candidates' sentence vectors, for the second ranking
        }

    def fuse(self, scores: dict[str, Any]) -> np.ndarray:
        """One fused value per candidate (aligned with ``scores["candidates"]``)."""
        return fusion.fuse(scores)

    def with_feedback(
        self, scores: dict[str, Any], vector: np.ndarray, fused: np.ndarray
    ) -> dict[str, Any]:
        """``scores`` with the candidates' dense and centroid scores taken against the question's
        vector moved towards the best-fused candidate's centroid (:func:`fusion.moved`); the
        BM25 scores, the sentence cosines and ``best`` stay the question's own."""
        candidates = scores["candidates"]
        rows = np.take(self._centroid_rows, candidates, axis=0)
        moved = fusion.moved(vector, rows[int(np.argmax(fused))])
        if moved is None:
            return scores
        gathered = scores["gathered"]
        dense = gathered.best(gathered.vectors @ moved)
        return {**scores, "dense": dense, "centroid": (rows @ moved).astype(np.float32)}

    def retrieve(self, question: str, *, k: int = 10, filters: Filters | None = None) -> Retrieval:
        """The top ``k`` papers for ``question`` that pass ``filters``. A list question is
        searched without the words that only ask for a list ("List the four ...", "Name two
        ...": :func:`carqa.qa.asking.without_list_frame`); ``Retrieval.query`` is the text
        searched, so the answer's word checks read it too."""
        started = time.perf_counter()
        question = without_list_frame(question)
        query = self.lexical.parse(question)
        vector = self.encode(query.dense_text)
        encoded = time.perf_counter()
        scores = self.paper_scores(query, vector, self.allowed(filters), filters)
        fused = self.fuse(scores)
        candidates = scores["candidates"]
        covered = None
        if fusion.FEEDBACK_WEIGHT and len(candidates) > 1:
            covered = self.lexical.coverage(query, candidates)
            fused = fusion.ranked_again(self.with_feedback(scores, vector, fused), covered)
        k = max(0, min(k, len(candidates)))
        order = np.argsort(-fused, kind="stable")[:k]
        hits = self._hits(scores, fused, order)
        if not k:
            coverage = 0.0
        elif covered is not None:
            coverage = float(covered[order[0]])
        else:
            coverage = float(self.lexical.coverage(query, candidates[order[:1]].tolist())[0])
        best_similarity = scores["best"] if len(candidates) else -1.0
        return Retrieval(
            query=question,
            vector=vector,
            papers=hits,
            sentence_scores=scores["sentences"],
            best_similarity=best_similarity,
            coverage=coverage,
            terms=query.terms,
            confidence=best_similarity + COVERAGE_WEIGHT * coverage,
            timings={
                "encode": (encoded - started) * 1000,
                "rank": (time.perf_counter() - encoded) * 1000,
            },
        )

    def _hits(self, scores: dict[str, Any], fused: np.ndarray, order: np.ndarray) -> list[PaperHit]:
        """The candidates at ``order`` as hits: ``fused`` is their score, the rest their own
        scores against the question."""
        candidates = scores["candidates"]
        return [
            PaperHit(
                pmid=self.pmids[int(candidates[j])],
                rank=rank,
                score=float(fused[j]),
                dense=float(scores["dense"][j]),
                centroid=float(scores["centroid"][j]),
                lexical=float(scores["lexical"][j]),
            )
            for rank, j in enumerate(order.tolist())
        ]

    def paper_sentences(self, pmid: str) -> np.ndarray:
        """Global ids of the sentences of one paper, in abstract order."""
        position = self.position.get(pmid)
        if position is None:
            return np.zeros(0, dtype=np.int64)
        return self._sentences.rows_of(position)


def _title_only_vectors(
    index: IndexLike, position: dict[str, int], sentences: Groups
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


__all__ = ["HybridRetriever", "PaperHit", "Retrieval", "SentenceScores"]
