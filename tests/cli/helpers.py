"""Shared by the CLI tests: the runner, the fixture corpus and a question its index answers,
``carqa chat`` driven by typed lines, a model folder that is not the index's, and the check
every refusal must pass (a message, no traceback)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from carqa.index.corpus.store import CorpusStore
from typer.testing import CliRunner, Result

from carqa.cli import app

REPO = Path(__file__).resolve().parents[2]
CAR_T = REPO / "tests" / "fixtures" / "car_t_papers.jsonl"
MARKUP_XML = REPO / "tests" / "index" / "fixtures" / "entrez" / "efetch_markup.xml"

runner = CliRunner()
WIDE = {"COLUMNS": "250"}  # no line wrapping in the middle of what a test looks for
RELAPSE = "Why do patients relapse after CD19 CAR T cell therapy?"


def invoke(*args: str, env: dict[str, str] | None = None) -> Result:
    return runner.invoke(app, list(args), env={**WIDE, **(env or {})})


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


def chat(index_dir: Path, *lines: str, options: tuple[str, ...] = ()) -> Result:
    """``carqa chat`` typed into: each line one message, then end of input (Ctrl-D)."""
    result = runner.invoke(
        app,
        ["chat", "--index-dir", str(index_dir), *options],
        input="".join(f"{line}\n" for line in lines),
        env=WIDE,
    )
    assert result.exit_code == 0, result.output
    return result


def other_model(folder: Path) -> Path:
    """A folder that resolves as a model (weights, a 384-d config) unlike the index's."""
    folder.mkdir()
    (folder / "model.safetensors").write_bytes(bytes(range(256)) * 16)
    (folder / "config.json").write_text('{"hidden_size": 384}')
    return folder


class Recorder:
    """Stands in for a callable (``uvicorn.run``): records each call's arguments."""

    def __init__(self) -> None:
        self.calls: list[tuple[tuple[Any, ...], dict[str, Any]]] = []

    def __call__(self, *args: Any, **kwargs: Any) -> None:
        self.calls.append((args, kwargs))
