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
from typer.core import TyperCommand, TyperGroup

from carqa import __version__
from carqa.errors import CarqaError

F = TypeVar("F", bound=Callable[..., Any])

INDEX_DIR_HELP = "Index directory (default: CARQA_INDEX_DIR, else your user data folder)."
LLM_HELP = "LLM provider: 'openai' (any OpenAI-compatible server) or 'ollama' (env: CARQA_LLM_*)."

HELP_WIDTH = 80
_HELP_SETTINGS = {"max_content_width": 80, "help_option_names": ["-h", "--help"]}
"""Help is wrapped to the terminal, but no wider than this (as ``git``'s is): lines of
option help much longer than 80 characters are hard to read."""

_PLACEHOLDERS = {
    "path": "PATH",
    "file": "FILE",
    "directory": "DIR",
    "str": "TEXT",
    "int": "N",
    "float": "NUMBER",
}


def _is_argument(param: Any) -> bool:
    return getattr(param, "param_type_name", "") == "argument"


def _placeholder(param: Any, ctx: Any) -> str:
    """A value placeholder for help (``PATH``, ``N``, ``TEXT``, ``a|b|c``) where typer would
    print its Python type (``<list[Path]>``, ``<int range>``): a parameter's own ``metavar``
    wins."""
    if param.metavar:
        return param.metavar
    if _is_argument(param):
        return (param.name or "value").upper()
    shown = str(getattr(param, "display_type", lambda ctx: "")(ctx)).strip("<>")
    if shown.startswith("list[") and shown.endswith("]"):
        shown = shown[5:-1]
    base = shown.split(" ")[0].lower()
    if "|" in shown:
        return shown
    return _PLACEHOLDERS.get(base, "VALUE")


class HelpCommand(TyperCommand):
    """A command whose help reads like ``git``'s: click's plain layout (no boxes that cut
    option names short), values shown as ``PATH``/``N``/``TEXT`` and arguments by name, never
    as Python types or in braces (``{question}``)."""

    def format_help(self, ctx: Any, formatter: Any) -> None:
        for param in self.get_params(ctx):
            flag = getattr(param, "is_flag", False) or getattr(param, "count", False)
            if not flag and param.metavar is None:
                param.metavar = _placeholder(param, ctx)
        super().format_help(ctx, formatter)

    def collect_usage_pieces(self, ctx: Any) -> list[str]:
        pieces = [self.options_metavar] if self.options_metavar else []
        for param in self.get_params(ctx):
            if _is_argument(param):
                name = _placeholder(param, ctx)
                pieces.append(name if param.required else f"[{name}]")
        return pieces

    def format_options(self, ctx: Any, formatter: Any) -> None:
        arguments = [
            (_placeholder(param, ctx), getattr(param, "help", None) or "")
            for param in self.get_params(ctx)
            if _is_argument(param) and not getattr(param, "hidden", False)
        ]
        if arguments:
            with formatter.section("Arguments"):
                formatter.write_dl(arguments)
        options = [
            record
            for param in self.get_params(ctx)
            if not _is_argument(param) and (record := param.get_help_record(ctx))
        ]
        if options:
            with formatter.section("Options"):
                formatter.write_dl(options)


class HelpGroup(TyperGroup):
    """A command group whose list of commands gives each one's whole summary line, wrapped,
    instead of cutting it short with "..." (click's default)."""

    def format_commands(self, ctx: Any, formatter: Any) -> None:
        rows = []
        for name in self.list_commands(ctx):
            command = self.get_command(ctx, name)
            if command is not None and not command.hidden:
                rows.append((name, command.get_short_help_str(limit=1000)))
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)


class CarqaTyper(typer.Typer):
    """A typer app whose commands are :class:`HelpCommand` s, so every command's help has the
    same plain layout without each one asking for it."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("cls", HelpGroup)
        kwargs.setdefault("rich_markup_mode", None)
        kwargs.setdefault("context_settings", _HELP_SETTINGS)
        super().__init__(**kwargs)

    def command(self, *args: Any, **kwargs: Any) -> Any:
        kwargs.setdefault("cls", HelpCommand)
        return super().command(*args, **kwargs)


app = CarqaTyper(
    name="carqa",
    help="Cited question answering over the CAR T cell literature.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
snapshot_app = CarqaTyper(help="Move a built corpus between machines.", no_args_is_help=True)
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
