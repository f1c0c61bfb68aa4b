"""Measure retrieval and answer quality on a question file (``carqa eval``).

The question file is JSONL, one object a line: ``question``; ``pmid``, the abstract the question
was written from (``null`` for a question the corpus cannot answer); optionally ``conclusion``,
that abstract's conclusion text. (A file of topical questions with several gold papers — the
BioASQ format — is measured by :mod:`carqa.qa.eval_topical` instead.) Measures:

- ``recall@k`` / ``mrr``: where the source pmid lands among the ranked papers (answerable
  questions; the ranking is taken even when the answer abstains);
- ``conclusion@1`` / ``conclusion@3``: among the first 1 / 3 sentences the answer cites, one comes
  from the source pmid and its whitespace-normalised text occurs in ``conclusion`` (questions
  with a conclusion; an abstention scores 0);
- ``abstain_rate_answerable`` / ``abstain_rate_unanswerable``;
- ``abstain_rate_source_left_out`` (with ``leave_source_out``): each answerable question asked
  again with its source paper filtered out. A hand-written off-topic list tests questions far
  from the corpus; this tests the harder case — a question in the corpus's own field and style
  whose answer is simply not indexed — without a second index. (The corpus statistics stay
  those of the full corpus. On 250 PubMedQA dev questions, with a coverage weight of 0.2 and
  an abstention threshold of 0.65, an index rebuilt without their sources abstained on 62.8%,
  this measure on 57.6%: the filtered corpus still holds the other questions' sources as
  distractors, so it is the harder of the two.)
- ``latency_ms_p50`` / ``latency_ms_p95``: wall time of each in-process answer;
- ``latency_ms_encode_p50`` / ``latency_ms_answer_p50``: the same split in two, encoding the
  question (the model's forward pass) and everything else (retrieval, evidence, citations) —
  the first is the part a faster CPU or a smaller model changes.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Container, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
from carqa.index.corpus.sources import PMID
from carqa.qa.blank import is_blank
from carqa.qa.engine import Engine
from carqa.qa.types import Filters

from carqa.errors import InputError

RANKED = 10
WARM_UP_QUESTION = "carqa eval warm-up: which patients respond to CAR T cell therapy?"
"""Asked once before timing (:func:`warm_up`). Not a question of the file: the engine caches
question vectors, so warming up with the first question made its timed encoding a cache hit
(``latency_ms_encode_p50`` of a one-question file was ~0)."""
LINE_HINT = (
    'Each line is one object: {"question": "...", "pmid": "123" or null, "conclusion"?: "..."}.'
)


@dataclass(frozen=True)
class EvalQuestion:
    question: str
    pmid: str | None
    conclusion: str | None = None


def normalise_space(text: str) -> str:
    return " ".join(text.split())


def load_questions(path: Path, *, max_chars: int | None = None) -> list[EvalQuestion]:
    """Parse a question file; a malformed line is an :class:`InputError` naming the line.

    With ``max_chars`` (``Settings.max_question_chars``) each question is also checked the way
    the engine will check it (whitespace collapsed, then its length), so one over-long question
    stops the run here, with its line number, rather than halfway through the measurement.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as error:
        raise InputError(
            f"Cannot read the question file {path}: {error.strerror or error}",
            hint=f"Pass a JSONL file. {LINE_HINT}",
        ) from error
    # JSON Lines end at "\n" (a "\r" before it is JSON whitespace). Not str.splitlines: it
    # also splits at U+2028, U+2029 and U+0085, which JSON strings may hold unescaped.
    lines = _decode(path, data).split("\n")
    questions: list[EvalQuestion] = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            raise InputError(f"{path}:{number}: not JSON ({error.msg}).", hint=LINE_HINT) from error
        if not isinstance(record, dict):
            raise InputError(f"{path}:{number}: not a JSON object.", hint=LINE_HINT)
        if is_blank(_text(record.get("question"))):  # as the engine would refuse it
            raise InputError(
                f'{path}:{number}: needs a non-empty "question" (a string).', hint=LINE_HINT
            )
        length = len(normalise_space(record["question"]))
        if max_chars is not None and length > max_chars:
            raise InputError(
                f"{path}:{number}: the question is {length} characters long; "
                f"the limit is {max_chars}.",
                hint="Shorten it (CARQA_MAX_QUESTION_CHARS sets the limit).",
            )
        conclusion = record.get("conclusion")
        if conclusion is not None and not isinstance(conclusion, str):
            raise InputError(f'{path}:{number}: "conclusion" must be a string or null.')
        questions.append(
            EvalQuestion(
                question=record["question"],
                pmid=_source_pmid(record.get("pmid"), f"{path}:{number}"),
                conclusion=conclusion if conclusion and conclusion.strip() else None,
            )
        )
    if not questions:
        raise InputError(f"{path} holds no questions.")
    return questions


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _source_pmid(value: Any, where: str) -> str | None:
    """A question's source pmid as the index spells it: ``"31844332"`` from that string (spaces
    around it dropped) or from the number 31844332; None from null or "" (unanswerable).
    Anything else (``true``, ``3.1e7``, a list, "PMID:1") is an ``InputError``: it could never
    match an indexed paper, and would silently count as a miss."""
    if value is None or value == "":
        return None
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        value = str(value)
    if isinstance(value, str) and PMID.fullmatch(value.strip()):
        return value.strip()
    raise InputError(
        f'{where}: "pmid" must be a PubMed id (1 to 10 digits) or null, not {json.dumps(value)}.'
    )


def _decode(path: Path, data: bytes) -> str:
    """The file's text: UTF-8, with or without the byte-order mark some editors write (it
    made line 1 "not JSON"). Other bytes are an ``InputError`` naming the line, not a
    ``UnicodeDecodeError`` traceback."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = data.count(b"\n", 0, error.start) + 1
        raise InputError(
            f"{path}:{line}: not UTF-8 text (byte {data[error.start]:#04x}).",
            hint="Save the question file as UTF-8 (JSON text is UTF-8).",
        ) from None


def warm_up(engine: Engine) -> None:
    """Run the whole answering path once (encoder, ranking, numpy's first calls) so the first
    timed question is not slower than the others."""
    engine.ask_detailed(WARM_UP_QUESTION, k=1, ranked=1)


def unindexed_sources(questions: Sequence[EvalQuestion], indexed: Container[str]) -> int:
    """How many questions name a source pmid the index does not hold. Each is a certain miss
    in recall@k and MRR; many usually mean the question file belongs to another corpus."""
    return sum(1 for item in questions if item.pmid is not None and item.pmid not in indexed)


def left_out_questions(
    questions: Sequence[EvalQuestion], indexed: Container[str]
) -> list[EvalQuestion]:
    """The questions ``leave_source_out`` asks again: those whose source the index holds.
    Leaving out a paper that is not indexed changes nothing, so re-asking such a question
    would count an ordinary (usually answered) question as "source left out"."""
    return [item for item in questions if item.pmid is not None and item.pmid in indexed]


def _mean(values: Sequence[float]) -> float | None:
    return round(float(np.mean(values)), 4) if values else None


def evaluate(
    engine: Engine,
    questions: Sequence[EvalQuestion],
    *,
    k: int = 5,
    filters: Filters | None = None,
    leave_source_out: bool = False,
    on_progress: Callable[[int], None] | None = None,
) -> dict[str, Any]:
    """Run every question through ``engine`` and compute the measures (see module doc).
    ``on_progress(1)`` is called per question asked: ``len(questions)`` times, plus once per
    question of :func:`left_out_questions` with ``leave_source_out``."""
    ranks: list[int | None] = []
    conclusion_hits: list[tuple[bool, bool]] = []
    abstained_answerable: list[bool] = []
    abstained_unanswerable: list[bool] = []
    abstained_left_out: list[bool] = []
    latencies: list[float] = []
    encoding: list[float] = []
    for item in questions:
        started = time.perf_counter()
        result = engine.ask_detailed(item.question, k=k, filters=filters, ranked=RANKED)
        latencies.append((time.perf_counter() - started) * 1000)
        encoding.append(result.retrieval.timings.get("encode", 0.0))
        answer = result.answer
        if item.pmid is None:
            abstained_unanswerable.append(answer.abstained)
        else:
            abstained_answerable.append(answer.abstained)
            pmids = result.retrieval.pmids[:RANKED]
            ranks.append(pmids.index(item.pmid) if item.pmid in pmids else None)
            if item.conclusion is not None:
                conclusion = normalise_space(item.conclusion)
                hits = [
                    c.pmid == item.pmid and normalise_space(c.text) in conclusion
                    for c in answer.citations
                ]
                conclusion_hits.append((any(hits[:1]), any(hits[:3])))
        if on_progress is not None:
            on_progress(1)
    # A second pass, after the timed one, so the latencies above are measured exactly as
    # without it (work between two questions slows the next one's encoding a little).
    for item in left_out_questions(questions, engine.index.papers) if leave_source_out else ():
        assert item.pmid is not None
        without = without_paper(filters, item.pmid)
        again = engine.ask_detailed(item.question, k=k, filters=without, ranked=RANKED)
        abstained_left_out.append(again.answer.abstained)
        if on_progress is not None:
            on_progress(1)

    def recall(at: int) -> float | None:
        return _mean([1.0 if r is not None and r < at else 0.0 for r in ranks])

    return {
        "n": len(questions),
        "n_answerable": len(abstained_answerable),
        "n_unanswerable": len(abstained_unanswerable),
        "recall@1": recall(1),
        "recall@5": recall(5),
        "recall@10": recall(10),
        "mrr": _mean([0.0 if r is None else 1.0 / (r + 1) for r in ranks]),
        "conclusion@1": _mean([float(h[0]) for h in conclusion_hits]),
        "conclusion@3": _mean([float(h[1]) for h in conclusion_hits]),
        "abstain_rate_answerable": _mean([float(a) for a in abstained_answerable]),
        "abstain_rate_unanswerable": _mean([float(a) for a in abstained_unanswerable]),
        "abstain_rate_source_left_out": _mean([float(a) for a in abstained_left_out]),
        "latency_ms_p50": round(float(np.percentile(latencies, 50)), 3),
        "latency_ms_p95": round(float(np.percentile(latencies, 95)), 3),
        "latency_ms_encode_p50": round(float(np.percentile(encoding, 50)), 3),
        "latency_ms_answer_p50": round(
            float(np.percentile(np.subtract(latencies, encoding), 50)), 3
        ),
    }


def without_paper(filters: Filters | None, pmid: str) -> Filters:
    """``filters`` (or none) that also leave paper ``pmid`` out."""
    base = filters or Filters()
    return replace(base, exclude_pmids=[*(base.exclude_pmids or []), pmid])
