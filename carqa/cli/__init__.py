"""The ``carqa`` command line: one typer app, commands registered by their modules.

Each command module owns one job (``build``: corpus + index; ``qa``: ask, chat, eval;
``serve``: the HTTP server) and registers itself on :data:`carqa.cli.common.app` on import.
"""

from __future__ import annotations

from carqa.cli import build, qa, serve  # noqa: F401  (imported to register commands)
from carqa.cli.common import app

__all__ = ["app"]
