"""Extractive answers: pick the evidence sentences that answer a question, cite each one.

No text is generated: the answer is made of sentences from the retrieved abstracts, each
followed by its ``[n]`` marker, so every claim is traceable to a PMID. How sentences are chosen:

1. Retrieval (:mod:`carqa.qa.retrieve`) ranks papers. Only the best few are read, and a paper
   after the first only contributes when it is nearly as relevant as the first
   (``PAPER_GATE``): an answer should not drift into loosely related papers.
2. Within a paper every sentence gets ``similarity + PRIOR_WEIGHT * prior``: its cosine with the
   question (sentence vectors were computed at build time) plus how likely it is to state the
   paper's conclusion (:mod:`carqa.qa.priors`). The prior is what makes the answer lead with
   what the study *found*, not with its background, when both match the question.
3. The answer leads with the first paper's best sentence, then adds the best-scoring remaining
   sentences of the papers read (at most ``PER_PAPER`` from a paper, ``MAX_SENTENCES`` in
   all), skipping near-duplicates — so another paper's conclusion beats the first paper's
   background.

Abstention: when even the best evidence is weak — the best sentence similarity plus a share of
the question's rare words found in the top paper (``Retrieval.confidence``) is below
``ABSTAIN_THRESHOLD``, or no sentence is even moderately close in meaning
(``MIN_BEST_SIMILARITY``) — we say so instead of quoting unrelated sentences. The threshold was set
on the PubMedQA dev questions (answerable) and our own off-topic questions
(``qa/data/offtopic_questions.jsonl``, 96): it abstains on 1% of the former and on 94.8% of
the latter. The hard case is a question from the corpus's own field whose answer is not indexed
(``carqa eval``'s ``abstain_rate_source_left_out``: each dev question asked without its source
paper). There a related abstract still scores a fair sentence similarity (0.56 at the median,
answerable questions 0.80) but lacks the question's specific words, so the word share weighs
0.4 (``carqa.qa.retrieve.COVERAGE_WEIGHT``, threshold 0.77) rather than 0.2 (threshold 0.65):
68% of those questions abstain instead of 58%, with the same 1% of answerable ones. Fragments
of fewer than four words do not count as evidence (``carqa.qa.retrieve.MIN_EVIDENCE_WORDS``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from carqa.index.corpus.models import PUBMED_URL
from carqa.qa.retrieve import HybridRetriever, Retrieval
from carqa.qa.types import Citation, Segment

PRIOR_WEIGHT = 1.0
MAX_SENTENCES = 3
PER_PAPER = 2
PAPERS_READ = 3
PAPER_GATE = 0.15
"""A later paper contributes only if its best sentence is within this cosine of the first's."""
PAPER_FLOOR = 0.45
"""... and at least this similar to the question."""
DUPLICATE_COSINE = 0.92
ABSTAIN_THRESHOLD = 0.77
MIN_BEST_SIMILARITY = 0.4
"""Whatever the word share, no answer unless some sentence is at least this close to the
question in meaning. A short generic question ("What is machine learning?") can find all its
words in one abstract (word share 1.0) while its best sentence scores 0.37: the word share alone
carried it over ``ABSTAIN_THRESHOLD``. Kept low because a bare acronym embeds poorly: "What is
BCMA?" finds its sentence at 0.42 on the CAR T test corpus. No answerable PubMedQA dev question
that was answered had a best sentence under 0.51."""
SHORT_QUESTION_TERMS = 2
"""A question with at most this many terms (stop words left out) is answered only when the top
paper contains all of them. For "What is the GDP of Germany?" (gdp, germany) one term found is
a single ordinary word in common, yet it made half the word share and, with a sentence of
cosine 0.58, carried the question over ``ABSTAIN_THRESHOLD``. "What is CRS?" and "What is
Kymriah?" (found through the lexicon) are unaffected. No PubMedQA dev question has fewer than
three terms; our off-topic questions have up to two in 6 of 96."""

ABSTAIN_MESSAGE = (
    "The indexed literature does not seem to answer this question: no abstract in the corpus "
    "matches it closely enough to quote."
)
ABSTAIN_HINT_TERMS = ("tisagenlecleucel", "CD19", "cytokine release syndrome")


def abstain_hint(question: str, in_corpus: Callable[[str], bool], *, filtered: bool = False) -> str:
    """Advice after an abstention that fits the question and the corpus: an example term is
    offered only when the corpus has it and the question does not already name it (replying
    "try 'tisagenlecleucel'" to "What is tisagenlecleucel?" helps nobody), and the filters
    are mentioned only when some were set."""
    asked = question.casefold()
    terms = [t for t in ABSTAIN_HINT_TERMS if t.casefold() not in asked and in_corpus(t)]
    widen = ", or widen the filters." if filtered else "."
    if not terms:
        return f"Try naming what you mean in the words an abstract would use{widen}"
    named = ", ".join(f'"{term}"' for term in terms)
    return (
        "Try naming the product, target antigen, disease or toxicity you mean "
        f"(for example {named}){widen}"
    )


NO_PAPERS_MESSAGE = "No indexed paper passes the filters (year range, PMIDs, cited/seed)."
NO_SEED_MESSAGE = (
    "This corpus has no seed review, so the cited-only filter matches no paper: leave it out "
    "(it applies to corpora built from a seed review's references, as `carqa build` does)."
)
EMPTY_INDEX_MESSAGE = "The index holds no papers: build a corpus with `carqa build`."


@dataclass(frozen=True)
class Evidence:
    """One candidate sentence with the scores that chose it."""

    sentence_id: int
    pmid: str
    paper_rank: int
    text: str
    section: str | None
    similarity: float
    prior: float

    @property
    def score(self) -> float:
        return self.similarity + PRIOR_WEIGHT * self.prior


def ranked_sentences(
    retriever: HybridRetriever,
    retrieval: Retrieval,
    pmid: str,
    rank: int,
    *,
    limit: int | None = None,
) -> list[Evidence]:
    """A paper's sentences as :class:`Evidence`, best first (the best ``limit`` only)."""
    ids = retriever.paper_sentences(pmid)
    if not len(ids):
        return []
    similarity = retrieval.sentence_scores[ids]
    prior = retriever.sentence_priors[ids]
    order = np.argsort(-(similarity + PRIOR_WEIGHT * prior), kind="stable")[:limit]
    sentences = retriever.index.sentences
    result = []
    for j in order.tolist():
        row = sentences[int(ids[j])]
        result.append(
            Evidence(
                sentence_id=int(ids[j]),
                pmid=pmid,
                paper_rank=rank,
                text=row.text,
                section=row.section_label or row.section_category,
                similarity=float(similarity[j]),
                prior=float(prior[j]),
            )
        )
    return result


def select_evidence(
    retriever: HybridRetriever,
    retrieval: Retrieval,
    *,
    max_sentences: int = MAX_SENTENCES,
    per_paper: int = PER_PAPER,
    papers_read: int = PAPERS_READ,
) -> list[Evidence]:
    """The sentences an answer is made of, in answer order (see the module doc)."""
    ranked: list[list[Evidence]] = []
    top_similarity: float | None = None
    for hit in retrieval.papers[:papers_read]:
        # A few spares beyond ``per_paper`` stand in for near-duplicates.
        candidates = ranked_sentences(retriever, retrieval, hit.pmid, hit.rank, limit=per_paper + 2)
        if not candidates:
            continue  # a title-only record has no sentence to quote
        best_similarity = max(c.similarity for c in candidates)
        if top_similarity is None:
            top_similarity = best_similarity
        elif best_similarity < max(PAPER_FLOOR, top_similarity - PAPER_GATE):
            continue
        ranked.append(candidates)
    if not ranked or max_sentences < 1:
        return []
    # The answer leads with the first paper's best sentence; the rest compete on score.
    chosen = [ranked[0][0]]
    pool = sorted(
        (c for candidates in ranked for c in candidates if c is not chosen[0]),
        key=lambda c: c.score,
        reverse=True,
    )
    matrix = retriever.index.sentence_matrix
    taken = {chosen[0].pmid: 1}
    for candidate in pool:
        if len(chosen) >= max_sentences:
            break
        if taken.get(candidate.pmid, 0) >= per_paper:
            continue
        if any(
            float(matrix[candidate.sentence_id] @ matrix[c.sentence_id]) >= DUPLICATE_COSINE
            for c in chosen
        ):
            continue
        chosen.append(candidate)
        taken[candidate.pmid] = taken.get(candidate.pmid, 0) + 1
    return chosen


def citation_for(retriever: HybridRetriever, evidence: Evidence, n: int) -> Citation:
    paper = retriever.index.papers.get(evidence.pmid)
    return Citation(
        n=n,
        pmid=evidence.pmid,
        title=getattr(paper, "title", None),
        year=getattr(paper, "year", None),
        url=PUBMED_URL.format(pmid=evidence.pmid),
        section=evidence.section,
        text=evidence.text,
        score=round(evidence.score, 4),
        relation=getattr(paper, "relation", None),
        publication_types=list(getattr(paper, "publication_types", None) or []),
    )


def sentence_with_marker(text: str, n: int) -> str:
    """``"Text ends here [n]."``-style: the marker goes before the final full stop, so the
    answer still reads as sentences."""
    stripped = text.rstrip()
    if stripped.endswith((".", "!", "?")) and not stripped.endswith("..."):
        return f"{stripped[:-1]} [{n}]{stripped[-1]}"
    return f"{stripped} [{n}]"


def marked_segments(text: str, n: int, *, lead: str = "") -> list[Segment]:
    """:func:`sentence_with_marker` as segments (``lead``, e.g. a space, before the text): the
    sentence's own text never becomes a citation, whatever brackets it holds."""
    stripped = text.rstrip()
    if stripped.endswith((".", "!", "?")) and not stripped.endswith("..."):
        return [Segment(f"{lead}{stripped[:-1]} ", [n]), Segment(stripped[-1])]
    return [Segment(f"{lead}{stripped} ", [n])]


def should_abstain(retrieval: Retrieval, threshold: float = ABSTAIN_THRESHOLD) -> bool:
    """True when the evidence is too weak to quote: no paper, no sentence close enough in
    meaning (``MIN_BEST_SIMILARITY``), too little of the question in the top paper, or a
    short question whose every term the top paper does not contain (``SHORT_QUESTION_TERMS``)."""
    return (
        not retrieval.papers
        or retrieval.best_similarity < MIN_BEST_SIMILARITY
        or retrieval.confidence < threshold
        or (retrieval.terms <= SHORT_QUESTION_TERMS and retrieval.coverage < 1.0 - 1e-6)
    )
