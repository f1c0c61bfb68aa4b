"""BM25 postings written by the build: the scores bm25s gives, and a pruned top-k that is the
full top-k whenever its bound says so (and always when no term is pruned)."""

from __future__ import annotations

from pathlib import Path

import bm25s
import numpy as np
import pytest
from carqa.index.search.postings import Postings, PostingsBuilder
from carqa.index.search.terms import tokenize

WORDS = [
    "car",
    "cell",
    "therapy",
    "lymphoma",
    "relapse",
    "antigen",
    "cytokine",
    "toxicity",
    "infusion",
    "response",
    "remission",
    "tumor",
    "marrow",
    "leukemia",
    "myeloma",
    "bcma",
    "cd19",
    "cd22",
    "persistence",
    "expansion",
    "costimulation",
    "domain",
    "trial",
    "dose",
    "patient",
    "outcome",
    "survival",
    "neurotoxicity",
    "tocilizumab",
    "steroid",
    "fever",
]


def _corpus(n: int, seed: int = 7) -> list[tuple[str, str]]:
    """``n`` invented papers (pmid, text): a few words everywhere, most words rare."""
    rng = np.random.default_rng(seed)
    weights = 1.0 / np.arange(1, len(WORDS) + 1) ** 1.1
    weights /= weights.sum()
    papers = []
    for i in range(n):
        length = int(rng.integers(3, 25))
        words = rng.choice(WORDS, size=length, p=weights)
        papers.append((str(10_000_000 + (i * 7919) % 100_003), " ".join(words)))
    return papers


def _postings(tmp_path: Path, papers: list[tuple[str, str]], head: int) -> Postings:
    builder = PostingsBuilder()
    for pmid, text in papers:  # any order: positions are by sorted pmid
        builder.add(pmid, tokenize(text))
    builder.write(tmp_path, head=head)
    return Postings(tmp_path, len(papers))


def _full_top(scores: np.ndarray, k: int) -> np.ndarray:
    order = np.lexsort((np.arange(len(scores)), -scores))
    return np.sort(order[:k])


@pytest.fixture(scope="module")
def papers() -> list[tuple[str, str]]:
    return _corpus(400)


def test_scores_are_bm25s_lucene_scores(tmp_path: Path, papers: list[tuple[str, str]]) -> None:
    postings = _postings(tmp_path, papers, head=10_000)
    ordered = sorted(papers)
    reference = bm25s.BM25(k1=1.2, b=0.75, method="lucene")
    reference.index([tokenize(text) for _, text in ordered], show_progress=False)
    for words in (["relapse"], ["cd19", "lymphoma"], ["car", "cell", "therapy", "fever"]):
        tokens = tokenize(" ".join(words))
        ids = [reference.vocab_dict[t] for t in tokens]
        want = np.asarray(reference.get_scores(ids), dtype=np.float32)
        got = postings.dense(postings.weighted((t, 1.0) for t in tokens))
        assert got == pytest.approx(want, rel=1e-5, abs=1e-6)
        assert want.max() > 0


@pytest.mark.parametrize("head", [5, 20, 60])
def test_pruned_top_k_is_the_full_top_k_when_proven(
    tmp_path: Path, papers: list[tuple[str, str]], head: int
) -> None:
    postings = _postings(tmp_path, papers, head=head)
    assert len(postings.head_docs), "common terms must have heads at this size"
    rng = np.random.default_rng(head)
    proven = 0
    for _ in range(60):
        words = rng.choice(WORDS, size=int(rng.integers(1, 6)), replace=False)
        terms = postings.weighted((t, 1.0 if i % 2 else 0.5) for i, t in enumerate(words))
        full = postings.dense(terms)
        found = postings.top(terms, 10)
        assert found.scores == pytest.approx(full[found.papers])  # always exact scores
        if found.certain:
            proven += 1
            want = _full_top(full, 10)
            assert found.papers.tolist() == want[full[want] > 0].tolist()
    assert proven > 0


def test_without_pruning_top_k_and_lookup_match_the_full_sum(
    tmp_path: Path, papers: list[tuple[str, str]]
) -> None:
    postings = _postings(tmp_path, papers, head=10_000)
    allowed = np.arange(len(papers)) % 3 != 0
    for words in (["tocilizumab"], ["car", "cell"], ["bcma", "myeloma", "fever", "trial"]):
        terms = postings.weighted((t, 1.0) for t in tokenize(" ".join(words)))
        full = postings.dense(terms)
        found = postings.top(terms, 10, allowed)
        masked = np.where(allowed, full, -1.0)
        want = _full_top(masked, 10)
        assert found.certain
        assert found.papers.tolist() == want[masked[want] > 0].tolist()
        assert found.best == pytest.approx(full.max())  # the whole corpus's best, not the mask's
        some = np.array([0, 5, 17, 399])
        assert postings.lookup(some, terms) == pytest.approx(full[some])
