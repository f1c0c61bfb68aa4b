"""A strict Server-Sent Events parser for tests: frames end with a blank line, fields are
``event:``/``data:``/``id:``/``retry:``, comment lines start with ``:`` (keep-alive pings)."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any


def parse_sse(lines: Iterable[str]) -> list[tuple[str, Any]]:
    """Parse text lines of an SSE stream into ``(event, json_data)`` pairs, in order."""
    events: list[tuple[str, Any]] = []
    event: str | None = None
    data: list[str] = []
    for raw in lines:
        line = raw.rstrip("\r")
        if line == "":
            if data:
                events.append((event or "message", json.loads("\n".join(data))))
            event, data = None, []
            continue
        if line.startswith(":"):
            continue
        field, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if field == "event":
            event = value
        elif field == "data":
            data.append(value)
        elif field in ("id", "retry"):
            continue
        else:
            raise AssertionError(f"unexpected SSE field in line {raw!r}")
    if data or event:
        raise AssertionError("stream ended inside a frame (no terminating blank line)")
    return events
