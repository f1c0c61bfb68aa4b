"""``carqa ask``, ``carqa chat`` and ``carqa eval``: answering from the command line."""

from __future__ import annotations

from api.cli_common import app, not_implemented


@app.command()
def ask() -> None:
    """Answer one question with cited sentences."""
    not_implemented("ask")


@app.command()
def chat() -> None:
    """Chat in the terminal (multi-turn)."""
    not_implemented("chat")


@app.command(name="eval")
def evaluate() -> None:
    """Measure retrieval and answer quality on a question file."""
    not_implemented("eval")
