"""``carqa ask``: a cited answer printed or as JSON, and the refusals (no index, a blank
question, a model that is not the index's, filters the API would refuse)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from carqa.cli import app
from tests.cli.helpers import RELAPSE, WIDE, other_model, runner


def test_ask_prints_answer_with_numbered_citations(small_index_dir: Path) -> None:
    result = runner.invoke(app, ["ask", RELAPSE, "--index-dir", str(small_index_dir)])
    assert result.exit_code == 0, result.output
    assert "[1]" in result.stdout
    assert "PMID 90000004" in result.stdout
    assert "https://pubmed.ncbi.nlm.nih.gov/90000004/" in result.stdout


def test_ask_json(small_index_dir: Path) -> None:
    result = runner.invoke(
        app, ["ask", RELAPSE, "--json", "--k", "3", "--index-dir", str(small_index_dir)]
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["abstained"] is False
    assert data["citations"][0]["pmid"] == "90000004"
    assert data["query"] == RELAPSE


def test_ask_filters(small_index_dir: Path) -> None:
    result = runner.invoke(
        app,
        ["ask", RELAPSE, "--json", "--year-from", "2030", "--index-dir", str(small_index_dir)],
    )
    assert result.exit_code == 0
    assert json.loads(result.stdout)["abstained"] is True
    result = runner.invoke(
        app,
        ["ask", RELAPSE, "--json", "--pmid", "90000011", "--index-dir", str(small_index_dir)],
    )
    assert {c["pmid"] for c in json.loads(result.stdout)["citations"]} == {"90000011"}
    result = runner.invoke(
        app,
        [
            *("ask", RELAPSE, "--json", "--exclude-pmid", "90000004"),
            *("--index-dir", str(small_index_dir)),
        ],
    )
    assert result.exit_code == 0, result.output
    cited = {c["pmid"] for c in json.loads(result.stdout)["citations"]}
    assert "90000004" not in cited  # the best paper for RELAPSE (test_ask_json)


def test_ask_off_topic_abstains(small_index_dir: Path) -> None:
    result = runner.invoke(
        app, ["ask", "How do I caramelize onions?", "--index-dir", str(small_index_dir)]
    )
    assert result.exit_code == 0
    assert "does not seem to answer" in result.stdout


def test_missing_index_is_a_clear_error(tmp_path: Path) -> None:
    for args in (["ask", RELAPSE], ["chat"], ["eval", "--questions", "q.jsonl"]):
        if args[0] == "eval":
            (tmp_path / "q.jsonl").write_text('{"question": "x", "pmid": null}\n')
            args = ["eval", "--questions", str(tmp_path / "q.jsonl")]
        result = runner.invoke(app, [*args, "--index-dir", str(tmp_path / "nowhere")])
        assert result.exit_code == 1, args
        assert "Error:" in result.stderr
        assert "carqa build" in result.stderr  # the hint
        assert "Traceback" not in result.output


def test_empty_question_is_an_input_error(small_index_dir: Path) -> None:
    result = runner.invoke(app, ["ask", "  ", "--index-dir", str(small_index_dir)])
    assert result.exit_code == 2
    assert "empty" in result.stderr


def test_an_invisible_question_is_refused_like_a_blank_one(small_index_dir: Path) -> None:
    """A zero-width space, word joiner or soft hyphen alone was searched and abstained."""
    blank = runner.invoke(app, ["ask", "  ", "--index-dir", str(small_index_dir)])
    invisible = runner.invoke(
        app, ["ask", "\u200b\u2060\u00ad", "--index-dir", str(small_index_dir)]
    )
    assert invisible.exit_code == blank.exit_code == 2
    assert invisible.stderr == blank.stderr
    assert invisible.stdout == blank.stdout == ""


# -- a model asked for must be the index's own ----------------------------------------------


def test_a_model_other_than_the_indexs_is_refused(small_index_dir: Path, tmp_path: Path) -> None:
    other = other_model(tmp_path / "other-model")
    result = runner.invoke(
        app,
        ["ask", RELAPSE, "--index-dir", str(small_index_dir)],
        env={"CARQA_MODEL": str(other), "COLUMNS": "250"},
    )
    assert result.exit_code == 1
    assert "Traceback" not in result.output
    assert "was built with model 'default'" in result.stderr
    assert f"you asked for '{other}'" in result.stderr
    assert f"carqa build --index-dir {small_index_dir} --model {other}" in result.stderr


def test_a_missing_model_folder_is_refused(small_index_dir: Path) -> None:
    result = runner.invoke(
        app,
        ["ask", RELAPSE, "--index-dir", str(small_index_dir)],
        env={"CARQA_MODEL": "/nonexistent/model", "COLUMNS": "250"},
    )
    assert result.exit_code == 1
    assert "Traceback" not in result.output
    assert "Embedding model folder /nonexistent/model does not exist." in result.stderr


def test_the_indexs_own_model_asked_for_by_name_is_used(small_index_dir: Path) -> None:
    result = runner.invoke(
        app,
        ["ask", RELAPSE, "--json", "--index-dir", str(small_index_dir)],
        env={"CARQA_MODEL": "default"},
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["citations"][0]["pmid"] == "90000004"


# -- filters are checked as the API checks them ---------------------------------------------


@pytest.mark.parametrize(
    ("flag", "value"), [("--pmid", "abc"), ("--pmid", "12 3"), ("--exclude-pmid", "9000000x")]
)
def test_a_pmid_filter_that_is_not_digits_is_a_usage_error(
    small_index_dir: Path, flag: str, value: str
) -> None:
    result = runner.invoke(
        app, ["ask", RELAPSE, flag, value, "--index-dir", str(small_index_dir)], env=WIDE
    )
    assert result.exit_code == 2
    assert "Traceback" not in result.output
    assert f"Invalid value for '{flag}': {value!r} is not a PMID" in result.output


def test_reversed_years_are_an_input_error(small_index_dir: Path) -> None:
    result = runner.invoke(
        app,
        [
            *("ask", RELAPSE, "--year-from", "2020", "--year-to", "2010"),
            *("--index-dir", str(small_index_dir)),
        ],
        env=WIDE,
    )
    assert result.exit_code == 2
    assert "Traceback" not in result.output
    assert "Error: --year-from 2020 is after --year-to 2010" in result.stderr


def test_a_one_year_range_is_accepted(small_index_dir: Path) -> None:
    result = runner.invoke(
        app,
        [
            *("ask", RELAPSE, "--json", "--year-from", "2019", "--year-to", "2019"),
            *("--index-dir", str(small_index_dir)),
        ],
    )
    assert result.exit_code == 0, result.output
