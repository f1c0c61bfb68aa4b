"""Shared pieces of the ``carqa`` command line: the typer app, consoles, error handling.

Commands are thin: they turn flags into :class:`carqa.settings.Settings`, call into
``index``/``qa``/``api`` and render results with rich. Errors a user can fix are
:class:`carqa.errors.CarqaError`s and are printed without a traceback.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

from carqa import __version__
from carqa.errors import CarqaError

F = TypeVar("F", bound=Callable[..., Any])

app = typer.Typer(
    name="carqa",
    help="Cited question answering over the CAR T cell literature.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
snapshot_app = typer.Typer(help="Move a built corpus between machines.", no_args_is_help=True)
app.add_typer(snapshot_app, name="snapshot")

console = Console()
err_console = Console(stderr=True)


def friendly_errors(func: F) -> F:
    """Print :class:`CarqaError` as a message (and hint) and exit with its code.

    Message and hint are escaped: they quote paths, flags and install commands the user or a
    package chose (``/tmp/[red]dir``, ``pip install -e ".[llm]"``), which rich would otherwise
    read as markup, eating text or raising ``MarkupError`` in place of the error.
    """

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except CarqaError as error:
            err_console.print(f"[bold red]Error:[/] {escape(error.message)}", highlight=False)
            if error.hint:
                err_console.print(f"[yellow]Hint:[/] {escape(error.hint)}", highlight=False)
            raise typer.Exit(error.exit_code) from None
        except KeyboardInterrupt:
            err_console.print("Interrupted.")
            raise typer.Exit(130) from None

    return wrapper  # type: ignore[return-value]


def _version_callback(value: bool) -> None:
    if value:
        console.print(f"carqa {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version_: bool = typer.Option(
        False, "--version", callback=_version_callback, is_eager=True, help="Show the version."
    ),
) -> None:
    """Cited question answering over the CAR T cell literature."""
