"""Progress bars for the CLI: a :data:`carqa.progress.ProgressCallback` drawn with rich.

The work (corpus ingest, index build) only reports ``(stage, done, total)``; this module is
where that becomes bars on stderr, so stdout keeps only the command's result. One display
serves a whole command (rich allows one live display at a time): each new stage completes the
ones before it.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from carqa.progress import ProgressCallback, no_progress


@contextmanager
def progress_bars(enabled: bool = True) -> Iterator[ProgressCallback]:
    """A ProgressCallback drawing rich progress bars on stderr (or, disabled, doing nothing)."""
    if not enabled:
        yield no_progress
        return
    bars = Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        transient=False,
    )
    tasks: dict[str, TaskID] = {}

    def update(stage: str, done: int, total: int | None) -> None:
        if stage not in tasks:
            _complete_all(bars)  # a new stage means the previous ones finished
            tasks[stage] = bars.add_task(stage, total=total)
        bars.update(tasks[stage], completed=done, total=total)

    with bars:
        yield update
        _complete_all(bars)


def _complete_all(bars: Progress) -> None:
    for task in bars.tasks:
        if not task.finished:
            total = task.total if task.total is not None else max(task.completed, 1)
            bars.update(task.id, total=total, completed=total)
