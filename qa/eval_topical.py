"""``carqa eval`` on topical questions: several gold papers, gold snippets, a question type.

The file format is BioASQ's (one JSON object a line): ``question``, ``type`` (``factoid``,
``list``, ``yesno`` or ``summary``), ``pmids`` (the gold papers), ``snippets`` (``{"pmid",
"text"}``), ``exact_answer`` (factoid/list: lists of synonyms) and ``ideal_answer`` (reference
paragraphs). A file is read this way when its first question has ``pmids`` and ``type``; other
files keep the single-source format of :mod:`carqa.qa.eval`.

Scoring takes :class:`AnswerRecord` values — ranked pmids, cited sentences, answer text — so
answers of any system (an older carqa, a baseline script) can be scored with the same
:mod:`carqa.qa.measures`, which define each measure. Every question here is answerable:
an abstention scores 0 on snippet@3, exact and rouge2, and counts in ``abstain_rate``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from carqa.qa import measures
from carqa.qa.types import Filters

from carqa.errors import InputError

TYPES = ("factoid", "list", "yesno", "summary")
RANKED = measures.RANKED
LINE_HINT = (
    'Each line is one object: {"question", "type", "pmids": [...], "snippets": [{"pmid", '
    '"text"}], "exact_answer", "ideal_answer": [...]}.'
)


@dataclass(frozen=True)
class TopicalQuestion:
    question: str
    kind: str
    pmids: tuple[str, ...]
    snippets: tuple[str, ...]
    exact: Any
    ideal: str
    id: str = ""


@dataclass(frozen=True)
class AnswerRecord:
    """What is scored of one answer, whoever wrote it."""

    ranked: tuple[str, ...]
    cited: tuple[tuple[str, str], ...]  # (pmid, sentence), in citation order
    text: str
    abstained: bool
    latency_ms: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "ranked": list(self.ranked),
            "cited": [list(pair) for pair in self.cited],
            "text": self.text,
            "abstained": self.abstained,
            "latency_ms": self.latency_ms,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AnswerRecord:
        return cls(
            ranked=tuple(str(p) for p in data.get("ranked", [])),
            cited=tuple((str(p), str(t)) for p, t in data.get("cited", [])),
            text=str(data.get("text", "")),
            abstained=bool(data.get("abstained")),
            latency_ms=float(data.get("latency_ms", 0.0)),
        )


def is_topical(record: Any) -> bool:
    """A question record in the topical (BioASQ) format."""
    return isinstance(record, dict) and isinstance(record.get("pmids"), list) and "type" in record


def is_topical_file(path: Path) -> bool:
    """True when the first non-blank line of ``path`` is a topical question (unreadable or
    malformed files return False: the single-source loader then reports the error)."""
    try:
        with Path(path).open(encoding="utf-8-sig") as handle:
            for line in handle:
                if line.strip():
                    return is_topical(json.loads(line))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return False
    return False


def load_topical(path: Path, *, max_chars: int | None = None) -> list[TopicalQuestion]:
    """Parse a topical question file; a malformed line is an :class:`InputError` naming it."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8-sig").split("\n")
    except (OSError, UnicodeDecodeError) as error:
        raise InputError(f"Cannot read the question file {path}: {error}", hint=LINE_HINT) from None
    questions: list[TopicalQuestion] = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            raise InputError(f"{where}: not JSON ({error.msg}).", hint=LINE_HINT) from error
        if not is_topical(record):
            raise InputError(f'{where}: needs "type" and a list "pmids".', hint=LINE_HINT)
        question = record.get("question")
        if not isinstance(question, str) or not question.strip():
            raise InputError(f'{where}: needs a non-empty "question".', hint=LINE_HINT)
        if max_chars is not None and len(" ".join(question.split())) > max_chars:
            raise InputError(
                f"{where}: the question is longer than {max_chars} characters.",
                hint="Shorten it (CARQA_MAX_QUESTION_CHARS sets the limit).",
            )
        kind = record["type"]
        if kind not in TYPES:
            raise InputError(f"{where}: unknown type {kind!r}.", hint=f"Types: {', '.join(TYPES)}.")
        ideal = record.get("ideal_answer") or [""]
        snippets = record.get("snippets") or []
        questions.append(
            TopicalQuestion(
                question=question,
                kind=kind,
                pmids=tuple(str(p) for p in record["pmids"]),
                snippets=tuple(str(s.get("text", "")) for s in snippets if isinstance(s, dict)),
                exact=record.get("exact_answer"),
                ideal=ideal[0] if isinstance(ideal, list) else str(ideal),
                id=str(record.get("id", "")),
            )
        )
    if not questions:
        raise InputError(f"{path} holds no questions.")
    return questions


def answer_question(
    engine: Any, item: TopicalQuestion, *, k: int = 5, filters: Filters | None = None
) -> AnswerRecord:
    """Ask ``engine`` (a :class:`carqa.qa.engine.Engine`) and keep what is scored."""
    started = time.perf_counter()
    result = engine.ask_detailed(item.question, k=k, filters=filters, ranked=RANKED)
    latency = (time.perf_counter() - started) * 1000
    answer = result.answer
    return AnswerRecord(
        ranked=tuple(result.retrieval.pmids[:RANKED]),
        cited=tuple((c.pmid, c.text) for c in answer.citations),
        text=answer.answer,
        abstained=answer.abstained,
        latency_ms=latency,
    )


def score_one(item: TopicalQuestion, answer: AnswerRecord) -> dict[str, float | None]:
    """Every measure of one answer (None where a measure does not apply)."""
    cited = [text for _, text in answer.cited]
    answered = not answer.abstained
    exact = measures.exact_score(answer.text if answered else "", item.kind, item.exact)
    return {
        "map@10": measures.average_precision_at_10(answer.ranked, item.pmids),
        "success@1": measures.success_at_1(answer.ranked, item.pmids),
        "snippet@3": measures.snippet_hit(cited, item.snippets) if answered else 0.0,
        "exact": exact,
        "rouge2": measures.rouge2(answer.text, item.ideal) if answered else 0.0,
        "cite_precision": (
            measures.cite_precision([p for p, _ in answer.cited], item.pmids) if answered else None
        ),
        "abstain_rate": float(answer.abstained),
    }


def _summary(rows: Sequence[dict[str, float | None]]) -> dict[str, Any]:
    names = list(rows[0]) if rows else []
    result: dict[str, Any] = {"n": len(rows)}
    for name in names:
        values = [row[name] for row in rows if row[name] is not None]
        result[name] = round(float(np.mean(values)), 4) if values else None
    return result


def score(questions: Sequence[TopicalQuestion], answers: Sequence[AnswerRecord]) -> dict[str, Any]:
    """Measures overall and per question type, plus answer latency percentiles."""
    if len(questions) != len(answers):
        raise InputError(f"{len(answers)} answers for {len(questions)} questions.")
    rows = [score_one(q, a) for q, a in zip(questions, answers, strict=True)]
    latencies = [a.latency_ms for a in answers]
    report: dict[str, Any] = {
        "format": "topical",
        **_summary(rows),
        "latency_ms_p50": round(float(np.percentile(latencies, 50)), 3) if latencies else None,
        "latency_ms_p95": round(float(np.percentile(latencies, 95)), 3) if latencies else None,
        "by_type": {},
    }
    for kind in TYPES:
        chosen = [row for row, q in zip(rows, questions, strict=True) if q.kind == kind]
        if chosen:
            report["by_type"][kind] = _summary(chosen)
    return report


def evaluate_topical(
    engine: Any,
    questions: Sequence[TopicalQuestion],
    *,
    k: int = 5,
    filters: Filters | None = None,
    on_progress: Callable[[int], None] | None = None,
    answers_out: list[AnswerRecord] | None = None,
) -> dict[str, Any]:
    """Ask every question, then :func:`score` the answers (``answers_out`` receives them)."""
    answers: list[AnswerRecord] = []
    for item in questions:
        answers.append(answer_question(engine, item, k=k, filters=filters))
        if on_progress is not None:
            on_progress(1)
    if answers_out is not None:
        answers_out.extend(answers)
    return score(questions, answers)


def write_answers(path: Path, answers: Sequence[AnswerRecord]) -> None:
    """Answers as JSONL (one :meth:`AnswerRecord.to_dict` a line), in question order."""
    text = "".join(json.dumps(a.to_dict()) + "\n" for a in answers)
    Path(path).write_text(text, encoding="utf-8")


def load_answers(path: Path) -> list[AnswerRecord]:
    """Answers written by :func:`write_answers` (or by any system, in that shape)."""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
        return [AnswerRecord.from_dict(json.loads(line)) for line in lines if line.strip()]
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, TypeError, ValueError) as error:
        raise InputError(
            f"Cannot read the answers {path}: {error}",
            hint='Each line: {"ranked": [...], "cited": [[pmid, text]], "text", "abstained"}.',
        ) from None
