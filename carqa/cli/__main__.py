"""``python -m carqa.cli``: the ``carqa`` command, for environments without the console script."""

from carqa.cli import app

app()
