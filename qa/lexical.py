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
from collections.abc import Sequence
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
"""Weight of lexicon-added terms relative to the question's own words (see
:meth:`LexicalIndex.double_counted`: an expansion never adds on top of the term typed)."""


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
    # Per named group: (the question's terms for it, the terms its expansion adds).
    expansion: tuple[tuple[tuple[str, ...], tuple[str, ...]], ...] = ()

    @property
    def terms(self) -> int:
        return len(self.own)


class LexicalIndex:
    """BM25 over one text per paper (title + abstract + MeSH headings), in the order given.

    Which terms a paper contains (:meth:`coverage`) is read from the BM25 postings, not from
    the paper's text: no token set per paper is kept (at a million papers that is several GB),
    and no paper is tokenized again while a question is answered."""

    def __init__(
        self,
        texts: Sequence[str],
        *,
        lexicon: Lexicon | None = None,
        k1: float = 1.2,
        b: float = 0.75,
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
        self.postings: Postings | None = None
        postings = self._bm25.scores
        self._data = np.asarray(postings["data"])
        self._indices = np.asarray(postings["indices"])
        self._indptr = np.asarray(postings["indptr"])
        # Each term's papers ascending (as bm25s writes them): membership is a binary search.
        steps = np.flatnonzero(np.diff(self._indices) <= 0) + 1
        self._postings_sorted = bool(np.isin(steps, self._indptr).all())

    @classmethod
    def from_postings(
        cls,
        postings: Postings,
        *,
        lexicon: Lexicon | None = None,
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
        self._data, self._indices, self._indptr = postings.scores, postings.docs, postings.indptr
        self._postings_sorted = True  # each term's papers ascending (postings.py)
        return self

    def parse(self, question: str | Query) -> Query:
        """The question analysed for every stage of retrieval (see :class:`Query`)."""
        if isinstance(question, Query):
            return question
        own = tuple(dict.fromkeys(query_tokens(question)))
        groups: tuple[int, ...] = ()
        extra: list[str] = []
        expansion: list[tuple[tuple[str, ...], tuple[str, ...]]] = []
        if self.lexicon is not None:
            groups = tuple(self.lexicon.matched_groups(question))
            seen = set(own)
            for typed, missing in self.lexicon.group_terms(question):
                added = [
                    t for t in dict.fromkeys(query_tokens(" ; ".join(missing))) if t not in seen
                ]
                if not added:
                    continue
                seen.update(added)
                extra.extend(added)
                typed_tokens = tuple(t for t in query_tokens(" ; ".join(typed)) if t in own)
                expansion.append((tuple(dict.fromkeys(typed_tokens)), tuple(added)))
        query = Query(question, own, tuple(extra), groups, question, tuple(expansion))
        dense = self._dense_text(query)
        if dense == question:
            return query
        return Query(question, own, tuple(extra), groups, dense, tuple(expansion))

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
        """BM25 of every paper for the question; lexicon terms count at EXPANSION_WEIGHT.
        (What candidate selection reads; :meth:`double_counted` is taken off for ranking.)"""
        query = self.parse(question)
        scores = self._scores(list(query.own))
        if query.extra:
            scores = scores + EXPANSION_WEIGHT * self._scores(list(query.extra))
        return scores

    def _postings(self, token: str) -> tuple[np.ndarray, np.ndarray]:
        """(paper positions, BM25 values) of one term; empty for a term the corpus lacks."""
        column = self._vocab.get(token)
        if column is None:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
        start, end = int(self._indptr[column]), int(self._indptr[column + 1])
        papers = self._indices[start:end].astype(np.int64, copy=False)
        keep = papers < self.size
        return papers[keep], self._data[start:end][keep].astype(np.float32, copy=False)

    def double_counted(self, question: str | Query, papers: Sequence[int]) -> np.ndarray:
        """For each paper position in ``papers``: the part of its BM25 (:meth:`scores`) that
        counts a named thing twice, once by the term the question typed and once by the
        lexicon's expansion (its other names, at ``EXPANSION_WEIGHT``). Ranking takes it off,
        so a thing counts once per paper, by the better of its two names, and an expansion
        never adds on top of the term typed: a question on "OSCE" is not led by the paper
        that also spells out "objective structured clinical examination" (three words, each
        scoring) over the one about what was asked. Read from the postings of the question's
        terms for the given papers only, so every candidate source gets the same correction.
        """
        query = self.parse(question)
        positions = np.asarray(papers, dtype=np.int64).reshape(-1)
        result = np.zeros(len(positions), dtype=np.float32)
        for typed, added in query.expansion:
            if not typed:
                continue
            expansion = EXPANSION_WEIGHT * self._values_at(added, positions)
            result += np.minimum(expansion, self._values_at(typed, positions, every=True))
        return result

    def _values_at(
        self, tokens: Sequence[str], positions: np.ndarray, *, every: bool = False
    ) -> np.ndarray:
        """The summed BM25 of ``tokens`` in each paper of ``positions``; with ``every``, 0 for
        a paper that lacks one of them (a paper with "cells" but not "CAR" does not hold the
        typed "CAR T cells")."""
        total = np.zeros(len(positions), dtype=np.float32)
        held = np.ones(len(positions), dtype=bool)
        for token in tokens:
            values = self._at(token, positions)
            total += values
            held &= values > 0
        return np.where(held, total, 0.0).astype(np.float32) if every else total

    def _at(self, token: str, positions: np.ndarray) -> np.ndarray:
        """The BM25 of one term in each paper of ``positions`` (0 where the paper lacks it).

        A binary search of ``positions`` in the term's postings, which are read in place: a
        common term has hundreds of thousands of postings at a million papers, and copying or
        masking them for a few dozen candidates would make this cost grow with the corpus."""
        column = self._vocab.get(token)
        if column is None or not len(positions):
            return np.zeros(len(positions), dtype=np.float32)
        if not self._postings_sorted:
            papers, values = self._postings(token)
            if not len(papers):
                return np.zeros(len(positions), dtype=np.float32)
            order = np.argsort(papers, kind="stable")
            papers, values = papers[order], values[order]
        else:
            start, end = int(self._indptr[column]), int(self._indptr[column + 1])
            papers, values = self._indices[start:end], self._data[start:end]
            if not len(papers):
                return np.zeros(len(positions), dtype=np.float32)
            # Searched in the postings' own integer type: a wider type would copy them.
            positions = positions.astype(papers.dtype, copy=False)
        at = np.minimum(np.searchsorted(papers, positions), len(papers) - 1)
        hit = papers[at] == positions
        out = np.zeros(len(positions), dtype=np.float32)
        out[hit] = values[at[hit]]
        return out

    def sparse_scores(self, question: str | Query) -> tuple[np.ndarray, np.ndarray]:
        """The papers with a non-zero BM25 score and their scores (as :meth:`scores` gives
        them; every other paper scores 0), ascending by paper position.

        Reads only the postings of the question's terms, never an array of every paper: the
        cost follows how many papers contain the terms, which is what candidate selection at
        a million papers needs (:mod:`carqa.qa.candidates`)."""
        query = self.parse(question)
        parts = [self._postings(token) for token in query.own]
        parts += [(p, v * EXPANSION_WEIGHT) for p, v in map(self._postings, query.extra)]
        return _summed(parts)

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
        positions = np.asarray(papers, dtype=np.int64).reshape(-1)
        held: dict[str, np.ndarray] = {}

        def holds(token: str) -> np.ndarray:
            """Which of ``papers`` contain ``token`` (from its postings)."""
            if token not in held:
                held[token] = self._at(token, positions) > 0
            return held[token]

        result = np.zeros(len(positions), dtype=np.float64)
        for token, weight in weights.items():
            present = holds(token).copy()
            for term in equivalents.get(token, ()):
                present |= np.logical_and.reduce([holds(t) for t in term])
            result += weight * present
        return (result / total).astype(np.float32)


def _summed(parts: Sequence[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    """Sparse (positions, values) pairs added up: unique ascending positions, summed values."""
    parts = [part for part in parts if len(part[0])]
    if not parts:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
    papers = np.concatenate([p for p, _ in parts]).astype(np.int64, copy=False)
    values = np.concatenate([v for _, v in parts]).astype(np.float32, copy=False)
    unique, inverse = np.unique(papers, return_inverse=True)
    sums = np.bincount(inverse, weights=values, minlength=len(unique)).astype(np.float32)
    return unique, sums
