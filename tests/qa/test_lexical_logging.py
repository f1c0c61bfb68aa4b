"""bm25s must not print its debug chatter at the default log level (it set its own logger
to DEBUG; `carqa serve --build-if-missing` printed "DEBUG:bm25s:Building index from tokens")."""

from __future__ import annotations

import io
import logging

from carqa.qa.lexical import LexicalIndex


def test_building_bm25_logs_nothing_at_the_default_level() -> None:
    root = logging.getLogger()
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)  # what logging.basicConfig installs
    previous = root.level
    root.addHandler(handler)
    root.setLevel(logging.WARNING)  # the default
    try:
        LexicalIndex(["CD19 CAR T cells relapse.", "Cytokine release syndrome after CAR T."])
    finally:
        root.removeHandler(handler)
        root.setLevel(previous)
    assert stream.getvalue() == ""


def test_bm25s_debug_shows_when_the_application_asks_for_debug() -> None:
    root = logging.getLogger()
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    previous = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        LexicalIndex(["CD19 CAR T cells relapse."])
    finally:
        root.removeHandler(handler)
        root.setLevel(previous)
    assert "Building index" in stream.getvalue()
