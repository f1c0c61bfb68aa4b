"""Progress of long work: reported by the layer that does it, drawn by the one that shows it.

The corpus and index layers (``carqa.index``) never draw on the terminal: they call a
:data:`ProgressCallback` with a stage's description, how much of it is done and its total.
``carqa build`` passes one that draws rich progress bars on stderr
(:func:`carqa.cli.progress.progress_bars`); tests and benchmarks pass nothing, or a recorder.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

ProgressCallback = Callable[[str, int, int | None], None]
"""``(stage description, done, total)``: called as the work advances (total None: unknown).
A new description starts a new stage; the stages before it are then finished."""


def no_progress(stage: str, done: int, total: int | None) -> None:
    """A :data:`ProgressCallback` that shows nothing."""


@contextlib.contextmanager
def step(on_progress: ProgressCallback, description: str) -> Iterator[None]:
    """Report a one-step stage: started when the block starts, done when it ends."""
    on_progress(description, 0, 1)
    yield
    on_progress(description, 1, 1)
