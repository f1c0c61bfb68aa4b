"""Installing carqa from a fresh clone is quiet: setuptools finds every package and its data
files from pyproject.toml, with no warning (a user reads setup's output)."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]

BUILD = """
import sys
from setuptools import build_meta
print(build_meta.build_wheel(sys.argv[1]))
"""


def _fresh_clone(target: Path) -> Path:
    """The committed files only (no .venv, no build leftovers): what a clone holds."""
    listed = (
        subprocess.run(["git", "ls-files", "-z"], cwd=REPO_ROOT, capture_output=True, check=True)
        .stdout.decode()
        .split("\0")
    )
    if not any(listed):
        pytest.skip("not a git checkout")
    for name in filter(None, listed):
        source = REPO_ROOT / name
        if source.is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            (target / name).write_bytes(source.read_bytes())
    return target


@pytest.mark.slow
def test_wheel_builds_without_warnings_and_ships_the_package_data(tmp_path: Path) -> None:
    clone = _fresh_clone(tmp_path / "clone")
    out = tmp_path / "dist"
    out.mkdir()
    built = subprocess.run(
        [sys.executable, "-W", "default", "-c", BUILD, str(out)],
        cwd=clone,
        capture_output=True,
        text=True,
        check=False,
        # Not this test run's "don't write bytecode" (setuptools warns that it skips it).
        env={k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"},
    )
    assert built.returncode == 0, built.stderr
    said = (built.stdout + built.stderr).lower()
    assert "warning" not in said, built.stdout + built.stderr
    assert "would be ignored" not in said
    wheel = out / built.stdout.strip().splitlines()[-1]
    names = set(zipfile.ZipFile(wheel).namelist())
    for data in (
        "carqa/api/static/index.html",
        "carqa/api/static/widget.js",
        "carqa/api/static/favicon.ico",
        "carqa/api/static/favicon.svg",
        "carqa/qa/data/lexicon.json",
    ):
        assert data in names, data
