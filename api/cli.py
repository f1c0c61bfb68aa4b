"""The ``carqa`` command line: one typer app, commands registered by their modules.

Each command module owns one job (``cli_build``: corpus + index; ``cli_qa``: ask, chat, eval;
``cli_serve``: the HTTP server) and registers itself on :data:`api.cli_common.app` on import.
"""

from __future__ import annotations

from api import cli_build, cli_qa, cli_serve  # noqa: F401  (imported to register commands)
from api.cli_common import app

__all__ = ["app"]

if __name__ == "__main__":
    app()
