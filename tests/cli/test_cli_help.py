"""``carqa ... --help`` at 80 columns reads like ``git``'s: whole option names, values shown
as PATH/N/TEXT rather than Python types, arguments by name, paragraphs filled."""

from __future__ import annotations

import re

import pytest
import typer
from typer.testing import CliRunner

from carqa.cli import app

runner = CliRunner()
COLUMNS = {"COLUMNS": "80"}


def _commands(command, words: tuple[str, ...] = ()):
    yield words, command
    for name, sub in getattr(command, "commands", {}).items():
        yield from _commands(sub, (*words, name))


COMMANDS = [words for words, _ in _commands(typer.main.get_command(app))]


def _help(words: tuple[str, ...]) -> str:
    result = runner.invoke(app, [*words, "--help"], env=COLUMNS)
    assert result.exit_code == 0, result.output
    return result.output


@pytest.mark.parametrize("words", COMMANDS, ids=lambda words: " ".join(words) or "carqa")
def test_help_fits_80_columns_without_python_types(words: tuple[str, ...]) -> None:
    text = _help(words)
    for line in text.splitlines():
        assert len(line) <= 80, line
    assert "…" not in text and "╭" not in text  # no boxes that cut option names short
    assert not re.search(r"<(bool|str|int|path|file|list\[)", text, re.IGNORECASE), text
    usage = text.splitlines()[0]
    assert "{" not in usage, usage


@pytest.mark.parametrize("words", [w for w in COMMANDS if w], ids=" ".join)
def test_help_shows_every_option_name_whole(words: tuple[str, ...]) -> None:
    text = _help(words)
    command = typer.main.get_command(app)
    for word in words:
        command = command.commands[word]  # type: ignore[attr-defined]
    for param in command.params:
        for name in [*param.opts, *param.secondary_opts]:
            if name.startswith("-"):
                assert re.search(rf"(^|[ ,/]){re.escape(name)}( |,|$)", text, re.M), name


def test_flags_take_no_value_and_values_are_named() -> None:
    eval_help = _help(("eval",))
    assert "--leave-source-out / --no-leave-source-out" in eval_help
    assert re.search(r"^  --json  ", eval_help, re.M)  # a flag: no placeholder after it
    assert "--questions FILE" in eval_help and "--k N" in eval_help
    ask_help = _help(("ask",))
    assert "Usage: carqa ask [OPTIONS] QUESTION" in ask_help.replace("python -m carqa.cli", "carqa")
    assert "--pmid PMID" in ask_help
    build_help = _help(("build",))
    assert "--from PATH" in build_help and "--email ADDRESS" in build_help
    assert _help(()).count("--version  ") == 1


def test_build_description_is_filled_not_broken_mid_sentence() -> None:
    """The docstring's own line breaks must not survive into the help: at 80 columns they
    left "2019) and" alone on a line."""
    text = _help(("build",))
    description = text.split("Options:")[0]
    paragraphs = [p.splitlines() for p in description.split("\n\n") if p.strip()]
    for lines in paragraphs[1:]:
        for line in lines[:-1]:  # every line of a paragraph but its last is filled
            assert len(line) > 60, line
    assert "every paper it cites" in " ".join(description.split())
