"""``carqa eval`` on a PubMedQA-style question file: JSON alone on stdout, malformed or
over-long questions refused, unindexed pmids warned about, the first question timed cold."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from carqa.cli import app
from tests.cli.helpers import RELAPSE, runner


def test_eval_json_alone_on_stdout(small_index_dir: Path, tmp_path: Path) -> None:
    questions = tmp_path / "questions.jsonl"
    rows = [
        {
            "question": RELAPSE,
            "pmid": "90000004",
            "conclusion": "Antigen escape through loss of CD19 and poor CAR T cell persistence "
            "are the two main causes of relapse after CD19 CAR T cell therapy.",
        },
        {"question": "Does Kymriah produce lasting remissions?", "pmid": "90000003"},
        {"question": "What is the offside rule in football?", "pmid": None},
    ]
    questions.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    result = runner.invoke(
        app,
        ["eval", "--questions", str(questions), "--index-dir", str(small_index_dir), "--json"],
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    for key in (
        "n",
        "recall@1",
        "recall@5",
        "recall@10",
        "mrr",
        "conclusion@1",
        "conclusion@3",
        "abstain_rate_answerable",
        "abstain_rate_unanswerable",
        "abstain_rate_source_left_out",
        "latency_ms_p50",
        "latency_ms_p95",
        "latency_ms_encode_p50",
        "latency_ms_answer_p50",
    ):
        assert key in report
    assert report["n"] == 3
    assert report["recall@1"] == 1.0
    assert report["mrr"] == 1.0
    assert report["conclusion@1"] == 1.0
    assert report["abstain_rate_answerable"] == 0.0
    assert report["abstain_rate_unanswerable"] == 1.0
    assert report["latency_ms_p50"] > 0
    assert 0 < report["latency_ms_encode_p50"] < report["latency_ms_p95"]
    assert 0 < report["latency_ms_answer_p50"] < report["latency_ms_p95"]
    assert 0.0 <= report["abstain_rate_source_left_out"] <= 1.0
    assert "Evaluating" in result.stderr
    result = runner.invoke(
        app,
        [
            *("eval", "--questions", str(questions), "--index-dir", str(small_index_dir)),
            *("--json", "--no-leave-source-out"),
        ],
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["abstain_rate_source_left_out"] is None


def test_eval_rejects_a_malformed_file(small_index_dir: Path, tmp_path: Path) -> None:
    questions = tmp_path / "bad.jsonl"
    questions.write_text('{"pmid": "1"}\n')
    result = runner.invoke(
        app, ["eval", "--questions", str(questions), "--index-dir", str(small_index_dir)]
    )
    assert result.exit_code == 2
    assert "bad.jsonl:1" in result.stderr


def test_eval_refuses_an_over_long_question_before_asking(
    small_index_dir: Path, tmp_path: Path
) -> None:
    questions = tmp_path / "long.jsonl"
    rows = [{"question": RELAPSE, "pmid": "90000004"}] * 3 + [{"question": "y" * 1599}]
    questions.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    result = runner.invoke(
        app, ["eval", "--questions", str(questions), "--index-dir", str(small_index_dir)]
    )
    assert result.exit_code == 2
    stderr = " ".join(result.stderr.split())  # rich wraps long lines
    assert "long.jsonl:4: the question is 1599 characters long" in stderr
    assert "Evaluating" not in result.stderr  # refused before the first question


def test_eval_warns_about_pmids_not_in_the_index(small_index_dir: Path, tmp_path: Path) -> None:
    questions = tmp_path / "questions.jsonl"
    rows = [
        {"question": RELAPSE, "pmid": "90000004"},
        {"question": "Does Kymriah produce lasting remissions?", "pmid": "12345"},
        {"question": "What is the offside rule in football?", "pmid": None},
    ]
    questions.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    result = runner.invoke(
        app,
        [
            *("eval", "--questions", str(questions), "--index-dir", str(small_index_dir)),
            *("--json", "--no-leave-source-out"),
        ],
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["n"] == 3  # stdout is still the JSON alone
    stderr = " ".join(result.stderr.split())  # rich wraps long lines
    warning = (
        "Warning: 1 of 3 questions name a pmid that is not in the index; they count as misses."
    )
    assert stderr.count(warning) == 1


def test_eval_times_the_first_question_without_a_cached_vector(
    small_index_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from carqa.qa.retrieve import HybridRetriever

    cache_hits: list[str] = []
    encode = HybridRetriever.encode

    def spy(self: HybridRetriever, text: str, **kwargs: object) -> object:
        if text in self._cache:
            cache_hits.append(text)
        return encode(self, text, **kwargs)

    monkeypatch.setattr(HybridRetriever, "encode", spy)
    questions = tmp_path / "one.jsonl"
    questions.write_text(json.dumps({"question": RELAPSE, "pmid": "90000004"}) + "\n")
    result = runner.invoke(
        app,
        [
            *("eval", "--questions", str(questions), "--index-dir", str(small_index_dir)),
            *("--json", "--no-leave-source-out"),
        ],
    )
    assert result.exit_code == 0, result.output
    assert cache_hits == []  # the warm-up must not have encoded the question being timed
