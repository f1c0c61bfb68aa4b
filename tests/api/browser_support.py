"""Shared by the widget's browser tests: Chromium found, the widget driven (ask, then wait
until the reply is whole), and scripted server replies for a page on a made-up origin.

The fixtures built on these (``browser``, ``page``, ``routed_page``) are in
``tests/api/conftest.py``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path
from typing import Any

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO_ROOT / "artifacts"
STATIC_DIR = REPO_ROOT / "api" / "static"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def chromium_path() -> str:
    for candidate in (os.environ.get("CARQA_CHROMIUM"), "/usr/bin/chromium"):
        if candidate and Path(candidate).exists():
            return candidate
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if not found:
        pytest.skip("Chromium not found: install Debian's `chromium` (scripts/setup.sh --dev)")
    return found


def widget_host(page: Any) -> Any:
    return page.locator("#carqa-widget")


def ask_widget(page: Any, question: str) -> None:
    box = page.get_by_label("Your question")
    box.fill(question)
    box.press("Enter")
    # The reply is complete when the send button is enabled again and the status is empty.
    page.wait_for_function(
        """() => {
          const root = document.querySelector('#carqa-widget').shadowRoot;
          return !root.querySelector('form button').disabled
                 && root.querySelector('.status').textContent === '';
        }""",
        timeout=60_000,
    )


# -- scripted replies (no server: the browser's requests are answered by the test) --------

ROUTED = "http://carqa.test"

CITATION = {
    "n": 1,
    "pmid": "90000003",
    "title": "Antigen escape after CD19 CAR T cells (invented)",
    "year": 2018,
    "url": "https://pubmed.ncbi.nlm.nih.gov/90000003/",
    "section": "CONCLUSIONS",
    "text": "Loss of CD19 expression was the main cause of relapse.",
    "score": 1.0,
}


def sse_body(*events: tuple[str, dict[str, Any]]) -> str:
    return "".join(f"event: {name}\r\ndata: {json.dumps(data)}\r\n\r\n" for name, data in events)


def answer_segments(answer: str) -> list[dict[str, Any]]:
    """``answer``'s ``[n]`` markers as the server's segments (each text, then its citations)."""
    segments, start = [], 0
    for run in re.finditer(r"(?:\[\d+\])+", answer):
        numbers = [int(n) for n in re.findall(r"\d+", run.group(0))]
        segments.append({"text": answer[start : run.start()], "citations": numbers})
        start = run.end()
    if start < len(answer):
        segments.append({"text": answer[start:], "citations": []})
    return segments


def chat_reply(answer: str, session_id: str, **extra: Any) -> str:
    """A streamed chat reply with one citation, as the server sends it."""
    done = {
        "answer": answer,
        "segments": answer_segments(answer),
        "abstained": False,
        "citations": [CITATION],
        "took_ms": 1.0,
        "query": "q",
        "message": None,
        "flags": [],
        "session_id": session_id,
        **extra,
    }
    return sse_body(
        ("sources", {"citations": [CITATION]}), ("delta", {"text": answer}), ("done", done)
    )


def open_widget(page: Any) -> None:
    page.goto(ROUTED + "/")
    page.get_by_role("button", name="Open chat: Literature assistant").click()
