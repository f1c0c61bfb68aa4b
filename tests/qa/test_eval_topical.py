"""``carqa.qa.eval_topical``: reading BioASQ-format files and scoring answers per type."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from carqa.qa.eval_topical import (
    AnswerRecord,
    is_topical_file,
    load_answers,
    load_topical,
    score,
    write_answers,
)

from carqa.errors import InputError

QUESTIONS = [
    {
        "question": "Which drug treats disease Q?",
        "type": "factoid",
        "pmids": ["1", "2"],
        "snippets": [{"pmid": "1", "text": "Drug Z treats disease Q in adults."}],
        "exact_answer": [["drug Z"]],
        "ideal_answer": ["Drug Z treats disease Q."],
    },
    {
        "question": "Is drug Z safe?",
        "type": "yesno",
        "pmids": ["3"],
        "snippets": [{"pmid": "3", "text": "Drug Z was safe in every trial."}],
        "exact_answer": "yes",
        "ideal_answer": ["Yes, drug Z was safe."],
    },
]


def _write(tmp_path: Path, rows: list[dict]) -> Path:
    path = tmp_path / "questions.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def test_a_bioasq_file_is_recognised_and_a_single_source_file_is_not(tmp_path: Path) -> None:
    assert is_topical_file(_write(tmp_path, QUESTIONS))
    single = tmp_path / "single.jsonl"
    single.write_text('{"question": "q?", "pmid": "1"}\n', encoding="utf-8")
    assert not is_topical_file(single)


def test_an_unknown_type_names_its_line(tmp_path: Path) -> None:
    path = _write(tmp_path, [QUESTIONS[0], {**QUESTIONS[1], "type": "essay"}])
    with pytest.raises(InputError, match=":2: unknown type"):
        load_topical(path)


def test_scores_overall_and_per_type_and_an_abstention_scores_zero(tmp_path: Path) -> None:
    items = load_topical(_write(tmp_path, QUESTIONS))
    answers = [
        AnswerRecord(
            ranked=("1", "x", "2"),
            cited=(("1", "Drug Z treats disease Q in adults."), ("x", "Other.")),
            text="Drug Z treats disease Q in adults [1]. Other [2].",
            abstained=False,
            latency_ms=10.0,
        ),
        AnswerRecord(ranked=("3",), cited=(), text="", abstained=True, latency_ms=30.0),
    ]
    report = score(items, answers)
    factoid, yesno = report["by_type"]["factoid"], report["by_type"]["yesno"]
    assert factoid["map@10"] == pytest.approx((1 + 2 / 3) / 2, abs=1e-4)
    assert factoid["exact"] == 1.0 and factoid["snippet@3"] == 1.0
    assert factoid["cite_precision"] == 0.5
    assert yesno["map@10"] == 1.0 and yesno["abstain_rate"] == 1.0
    assert yesno["snippet@3"] == 0.0 and yesno["rouge2"] == 0.0 and yesno["exact"] is None
    # Overall: exact only over the questions it applies to; cite precision over answered ones.
    assert report["exact"] == 1.0 and report["cite_precision"] == 0.5
    assert report["abstain_rate"] == 0.5 and report["latency_ms_p50"] == 20.0


def test_answers_round_trip_through_jsonl(tmp_path: Path) -> None:
    answers = [AnswerRecord(("1",), (("1", "A sentence."),), "A sentence [1].", False, 3.5)]
    path = tmp_path / "answers.jsonl"
    write_answers(path, answers)
    assert load_answers(path) == answers
