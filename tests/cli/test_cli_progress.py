"""The CLI's progress bars: the one place a :data:`carqa.progress.ProgressCallback` is drawn."""

from __future__ import annotations

import pytest

from carqa.cli.progress import progress_bars
from carqa.progress import no_progress


def test_bars_go_to_stderr_and_a_new_stage_finishes_the_previous_one(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with progress_bars() as on_progress:
        on_progress("Reading source files", 0, None)
        on_progress("Embedding (onnx)", 5, 10)  # the reading stage is finished now
    captured = capsys.readouterr()
    assert captured.out == ""  # stdout keeps only the command's result
    assert "Reading source files" in captured.err and "Embedding (onnx)" in captured.err
    assert "10/10" in captured.err  # leaving the display completes what was still open


def test_disabled_bars_draw_nothing(capsys: pytest.CaptureFixture[str]) -> None:
    with progress_bars(enabled=False) as on_progress:
        on_progress("Chunking", 0, 1)
    assert on_progress is no_progress
    assert capsys.readouterr() == ("", "")
