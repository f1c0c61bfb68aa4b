"""Which other papers state what an answer's sentence states: cited beside it, ``[1][2]``.

A topical question ("Which gene is mutated in Woodhouse-Sakati syndrome?") is often answered
by several papers in nearly the same words. The answer quotes one of them; the others are worth
naming, so the reader sees that the finding is not one paper's alone and can open each. Such a
paper *agrees* with a quoted sentence when one of its own sentences is

- nearly the same statement: cosine at least ``AGREE_COSINE`` with the quoted sentence;
- an answer to the question too: cosine at least ``carqa.qa.answer.PAPER_FLOOR`` with it;
- from a paper that holds the question's words about as well as the first
  (:func:`carqa.qa.answer.covering_papers`), among the papers read for the answer.

Its sentence becomes a citation of its own (its text is what the reader checks), numbered
after the answer's quoted sentences; the answer text stays the quoted sentences. A paper
already quoted does not agree again, a paper agrees with one sentence only (the closest), and a
sentence lists at most ``MAX_AGREEING`` papers.

On the BioASQ dev questions, 114 of 1,422 answers name agreeing papers (138 citations), and
88 % of those are gold papers, more than of the quoted sentences (85 %); the quoted sentences
and the answer text are unchanged. Over the first five papers, a sentence agreeing at cosine
0.85 came from a gold paper 86 % of the time, at 0.8 83 %, at 0.7 80 %.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from carqa.qa import answer as extractive
from carqa.qa.answer import Evidence
from carqa.qa.retrieve import HybridRetriever, Retrieval
from carqa.qa.types import Citation, Segment

AGREE_COSINE = 0.85
MAX_AGREEING = 2


def agreeing_evidence(
    retriever: HybridRetriever,
    retrieval: Retrieval,
    chosen: Sequence[Evidence],
    *,
    papers_read: int,
) -> list[list[Evidence]]:
    """For each sentence of ``chosen`` (an answer, in order), the sentences of other papers that
    state the same (see the module doc), closest first."""
    found: list[list[Evidence]] = [[] for _ in chosen]
    if not chosen:
        return found
    quoted = {evidence.pmid for evidence in chosen}
    hits = [hit for hit in retrieval.papers[:papers_read] if hit.pmid not in quoted]
    if not hits:
        return found
    covering = extractive.covering_papers(
        retriever, retrieval, [chosen[0].pmid, *(hit.pmid for hit in hits)]
    )
    matrix = retriever.index.sentence_matrix
    quoted_rows = np.stack([np.asarray(matrix[e.sentence_id]) for e in chosen])
    claims: list[tuple[float, int, Evidence]] = []
    for hit in hits:
        if hit.pmid not in covering:
            continue
        ids = retriever.paper_sentences(hit.pmid)
        if not len(ids):
            continue
        similarity = retrieval.sentence_scores[ids]
        usable = similarity >= extractive.PAPER_FLOOR
        if not usable.any():
            continue
        cosines = np.asarray(matrix[ids]) @ quoted_rows.T  # (its sentences, quoted sentences)
        cosines[~usable] = -1.0
        row, quoted_at = np.unravel_index(int(np.argmax(cosines)), cosines.shape)
        cosine = float(cosines[row, quoted_at])
        if cosine < AGREE_COSINE:
            continue
        evidence = extractive.evidence_at(retriever, retrieval, hit.pmid, hit.rank, int(ids[row]))
        claims.append((cosine, int(quoted_at), evidence))
    for _, quoted_at, evidence in sorted(claims, key=lambda claim: -claim[0]):
        if len(found[quoted_at]) < MAX_AGREEING:
            found[quoted_at].append(evidence)
    return found


def cited(
    retriever: HybridRetriever,
    chosen: Sequence[Evidence],
    agreeing: Sequence[Sequence[Evidence]],
) -> tuple[list[Citation], list[Segment]]:
    """The answer's citations and its segments (each quoted sentence with its own number, then
    the numbers of the papers agreeing with it). The quoted sentences are numbered first, in
    answer order, the agreeing papers after them: ``[1]`` is always the answer's lead."""
    citations = [extractive.citation_for(retriever, e, n) for n, e in enumerate(chosen, 1)]
    segments: list[Segment] = []
    for i, evidence in enumerate(chosen):
        numbers = [i + 1]
        for source in agreeing[i] if i < len(agreeing) else ():
            citations.append(extractive.citation_for(retriever, source, len(citations) + 1))
            numbers.append(len(citations))
        segments.extend(extractive.marked_segments(evidence.text, numbers, lead=" " if i else ""))
    return citations, segments


def sentence_pieces(segments: Sequence[Segment]) -> list[str]:
    """The answer text a sentence at a time, markers included (what a stream sends as deltas):
    a new piece starts at every cited segment."""
    pieces: list[str] = []
    for segment in segments:
        text = segment.text + "".join(f"[{n}]" for n in segment.citations)
        if segment.citations or not pieces:
            pieces.append(text)
        else:
            pieces[-1] += text
    return pieces
