"""Errors that carry a message meant for a person, and a hint on what to do next.

Every layer raises these for conditions a user can cause or fix (bad input, a missing index,
an unreachable PubMed). The CLI prints them without a traceback; the HTTP API maps them to
JSON errors. Anything else is a bug and is allowed to surface as one.
"""

from __future__ import annotations


class CarqaError(Exception):
    """Base class: ``message`` says what went wrong, ``hint`` what the user can do about it."""

    exit_code: int = 1

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message if not self.hint else f"{self.message}\nHint: {self.hint}"


class InputError(CarqaError):
    """The user's input (a file, an identifier, a flag) is unusable."""

    exit_code = 2


class SourceError(CarqaError):
    """A data source (PubMed, a file) failed or returned something unusable."""


class IndexNotFound(CarqaError):
    """No built index exists where one was expected."""


class IndexMismatch(CarqaError):
    """An index exists but does not fit the model/corpus/format it is being opened with."""


class IndexCorrupt(CarqaError):
    """An index exists but its files are damaged or incomplete."""
