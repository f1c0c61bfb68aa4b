from __future__ import annotations

import subprocess
import sys

from typer.testing import CliRunner

from api.cli import app

runner = CliRunner()


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
        [sys.executable, "-m", "api.cli", "--help"], capture_output=True, text=True, check=False
    )
    assert completed.returncode == 0
    assert "snapshot" in completed.stdout
