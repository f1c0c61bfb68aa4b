"""The widget links citations from the answer's structure (``segments``), never from brackets
in the text, and shows titles without the bidi controls that would reorder them."""

from __future__ import annotations

from typing import Any

import pytest

from tests.api.browser_support import (
    CITATION,
    ROUTED,
    ask_widget,
    open_widget,
    sse_body,
    widget_host,
)

pytestmark = pytest.mark.browser

QUOTE = "An invented abstract sentence that cites [1] and [999] in its own text"


def _done(**data: Any) -> dict[str, Any]:
    return {
        "abstained": False,
        "took_ms": 1.0,
        "query": "q",
        "message": None,
        "flags": [],
        "session_id": "s1",
        **data,
    }


def _route(tab: Any, citation: dict[str, Any], done: dict[str, Any]) -> None:
    body = sse_body(
        ("sources", {"citations": [citation]}),
        ("delta", {"text": done["answer"]}),
        ("done", done),
    )
    tab.route(
        ROUTED + "/api/chat",
        lambda route: route.fulfill(body=body, content_type="text/event-stream"),
    )


def test_brackets_in_quoted_text_are_not_citation_links(routed_page: Any) -> None:
    tab = routed_page
    done = _done(
        answer=f"{QUOTE} [1].",
        citations=[CITATION],
        segments=[{"text": f"{QUOTE} ", "citations": [1]}, {"text": ".", "citations": []}],
    )
    _route(tab, CITATION, done)
    open_widget(tab)
    ask_widget(tab, "what does it cite?")
    answer = widget_host(tab).locator(".msg.bot .answer").last
    links = answer.locator("a.cite")
    assert links.count() == 1  # the structural one; "[1]" and "[999]" in the quote stay text
    assert links.first.inner_text() == "[1]"
    assert answer.inner_text() == f"{QUOTE} [1]."
    tab.reload()  # the saved conversation renders from the structure too
    tab.get_by_role("button", name="Open chat: Literature assistant").click()
    assert widget_host(tab).locator(".msg.bot .answer a.cite").count() == 1
    assert tab.errors == []


def test_bidi_controls_in_titles_do_not_reorder_them(routed_page: Any) -> None:
    tab = routed_page
    title = "Invented title \u202eesrever ni nwohs\u202c (invented)"
    citation = {**CITATION, "title": title, "text": "Invented \u2067quote\u2069 text."}
    done = _done(
        answer="Invented quote text [1].",
        citations=[citation],
        segments=[{"text": "Invented \u202equote ", "citations": [1]}],
    )
    _route(tab, citation, done)
    open_widget(tab)
    ask_widget(tab, "a reversed title?")
    reply = widget_host(tab).locator(".msg.bot").last
    shown = reply.inner_text()
    assert "esrever ni nwohs" in shown  # as written, without the override
    for control in ("\u202e", "\u202c", "\u2067", "\u2069"):
        assert control not in shown
    assert tab.errors == []
