"""Extractive answers: pick the evidence sentences that answer a question, cite each one.

No text is generated: the answer is made of sentences from the retrieved abstracts, each
followed by its ``[n]`` marker, so every claim is traceable to a PMID. How sentences are chosen:

1. Retrieval (:mod:`carqa.qa.retrieve`) ranks papers. Only the best few are read, and a paper
   after the first only contributes when it is nearly as relevant as the first
   (``PAPER_GATE``): an answer should not drift into loosely related papers.
2. Within a paper every sentence gets ``similarity + PRIOR_WEIGHT * prior``: its cosine with the
   question (sentence vectors were computed at build time) plus how likely it is to state the
   paper's conclusion (:mod:`carqa.qa.priors`). The prior is what makes the answer lead with
   what the study *found*, not with its background, when both match the question. A question
   asking for a thing by name ("Which gene ...?") wants the sentence that names it wherever it
   stands, so there the prior weighs less (:mod:`carqa.qa.asking`).
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

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from carqa.index.corpus.models import PUBMED_URL
from carqa.qa.asking import prior_weight
from carqa.qa.lexical import query_tokens, tokenize
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
SENTENCE_GATE = 0.25
"""A sentence after the lead joins only if its cosine is within this of the lead's."""
SCORE_GATE = 0.8
"""... and its score (cosine + conclusion prior) within this of the lead's."""
COVERAGE_GATE = 0.3
"""A later paper contributes only if its share of the question's words is within this of the
first paper's (:func:`covering_papers`)."""
SHARED_TERM = True
"""... and it names one of the question's terms."""
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
RARE_IDF_SHARE = 0.7
"""A word is rare (names something) when its idf is at least this share of the idf of a word
no paper uses: in 18,687 papers, about 10 papers or fewer."""
NAME_IDF_SHARE = 0.5
"""Without such a word, the question's rarest word still names its topic when its idf is at
least this share (in 18,687 papers, about 160 papers or fewer)."""
NAMED_MAX_TERMS = 4
"""... and the question has at most this many terms: a longer one says more than a name and a
kind of answer, and its other words must be found too."""
NAMED_MIN_SIMILARITY = 0.6
"""The best sentence must be at least this close for :func:`names_found` to answer."""
ASKING_WORDS = re.compile(
    r"\b(?:indications?|roles?|functions?|mechanisms?|effects?|purposes?|uses?|usage"
    r"|targets?|types?|kinds?|classes|definition|meaning|characteristics?|features?"
    r"|symptoms?|signs?|treatments?|therapy|therapies|drugs?|genes?|proteins?|names?"
    r"|prevalence|incidence|frequency|outcomes?|prognosis|diagnosis|price|cost|dose|dosage)\b",
    re.IGNORECASE,
)
"""Words that name the kind of answer wanted, not its topic: a short question's topic terms
(:func:`short_question_covered`) are the others."""
FRAME_WORDS = re.compile(
    r"\b(?:mechanisms?|actions?|acts?|modes?|aims?|basis|compan(?:y|ies)|manufacturers?"
    r"|produces?|produced|develop(?:s|ed)?|list|main|located|locali[sz]ed|location"
    r"|molecules?|contains?|consists?|components?|advantages?|disadvantages?|stand"
    r"|another|other|difference|examples?|approved|available|involved|associated|used"
    r"|works?|created|called|known)\b",
    re.IGNORECASE,
)
"""Further words of a question's frame ("What is the mechanism of action of X?", "Which
company produces X?", "List the components of X"): with ``ASKING_WORDS`` left out, what
remains is what the question is about (:func:`names_found`)."""
FRAMED_MIN_SIMILARITY = 0.45
"""The best sentence must be at least this close when the top paper holds everything the
question is about but its frame (:func:`names_found`)."""

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
    prior_weight: float = PRIOR_WEIGHT
    """How much ``prior`` counts for this question (:func:`carqa.qa.asking.prior_weight`)."""

    @property
    def score(self) -> float:
        return self.similarity + self.prior_weight * self.prior

    @property
    def finding_score(self) -> float:
        """The score with the prior at full weight, whatever the question: how
        :func:`joins_answer` tells a finding from a methods sentence."""
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
    weight = prior_weight(retrieval.query, PRIOR_WEIGHT)
    order = np.argsort(-(similarity + weight * prior), kind="stable")[:limit]
    return [
        evidence_at(retriever, retrieval, pmid, rank, int(ids[j]), weight=weight)
        for j in order.tolist()
    ]


def evidence_at(
    retriever: HybridRetriever,
    retrieval: Retrieval,
    pmid: str,
    rank: int,
    sentence_id: int,
    *,
    weight: float | None = None,
) -> Evidence:
    """One sentence of paper ``pmid`` (ranked ``rank``) as :class:`Evidence` for the question;
    ``weight`` is the question's prior weight when the caller has it already."""
    if weight is None:
        weight = prior_weight(retrieval.query, PRIOR_WEIGHT)
    row = retriever.index.sentences[sentence_id]
    return Evidence(
        sentence_id=sentence_id,
        pmid=pmid,
        paper_rank=rank,
        text=row.text,
        section=row.section_label or row.section_category,
        similarity=float(retrieval.sentence_scores[sentence_id]),
        prior=float(retriever.sentence_priors[sentence_id]),
        prior_weight=weight,
    )


def joins_answer(candidate: Evidence, lead: Evidence, terms: frozenset[str]) -> bool:
    """Whether a sentence after the lead answers the question too, rather than padding: it is
    nearly as close to the question as the lead (``SENTENCE_GATE``, at least ``PAPER_FLOOR``),
    scores nearly as well (``SCORE_GATE``: a methods sentence close in words but stating no
    finding does not join) and names one of the question's own terms."""
    if candidate.similarity < max(PAPER_FLOOR, lead.similarity - SENTENCE_GATE):
        return False
    if candidate.finding_score < lead.finding_score - SCORE_GATE:
        return False
    return not (terms and SHARED_TERM) or bool(terms & frozenset(tokenize(candidate.text)))


def covering_papers(retriever: HybridRetriever, retrieval: Retrieval, pmids: list[str]) -> set[str]:
    """The papers among ``pmids`` that hold the question's words about as well as the first
    (idf-weighted share within ``COVERAGE_GATE`` of the first paper's). On PubMedQA "Can large
    or multiple fibroids be removed laparoscopically?" was padded with "failed antireflux
    operations": a paper close in embedding space to a surgery question, without "fibroids"."""
    positions = [retriever.position[pmid] for pmid in pmids if pmid in retriever.position]
    if not positions:
        return set(pmids)
    shares = retriever.lexical.coverage(retrieval.query, positions)
    floor = float(shares[0]) - COVERAGE_GATE
    return {
        retriever.pmids[p]
        for p, share in zip(positions, shares.tolist(), strict=True)
        if share >= floor
    }


def select_evidence(
    retriever: HybridRetriever,
    retrieval: Retrieval,
    *,
    max_sentences: int = MAX_SENTENCES,
    per_paper: int = PER_PAPER,
    papers_read: int = PAPERS_READ,
) -> list[Evidence]:
    """The sentences an answer is made of, in answer order (see the module doc); a sentence
    after the first joins only when it answers the question too (:func:`joins_answer`), and
    a paper after the first only when it holds the question's words (:func:`covering_papers`)."""
    ranked: list[list[Evidence]] = []
    top_similarity: float | None = None
    hits = retrieval.papers[:papers_read]
    covering = covering_papers(retriever, retrieval, [hit.pmid for hit in hits])
    for hit in hits:
        if ranked and hit.pmid not in covering:
            continue
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
    terms = frozenset(query_tokens(retrieval.query))
    taken = {chosen[0].pmid: 1}
    for candidate in pool:
        if len(chosen) >= max_sentences:
            break
        if taken.get(candidate.pmid, 0) >= per_paper:
            continue
        if not joins_answer(candidate, chosen[0], terms):
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


def marked_segments(text: str, n: int | Sequence[int], *, lead: str = "") -> list[Segment]:
    """A quoted sentence as segments, ``"Text ends here [n]."``-style: the markers (one or
    several numbers) go before the final full stop, so the answer still reads as sentences;
    ``lead`` (e.g. a space) goes before the text. The sentence's own text never becomes a
    citation, whatever brackets it holds."""
    numbers = [n] if isinstance(n, int) else list(n)
    stripped = text.rstrip()
    if stripped.endswith((".", "!", "?")) and not stripped.endswith("..."):
        return [Segment(f"{lead}{stripped[:-1]} ", numbers), Segment(stripped[-1])]
    return [Segment(f"{lead}{stripped} ", numbers)]


def short_question_covered(retriever: HybridRetriever, retrieval: Retrieval) -> bool:
    """Whether the top paper holds every *topic* term of the question: its terms except words
    that name the kind of answer wanted (``ASKING_WORDS``). "What is the indication for
    KYMRIAH?" was refused because "indication" is not in the paper that answers it
    ("Kymriah is for the treatment of ..."); its topic is "Kymriah" alone."""
    if not retrieval.papers:
        return False
    topic = ASKING_WORDS.sub(" ", retrieval.query)
    if not query_tokens(topic):
        return retrieval.coverage >= 1.0 - 1e-6
    top = retriever.position.get(retrieval.papers[0].pmid)
    if top is None:
        return retrieval.coverage >= 1.0 - 1e-6
    return float(retriever.lexical.coverage(topic, [top])[0]) >= 1.0 - 1e-6


def rare_words(retriever: HybridRetriever, question: str) -> list[str] | None:
    """The question's words that few papers use (their idf at least ``RARE_IDF_SHARE`` of
    the highest): the named things it asks about — a drug, gene, trial, disease. None when a
    word is unknown to the whole corpus (then the corpus cannot be about it)."""
    lexical = retriever.lexical
    idf: dict[str, float] = getattr(lexical, "_idf", {})
    ceiling = float(getattr(lexical, "_unseen_idf", 0.0))
    found: list[tuple[float, str]] = []
    for word in re.findall(r"[\w\-/]+", question):
        tokens = query_tokens(word)
        if not tokens:
            continue
        if any(token not in idf for token in tokens):
            return None
        found.append((min(idf[token] for token in tokens), word))
    rare = [word for value, word in found if value >= RARE_IDF_SHARE * ceiling]
    if not rare and found and max(found)[0] >= NAME_IDF_SHARE * ceiling:
        rare = [max(found)[1]]  # no word that rare: the rarest, if it is still a name
    return rare


def names_found(retriever: HybridRetriever, retrieval: Retrieval) -> bool:
    """Whether the top paper holds every rare word of the question (:func:`rare_words`; at
    least one) and the question is about that name. A topical question ("What is the
    mechanism of action of tucatinib?") often has words no single paper uses ("mechanism",
    "action") beside the one that names its topic; when the top paper names that topic, low
    word share alone is no reason to refuse. It answers when the top paper quotes a sentence
    close to the question (``NAMED_MIN_SIMILARITY``) and the question is short
    (``NAMED_MAX_TERMS``), or when the top paper holds every word of the question but its
    frame (``ASKING_WORDS``, ``FRAME_WORDS``) and a sentence is fairly close
    (``FRAMED_MIN_SIMILARITY``). "Does ketamine work as a rapid antidepressant?" is not
    answered by a paper that mentions ketamine for anaesthesia: "rapid" and "antidepressant"
    are not its frame."""
    if not retrieval.papers or retrieval.best_similarity < FRAMED_MIN_SIMILARITY:
        return False
    words = rare_words(retriever, retrieval.query)
    top = retriever.position.get(retrieval.papers[0].pmid)
    if not words or top is None:
        return False
    lexical = retriever.lexical
    if float(lexical.coverage(" ".join(words), [top])[0]) < 1.0 - 1e-6:
        return False
    if retrieval.best_similarity >= NAMED_MIN_SIMILARITY and retrieval.terms <= NAMED_MAX_TERMS:
        return True
    topic = FRAME_WORDS.sub(" ", ASKING_WORDS.sub(" ", retrieval.query))
    terms = set(query_tokens(topic))
    if not terms or len(terms) > NAMED_MAX_TERMS:
        return False
    return float(lexical.coverage(topic, [top])[0]) >= 1.0 - 1e-6


def names_in_title(retriever: HybridRetriever, retrieval: Retrieval, title: str) -> bool:
    """Whether ``title`` (the top paper's) names every rare word of the question
    (:func:`rare_words`; at least one). A paper whose title names the thing asked about is
    about it, even when its sentences are far from the question's wording ("What is
    PWMScan?", best sentence at 0.38) or lack the question's frame ("List the releases of
    tmVar"). A name met in passing, in an abstract only, does not count: that is how a
    question about something else finds a paper ("Is the HPV vaccine safe for boys?" and a
    paper that mentions HPV once)."""
    words = rare_words(retriever, retrieval.query) if retrieval.papers else None
    if not words:
        return False
    held = set(query_tokens(title))
    return all(set(query_tokens(word)) <= held for word in words)


def should_abstain(
    retrieval: Retrieval,
    threshold: float = ABSTAIN_THRESHOLD,
    *,
    short_covered: bool | None = None,
    named: bool = False,
) -> bool:
    """True when the evidence is too weak to quote: no paper, no sentence close enough in
    meaning (``MIN_BEST_SIMILARITY``), too little of the question in the top paper, or a
    short question (``SHORT_QUESTION_TERMS``) whose topic the top paper does not hold:
    ``short_covered`` (:func:`short_question_covered`), by default every term present."""
    if short_covered is None:
        short_covered = retrieval.coverage >= 1.0 - 1e-6
    return (
        not retrieval.papers
        or retrieval.best_similarity < MIN_BEST_SIMILARITY
        or (retrieval.confidence < threshold and not named)
        or (retrieval.terms <= SHORT_QUESTION_TERMS and not (short_covered or named))
    )
