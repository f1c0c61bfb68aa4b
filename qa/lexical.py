"""Lexical retrieval: BM25 (``bm25s``) over whole papers, with lexicon expansion.

Why papers, not chunks: a question is usually about what a whole abstract reports, and its words
are spread over the title, methods and conclusion; scoring the paper as one document lets them
add up. The tokenizer (:mod:`carqa.index.search.terms`) is the build's, which writes the postings
of large indexes (:mod:`carqa.index.search.postings`).

Besides the BM25 score we compute *coverage*: the share of the question's term weight (idf) that
a paper contains, with terms the corpus has never seen counting at the highest idf. It is a
corpus-size-independent signal of "this paper is about what was asked" that abstention uses.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache

import bm25s
import numpy as np
from carqa.index.search.postings import Postings
from carqa.index.search.terms import STOPWORDS, tokenize  # noqa: F401 (re-exported)
from carqa.qa.lexicon import Lexicon

# bm25s sets its own logger to DEBUG when imported, which overrides the application's level:
# as soon as anything installs a root handler (onnxruntime's quantiser logs through the root
# logger during a build, which calls logging.basicConfig), every start printed
# "DEBUG:bm25s:Building index from tokens". NOTSET makes it follow the root level like any
# library's logger.
logging.getLogger("bm25s").setLevel(logging.NOTSET)

EXPANSION_WEIGHT = 0.5
"""Weight of lexicon-added terms relative to the question's own words."""


@lru_cache(maxsize=4096)
def query_tokens(question: str) -> tuple[str, ...]:
    """:func:`tokenize` for questions, cached: one question is analysed several times."""
    return tuple(tokenize(question))


@lru_cache(maxsize=1024)
def _term_pattern(term: str) -> re.Pattern[str]:
    """``term`` as a whole-word, case-insensitive pattern; hyphens, slashes and spaces alike."""
    parts = [re.escape(part) for part in re.split(r"[\s\-/]+", term.strip()) if part]
    return re.compile(r"(?<!\w)" + r"[\s\-/]+".join(parts) + r"(?!\w)", re.IGNORECASE)


@dataclass(frozen=True)
class Query:
    """A question analysed once (:meth:`LexicalIndex.parse`) and passed down to every stage:
    its own terms, the terms the lexicon adds, the lexicon groups it names and the text the
    dense encoder reads. Building it is the only place the question is tokenized."""

    text: str
    own: tuple[str, ...]  # the question's terms, de-duplicated, in order
    extra: tuple[str, ...]  # terms the lexicon adds (not among ``own``)
    groups: tuple[int, ...]  # lexicon groups the question names
    dense_text: str  # what to embed (see :meth:`LexicalIndex.dense_query`)

    @property
    def terms(self) -> int:
        return len(self.own)


class LexicalIndex:
    """BM25 over one text per paper (title + abstract + MeSH headings), in the order given.

    ``paper_tokens(position)`` gives a paper's tokens back for :meth:`coverage` (read for the
    top paper only); without it each paper's token set is kept in memory, which at a million
    papers is several GB."""

    def __init__(
        self,
        texts: Sequence[str],
        *,
        lexicon: Lexicon | None = None,
        k1: float = 1.2,
        b: float = 0.75,
        paper_tokens: Callable[[int], Sequence[str]] | None = None,
    ) -> None:
        self.lexicon = lexicon
        self.size = len(texts)
        token_lists = [tokenize(text) for text in texts]
        self._bm25 = bm25s.BM25(k1=k1, b=b, method="lucene")
        # bm25s needs one non-empty document to build its matrices.
        self._bm25.index(
            token_lists if any(token_lists) else [["\x00"]] * max(1, self.size),
            show_progress=False,
        )
        self._vocab: dict[str, int] = self._bm25.vocab_dict
        document_frequency: dict[str, int] = {}
        for tokens in token_lists:
            for token in set(tokens):
                document_frequency[token] = document_frequency.get(token, 0) + 1
        self._idf = {
            token: math.log(1 + (self.size - df + 0.5) / (df + 0.5))
            for token, df in document_frequency.items()
        }
        self._unseen_idf = math.log(1 + (self.size + 0.5) / 0.5)
        if paper_tokens is None:
            kept = [frozenset(tokens) for tokens in token_lists]
            self._paper_tokens: Callable[[int], frozenset[str]] = kept.__getitem__
        else:
            self._paper_tokens = lambda paper: frozenset(paper_tokens(paper))
        self.postings: Postings | None = None
        postings = self._bm25.scores
        self._data = np.asarray(postings["data"])
        self._indices = np.asarray(postings["indices"])
        self._indptr = np.asarray(postings["indptr"])

    @classmethod
    def from_postings(
        cls,
        postings: Postings,
        *,
        lexicon: Lexicon | None = None,
        paper_tokens: Callable[[int], Sequence[str]],
    ) -> LexicalIndex:
        """BM25 over the postings a build wrote (memory-mapped; nothing is tokenized here)."""
        self = cls.__new__(cls)
        self.lexicon = lexicon
        self.size = postings.size
        self.postings = postings
        self._bm25 = None
        self._vocab = postings.vocab
        self._idf = {
            token: math.log(1 + (self.size - df + 0.5) / (df + 0.5))
            for token, df in postings.document_frequency().items()
        }
        self._unseen_idf = math.log(1 + (self.size + 0.5) / 0.5)
        self._paper_tokens = lambda paper: frozenset(paper_tokens(paper))
        self._data, self._indices, self._indptr = postings.scores, postings.docs, postings.indptr
        return self

    def parse(self, question: str | Query) -> Query:
        """The question analysed for every stage of retrieval (see :class:`Query`)."""
        if isinstance(question, Query):
            return question
        own = tuple(dict.fromkeys(query_tokens(question)))
        groups: tuple[int, ...] = ()
        extra: list[str] = []
        if self.lexicon is not None:
            groups = tuple(self.lexicon.matched_groups(question))
            expansions = self.lexicon.expansions(question)
            if expansions:
                seen = set(own)
                for token in query_tokens(" ; ".join(expansions)):
                    if token not in seen:
                        seen.add(token)
                        extra.append(token)
        query = Query(question, own, tuple(extra), groups, question)
        dense = self._dense_text(query)
        return query if dense == question else Query(question, own, tuple(extra), groups, dense)

    def query_terms(self, question: str | Query) -> tuple[list[str], list[str]]:
        """(the question's own terms, the terms the lexicon adds), de-duplicated."""
        query = self.parse(question)
        return list(query.own), list(query.extra)

    def bridge_terms(self, question: str | Query) -> list[tuple[str, str]]:
        """Names the corpus uses for things the question names in words the corpus never uses.

        The embedding model does not know that "Kymriah" is tisagenlecleucel. When a lexicon
        term in the question is unknown to the whole corpus, returns (the term as the question
        spells it, the first equivalent term the corpus does contain); see :meth:`dense_query`.
        """
        if self.lexicon is None:
            return []
        query = question if isinstance(question, Query) else self.parse(question)
        question = query.text
        own = set(query.own)
        bridges: list[tuple[str, str]] = []
        for group in query.groups:
            terms = self.lexicon.groups[group]
            mentioned = own & frozenset().union(*(frozenset(query_tokens(t)) for t in terms))
            if not mentioned or any(token in self._idf for token in mentioned):
                continue
            known = next(
                (
                    term
                    for term in terms
                    if query_tokens(term) and all(t in self._idf for t in query_tokens(term))
                ),
                None,
            )
            if known is None:
                continue
            spelled = next(
                (
                    match.group(0)
                    for term in sorted(terms, key=len, reverse=True)
                    if (match := _term_pattern(term).search(question))
                ),
                "",
            )
            bridges.append((spelled, known))
        return bridges

    def dense_query(self, question: str | Query) -> str:
        """The text to embed: the question with names the corpus never uses replaced by the
        names it does use ("Does Kymriah..." → "Does tisagenlecleucel..."), else unchanged."""
        return self.parse(question).dense_text

    def _dense_text(self, query: Query) -> str:
        question = query.text
        for spelled, known in self.bridge_terms(query):
            question = question.replace(spelled, known, 1) if spelled else f"{question} ({known})"
        return question

    def _scores(self, tokens: list[str]) -> np.ndarray:
        ids = [self._vocab[token] for token in tokens if token in self._vocab]
        if not ids:
            return np.zeros(self.size, dtype=np.float32)
        if self._bm25 is None:
            return self.postings.dense([(term, 1.0) for term in ids])
        return np.asarray(self._bm25.get_scores(ids), dtype=np.float32)[: self.size]

    def scores(self, question: str | Query) -> np.ndarray:
        """BM25 of every paper for the question; lexicon terms count at EXPANSION_WEIGHT."""
        query = self.parse(question)
        scores = self._scores(list(query.own))
        if query.extra:
            scores = scores + EXPANSION_WEIGHT * self._scores(list(query.extra))
        return scores

    def sparse_scores(self, question: str | Query) -> tuple[np.ndarray, np.ndarray]:
        """The papers with a non-zero BM25 score and their scores (as :meth:`scores` gives
        them; every other paper scores 0), ascending by paper position.

        Reads only the postings of the question's terms, never an array of every paper: the
        cost follows how many papers contain the terms, which is what candidate selection at
        a million papers needs (:mod:`carqa.qa.candidates`)."""
        query = self.parse(question)
        parts: list[tuple[np.ndarray, np.ndarray]] = []
        for tokens, weight in ((query.own, 1.0), (query.extra, EXPANSION_WEIGHT)):
            for token in tokens:
                column = self._vocab.get(token)
                if column is None:
                    continue
                start, end = int(self._indptr[column]), int(self._indptr[column + 1])
                values = self._data[start:end]
                parts.append((self._indices[start:end], values * weight if weight != 1 else values))
        if not parts:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
        papers = np.concatenate([p for p, _ in parts]).astype(np.int64, copy=False)
        values = np.concatenate([v for _, v in parts]).astype(np.float32, copy=False)
        unique, inverse = np.unique(papers, return_inverse=True)
        sums = np.bincount(inverse, weights=values, minlength=len(unique)).astype(np.float32)
        keep = unique < self.size
        return unique[keep], sums[keep]

    def coverage(self, question: str | Query, papers: Sequence[int]) -> np.ndarray:
        """For each paper position in ``papers``: the idf-weighted share of the question's own
        terms that the paper contains (0..1). Terms the corpus lacks weigh the most. A term the
        lexicon knows counts as present when the paper names the same thing another way
        (every word of one of its equivalent terms), so "Kymriah" is covered by
        "tisagenlecleucel"."""
        query = self.parse(question)
        own = list(query.own)
        if not own:
            return np.zeros(len(papers), dtype=np.float32)
        weights = {token: self._idf.get(token, self._unseen_idf) for token in own}
        total = sum(weights.values())
        equivalents: dict[str, list[frozenset[str]]] = {}
        if self.lexicon is not None:
            for group in query.groups:
                term_tokens = [frozenset(query_tokens(term)) for term in self.lexicon.groups[group]]
                group_tokens = frozenset().union(*term_tokens)
                for token in own:
                    if token in group_tokens:
                        equivalents.setdefault(token, []).extend(t for t in term_tokens if t)
        result = np.zeros(len(papers), dtype=np.float32)
        for i, paper in enumerate(papers):
            present = self._paper_tokens(int(paper))
            covered = 0.0
            for token, weight in weights.items():
                if token in present or any(t <= present for t in equivalents.get(token, ())):
                    covered += weight
            result[i] = covered / total
        return result
