from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from carqa.cli import app
from carqa.cli.common import friendly_errors
from carqa.errors import InputError

runner = CliRunner()
WIDE = {"COLUMNS": "250"}  # no line wrapping in the middle of what a test looks for


def test_help_lists_every_subcommand() -> None:
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for command in ("build", "ask", "chat", "serve", "eval", "snapshot"):
        assert command in result.output


def test_version() -> None:
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.output.startswith("carqa ")


def test_console_script_is_installed() -> None:
    completed = subprocess.run(
        [sys.executable, "-m", "carqa.cli", "--help"], capture_output=True, text=True, check=False
    )
    assert completed.returncode == 0
    assert "snapshot" in completed.stdout


# -- rich markup: user text is printed as written, help text is not eaten ------------------


def _no_traceback(result) -> None:
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)


@pytest.mark.parametrize("name", ["x[/bold]y", "[red]dir"])
def test_error_quoting_a_path_with_brackets_prints_it_verbatim(tmp_path: Path, name: str) -> None:
    where = tmp_path / name
    result = runner.invoke(app, ["ask", "relapse", "--index-dir", str(where)], env=WIDE)
    assert result.exit_code == 1, result.output
    _no_traceback(result)
    assert f"Error: {where} does not exist." in result.stderr
    # the hint quotes it too, as a shell word to paste (brackets would glob)
    assert f"--index-dir {shlex.quote(str(where))}" in result.stderr


def test_error_and_hint_are_not_read_as_markup() -> None:
    probe = typer.Typer()

    @probe.command()
    @friendly_errors
    def fail() -> None:
        raise InputError("bad [/bold] value [red]x", hint='pip install -e ".[llm]"')

    result = runner.invoke(probe, [], env=WIDE)
    assert result.exit_code == 2
    _no_traceback(result)
    assert "Error: bad [/bold] value [red]x" in result.stderr
    assert 'Hint: pip install -e ".[llm]"' in result.stderr


def _commands(command, path: str = "carqa"):
    yield path, command
    for name, sub in getattr(command, "commands", {}).items():  # a group's subcommands
        yield from _commands(sub, f"{path} {name}")


def test_no_help_text_is_eaten_as_markup() -> None:
    """A literal "[default: 8000]" or "carqa[scale]" in a help text is shown as written: help
    must not be read as rich markup, which would make bracketed words vanish."""
    checked = 0
    for path, command in _commands(typer.main.get_command(app)):
        args = path.split()[1:]
        shown = " ".join(runner.invoke(app, [*args, "--help"], env=WIDE).output.split())
        texts = [command.help or ""] + [getattr(p, "help", None) or "" for p in command.params]
        for text in texts:
            for bracketed in re.findall(r"\S*\[[^\]]*\]", text):
                assert " ".join(bracketed.split()) in shown, f"{path}: {bracketed!r} not shown"
                checked += 1
    assert checked >= 1  # at least "carqa[scale]" (build --runner)


def test_serve_and_ask_help_show_their_bracketed_notes() -> None:
    serve = runner.invoke(app, ["serve", "--help"], env=WIDE).output
    assert "Interface to bind (default: 127.0.0.1)." in serve
    assert "Port to listen on (default: 8000)." in serve
    ask = runner.invoke(app, ["ask", "--help"], env=WIDE).output
    assert "'ollama' (env: CARQA_LLM_*)." in ask
