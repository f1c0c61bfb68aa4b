"""BM25 postings written with the index: read memory-mapped, and a pruned top-k over them.

Why at build time: scoring BM25 needs every paper tokenized. Done when an index is opened (as
``bm25s`` does from texts), that is minutes and gigabytes per process at a million papers;
written once by the build, a server maps the files and only the postings of a question's
terms are ever read.

Scores are BM25 as ``bm25s`` computes them with ``method="lucene"`` (idf
``log(1 + (N - df + 0.5) / (df + 0.5))``, term weight ``tf / (tf + k1 (1 - b + b dl / avgdl))``),
precomputed per (term, paper). Files, in the ``bm25/`` folder of a build (each checksummed by
the manifest like every other file):

- ``vocab.json``: the terms, by term id;
- ``indptr.npy`` / ``docs.npy`` / ``scores.npy``: term-major CSR — the postings of term *t*
  are ``docs[indptr[t]:indptr[t+1]]`` (paper positions in sorted-pmid order, ascending) with
  their ``scores``;
- ``head_indptr.npy`` / ``head_docs.npy`` / ``head_scores.npy``: for each term with more than
  ``head`` postings, its ``head`` best (score descending, then the lower position), *impact
  order*; empty for the other terms.

Why a head: a common term ("cell", "patients") has postings in a large share of the corpus,
and summing them all is what made BM25 the costliest step at a million papers. :func:`top`
sums the heads of common terms and the full lists of the others, re-scores the best of those
sums exactly and keeps ``k``. A paper outside a term's head scores at most that head's last
score for it; :func:`top` reports whether that bound proves its result is the exact top-k
(``certain``), which tests hold against the full sum.
"""

from __future__ import annotations

import json
import os
from array import array
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

POSTINGS_DIR = "bm25"
HEAD = 2_000
"""Postings kept in impact order per common term (terms with more postings than this)."""
RESCORE = 10
""":func:`top` re-scores exactly this many times ``k`` of the best approximate sums."""
K1, B = 1.2, 0.75
TERMS_VERSION = 1
"""Bumped when :func:`carqa.index.search.terms.tokenize` changes: postings are then rebuilt."""
LEXICAL_SETTINGS = {"terms_version": TERMS_VERSION, "k1": K1, "b": B, "head": HEAD}
"""Part of the manifest: a build with other settings is not up to date."""
_FILES = ("indptr", "docs", "scores", "head_indptr", "head_docs", "head_scores")


class PostingsBuilder:
    """Collects the tokens of each paper (any order), then writes the postings files.

    Memory: two int32 per distinct (term, paper) pair while collecting, in flat arrays (no
    Python object per posting), so a million short abstracts stay well under a gigabyte."""

    def __init__(self) -> None:
        self.vocab: dict[str, int] = {}
        self._terms = array("i")
        self._tfs = array("i")
        self._distinct = array("i")  # distinct terms per paper, in the order added
        self._lengths = array("i")  # tokens per paper
        self._keys: list[str] = []  # each paper's pmid, in the order added

    def add(self, pmid: str, tokens: Sequence[str]) -> None:
        counts = Counter(tokens)
        vocab = self.vocab
        for token, count in counts.items():
            term = vocab.get(token)
            if term is None:
                term = vocab[token] = len(vocab)
            self._terms.append(term)
            self._tfs.append(count)
        self._distinct.append(len(counts))
        self._lengths.append(len(tokens))
        self._keys.append(pmid)

    def write(self, folder: Path, *, head: int = HEAD) -> dict[str, int]:
        """Score and write the postings into ``folder/bm25``; papers are numbered by sorted
        pmid (the retriever's positions). Returns the manifest entry."""
        n = len(self._keys)
        position = np.empty(n, dtype=np.int64)
        position[np.argsort(np.array(self._keys, dtype=object), kind="stable")] = np.arange(n)
        self._keys = []
        terms = np.frombuffer(self._terms, dtype=np.int32)
        tfs = np.frombuffer(self._tfs, dtype=np.int32).astype(np.float64)
        docs = np.repeat(position, np.frombuffer(self._distinct, dtype=np.int32))
        docs = docs.astype(np.int32)
        lengths = np.frombuffer(self._lengths, dtype=np.int32).astype(np.float64)
        n_terms = len(self.vocab)
        df = np.bincount(terms, minlength=n_terms)
        idf = np.log(1 + (n - df + 0.5) / (df + 0.5))
        avgdl = lengths.mean() if n else 1.0
        distinct = np.frombuffer(self._distinct, dtype=np.int32)
        norm = np.repeat(K1 * (1 - B + B * lengths / max(avgdl, 1e-9)), distinct)
        scores = (idf[terms] * (tfs / (tfs + norm))).astype(np.float32)
        del tfs, norm
        order = np.lexsort((docs, terms))
        docs, scores, terms = docs[order], scores[order], terms[order]
        del order
        indptr = np.zeros(n_terms + 1, dtype=np.int64)
        np.cumsum(df, out=indptr[1:])
        head_docs, head_scores, head_counts = [], [], np.zeros(n_terms, dtype=np.int64)
        for term in np.flatnonzero(df > head).tolist():
            start, end = int(indptr[term]), int(indptr[term + 1])
            best = np.lexsort((docs[start:end], -scores[start:end]))[:head]
            head_docs.append(docs[start:end][best])
            head_scores.append(scores[start:end][best])
            head_counts[term] = len(best)
        head_indptr = np.zeros(n_terms + 1, dtype=np.int64)
        np.cumsum(head_counts, out=head_indptr[1:])
        out = Path(folder) / POSTINGS_DIR
        out.mkdir(exist_ok=True)
        words = [""] * n_terms
        for word, term in self.vocab.items():
            words[term] = word
        (out / "vocab.json").write_text(json.dumps(words), encoding="utf-8")
        arrays = {
            "indptr": indptr,
            "docs": docs,
            "scores": scores,
            "head_indptr": head_indptr,
            "head_docs": _concat(head_docs, np.int32),
            "head_scores": _concat(head_scores, np.float32),
        }
        for name, values in arrays.items():
            _save(out / f"{name}.npy", values)
        return {"papers": n, "terms": n_terms, "postings": len(docs), "head": head}


def _concat(parts: list[np.ndarray], dtype: type) -> np.ndarray:
    return np.concatenate(parts).astype(dtype) if parts else np.zeros(0, dtype=dtype)


def _save(path: Path, values: np.ndarray) -> None:
    with open(path, "wb") as handle:
        np.save(handle, np.ascontiguousarray(values))
        handle.flush()
        os.fsync(handle.fileno())


@dataclass(frozen=True)
class TopLexical:
    """:func:`Postings.top`'s answer: papers (ascending), their exact BM25, the best exact BM25
    seen, and whether the bound proves these are the exact top-k."""

    papers: np.ndarray
    scores: np.ndarray
    best: float
    certain: bool


class Postings:
    """The postings files of one build, memory-mapped (see the module doc)."""

    def __init__(self, folder: Path, papers: int) -> None:
        folder = Path(folder) / POSTINGS_DIR
        words = json.loads((folder / "vocab.json").read_text(encoding="utf-8"))
        self.vocab: dict[str, int] = {word: i for i, word in enumerate(words)}
        for name in _FILES:
            mapped = np.load(folder / f"{name}.npy", mmap_mode="r", allow_pickle=False)
            # A plain array over the same mapping: slicing an ``np.memmap`` runs Python code
            # for every slice, and a question slices these a few hundred times.
            setattr(self, name, mapped.view(np.ndarray))
        self.size = papers
        if len(self.indptr) != len(words) + 1 or len(self.docs) != len(self.scores):
            raise ValueError(f"{folder}: postings do not match the vocabulary")

    @staticmethod
    def exists(folder: Path) -> bool:
        return (Path(folder) / POSTINGS_DIR / "vocab.json").is_file()

    def document_frequency(self) -> dict[str, int]:
        counts = np.diff(np.asarray(self.indptr)).tolist()
        return {word: counts[term] for word, term in self.vocab.items()}

    def weighted(self, weighted_tokens: Iterable[tuple[str, float]]) -> list[tuple[int, float]]:
        """(term id, weight) of the tokens the corpus has."""
        out = []
        for token, weight in weighted_tokens:
            term = self.vocab.get(token)
            if term is not None:
                out.append((term, weight))
        return out

    def dense(self, terms: list[tuple[int, float]]) -> np.ndarray:
        """BM25 of every paper (float32, one per paper)."""
        scores = np.zeros(self.size, dtype=np.float32)
        for term, weight in terms:
            start, end = int(self.indptr[term]), int(self.indptr[term + 1])
            scores[self.docs[start:end]] += self.scores[start:end] * np.float32(weight)
        return scores

    def sparse(self, terms: list[tuple[int, float]], *, heads: bool = False) -> tuple:
        """(papers ascending, summed scores) over the terms' postings (their heads only for
        the terms that have one, when ``heads``)."""
        ids, values = [], []
        for term, weight in terms:
            start, end = int(self.head_indptr[term]), int(self.head_indptr[term + 1])
            if heads and end > start:
                docs, scores = self.head_docs[start:end], self.head_scores[start:end]
            else:
                start, end = int(self.indptr[term]), int(self.indptr[term + 1])
                docs, scores = self.docs[start:end], self.scores[start:end]
            ids.append(docs)
            values.append(scores * np.float32(weight) if weight != 1 else scores)
        if not ids:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
        unique, inverse = np.unique(np.concatenate(ids), return_inverse=True)
        sums = np.bincount(inverse, weights=np.concatenate(values), minlength=len(unique))
        return unique.astype(np.int64), sums.astype(np.float32)

    def lookup(self, papers: np.ndarray, terms: list[tuple[int, float]]) -> np.ndarray:
        """Exact BM25 of ``papers`` (any order): a binary search per term, nothing else read."""
        papers = np.asarray(papers, dtype=np.int64)
        out = np.zeros(len(papers), dtype=np.float32)
        if not len(papers):
            return out
        for term, weight in terms:
            start, end = int(self.indptr[term]), int(self.indptr[term + 1])
            docs = self.docs[start:end]
            at = np.minimum(np.searchsorted(docs, papers), max(len(docs) - 1, 0))
            if not len(docs):
                continue
            hit = docs[at] == papers
            out[hit] += self.scores[start:end][at[hit]] * np.float32(weight)
        return out

    def top(
        self, terms: list[tuple[int, float]], k: int, allowed: np.ndarray | None = None
    ) -> TopLexical:
        """The ``k`` best papers by BM25 among ``allowed`` (ties: lower position first), from
        the heads (see the module doc), their exact scores and the best exact score seen."""
        all_ids, all_approx = self.sparse(terms, heads=True)
        ids, approx = all_ids, all_approx
        if allowed is not None and len(ids):
            keep = allowed[ids]
            ids, approx = ids[keep], approx[keep]
        pool = top_k(approx, ids, max(k, RESCORE * k))
        exact = self.lookup(pool, terms)
        chosen = top_k(exact, pool, k)
        scores = exact[np.searchsorted(pool, chosen)]
        best = float(exact.max(initial=0.0))
        if allowed is not None:  # the scale of the relative term is the whole corpus's best
            unfiltered = top_k(all_approx, all_ids, k)
            best = max(best, float(self.lookup(unfiltered, terms).max(initial=0.0)))
        # A paper left out of the pool sums at most the pool's lowest approximate score, plus,
        # per term with a head it is missing from, at most that head's last score.
        slack = 0.0
        for term, weight in terms:
            start, end = int(self.head_indptr[term]), int(self.head_indptr[term + 1])
            if end > start:
                slack += float(self.head_scores[end - 1]) * weight
        left_out = len(ids) > len(pool)
        floor = float(approx[np.searchsorted(ids, pool)].min()) if left_out and len(pool) else 0.0
        kth = float(scores.min()) if len(scores) >= k else 0.0
        certain = (slack == 0.0 and not left_out) or (len(chosen) >= k and kth > floor + slack)
        return TopLexical(chosen, scores, best, certain)


def top_k(scores: np.ndarray, papers: np.ndarray, k: int) -> np.ndarray:
    """The ``k`` best of ``papers`` (ascending positions) by ``scores`` (aligned with
    ``papers``); ties at the cut go to the lower positions, so the choice does not depend on
    how a search engine happened to order equal scores."""
    if len(papers) <= k:
        return papers
    cut = np.partition(scores, len(scores) - k)[len(scores) - k]
    above = papers[scores > cut]
    tied = papers[scores == cut][: k - len(above)]
    return np.union1d(above, tied)
