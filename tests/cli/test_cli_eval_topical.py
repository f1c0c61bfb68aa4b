"""``carqa eval`` on a BioASQ-format question file: measures per type, answers out and back."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from carqa.cli import app

runner = CliRunner()


def test_eval_reads_topical_questions_and_scores_saved_answers(
    small_index_dir: Path, tmp_path: Path
) -> None:
    questions = tmp_path / "topical.jsonl"
    rows = [
        {
            "question": "Why do patients relapse after CD19 CAR T cell therapy?",
            "type": "summary",
            "pmids": ["90000004"],
            "snippets": [{"pmid": "90000004", "text": "Antigen escape through loss of CD19."}],
            "exact_answer": None,
            "ideal_answer": ["Loss of CD19 and poor CAR T cell persistence."],
        },
        {
            "question": "Does Kymriah produce lasting remissions?",
            "type": "yesno",
            "pmids": ["90000003"],
            "snippets": [],
            "exact_answer": "yes",
            "ideal_answer": ["Yes."],
        },
    ]
    questions.write_text("".join(json.dumps(r) + "\n" for r in rows))
    answers = tmp_path / "answers.jsonl"
    args = ["eval", "--questions", str(questions), "--index-dir", str(small_index_dir), "--json"]
    result = runner.invoke(app, [*args, "--answers-out", str(answers)])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["n"] == 2 and set(report["by_type"]) == {"summary", "yesno"}
    assert report["success@1"] == 1.0 and report["map@10"] == 1.0
    assert report["abstain_rate"] == 0.0
    assert report["latency_ms_p50"] > 0
    # Saved answers score the same without asking again.
    again = runner.invoke(app, [*args, "--score-answers", str(answers)])
    assert again.exit_code == 0, again.output
    rescored = json.loads(again.stdout)
    assert {k: v for k, v in rescored.items() if "latency" not in k} == {
        k: v for k, v in report.items() if "latency" not in k
    }
