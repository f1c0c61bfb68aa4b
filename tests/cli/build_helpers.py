"""Shared by the ``carqa build`` and ``carqa snapshot`` CLI tests: running the command, the
fixture corpus, and checks every refusal must pass (no traceback)."""

from __future__ import annotations

import json
from pathlib import Path

from carqa.index.corpus.store import CorpusStore
from typer.testing import CliRunner, Result

from carqa.cli import app

REPO = Path(__file__).resolve().parents[2]
CAR_T = REPO / "tests" / "fixtures" / "car_t_papers.jsonl"
MARKUP_XML = REPO / "tests" / "index" / "fixtures" / "entrez" / "efetch_markup.xml"

runner = CliRunner()


def invoke(*args: str, env: dict[str, str] | None = None) -> Result:
    return runner.invoke(app, list(args), env={"COLUMNS": "250", **(env or {})})


def no_traceback(result: Result) -> None:
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)


def store_car_t(index_dir: Path) -> str:
    """Store the CAR T fixture corpus (no index) in ``index_dir``; its content hash."""
    result = invoke("build", "--from", str(CAR_T), "--index-dir", str(index_dir), "--no-index")
    assert result.exit_code == 0, result.output
    with CorpusStore.open(index_dir) as store:
        return store.content_hash()


def write_jsonl(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path
