"""The ``carqa`` command line: one typer app, commands registered by their modules.

Each command module owns one job (``build``: corpus, index and snapshots; ``ask``, ``chat``,
``evaluate``: answering; ``serve``: the HTTP server) and registers itself on
:data:`carqa.cli.common.app` on import; :mod:`carqa.cli.answers` prints answers for ``ask`` and
``chat``.
"""

from __future__ import annotations

# Imported to register their commands, in the order `carqa --help` lists them: the way in
# (build), then answering (ask, chat, eval), then serving.
# isort: off
from carqa.cli import build  # noqa: F401
from carqa.cli import ask, chat, evaluate  # noqa: F401
from carqa.cli import serve  # noqa: F401

# isort: on
from carqa.cli.common import app

__all__ = ["app"]
