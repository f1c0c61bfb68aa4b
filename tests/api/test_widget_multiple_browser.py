"""Several carqa widgets on one page, in Chromium, against scripted replies: two servers on
two origins, the same server twice, ids kept apart, a failed answer and a replaced session
recovered from."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.api.browser_support import (
    CITATION,
    ROUTED,
    STATIC_DIR,
    ask_widget,
    chat_reply,
    open_widget,
    sse_body,
    widget_host,
)

pytestmark = pytest.mark.browser


OTHER = "http://other.test"
"""A second carqa server, on another origin."""


CORS = {
    "Access-Control-Allow-Origin": ROUTED,
    "Access-Control-Allow-Methods": "POST",
    "Access-Control-Allow-Headers": "Content-Type, Accept, X-API-Key",
}


TWO_WIDGETS = f"""<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>Two carqa widgets</title>
  <script src="/widget.js" data-title="Alpha literature" data-position="right"></script>
</head>
<body>
  <main>
    <h1>Two carqa servers</h1>
    <button type="button" data-carqa-question="What is CRS?">Ask the first</button>
    <button type="button" data-carqa-question="What is ICANS?"
            data-carqa-widget="carqa-widget-2">Ask the second</button>
  </main>
  <script src="{OTHER}/widget.js" data-title="Beta literature" data-position="left"></script>
  <script src="/widget.js" data-title="Alpha literature" data-position="right"></script>
</body>
</html>
"""
"""The first widget's tag is in <head> (it mounts at DOMContentLoaded, after the second): ids
follow the order the tags run in, not the order the widgets reach the page. The last tag
repeats the first (a template included twice)."""


PAGE_IDS = """
() => {
  // Every id on the page and in each widget's shadow root, and every id reference (aria-*,
  // label for) of each widget with whether it resolves inside that widget's own root.
  const hosts = [...document.querySelectorAll('[id^="carqa-widget"]')];
  const roots = [document, ...hosts.map((host) => host.shadowRoot)];
  const ids = roots.flatMap((root) => [...root.querySelectorAll('[id]')].map((node) => node.id));
  const refs = hosts.flatMap((host) =>
    [...host.shadowRoot.querySelectorAll('[aria-controls], [aria-labelledby], label[for]')].map(
      (node) => {
        const id = node.getAttribute('aria-controls') || node.getAttribute('aria-labelledby')
          || node.getAttribute('for');
        return { host: host.id, id, resolves: !!host.shadowRoot.getElementById(id) };
      }));
  return { hosts: hosts.map((host) => host.id), ids, refs };
}
"""


def _ask_in(page: Any, widget: str, question: str) -> None:
    """``ask_widget`` in the widget whose host has id ``widget``."""
    box = page.locator(f"#{widget}").get_by_label("Your question")
    box.fill(question)
    box.press("Enter")
    _wait_idle(page, widget)


def _wait_idle(page: Any, widget: str) -> None:
    page.wait_for_function(
        """(id) => {
          const root = document.getElementById(id).shadowRoot;
          return root.querySelectorAll('.msg.bot').length > 0
                 && !root.querySelector('form button').disabled
                 && root.querySelector('.status').textContent === '';
        }""",
        arg=widget,
        timeout=10_000,
    )


def test_two_widgets_on_one_page_work_independently(routed_page: Any) -> None:
    """The widget's host had the fixed id carqa-widget, window.carqa was the last widget's, the
    storage key was the endpoint's, every widget answered every data-carqa-question click, and
    a second widget of the same server was not created at all."""
    page = routed_page
    received: dict[str, list[dict[str, Any]]] = {ROUTED: [], OTHER: []}

    def server(origin: str, headers: dict[str, str]) -> Any:
        def chat(route: Any) -> None:
            if route.request.method == "OPTIONS":  # the CORS preflight
                route.fulfill(status=204, headers=headers)
                return
            body = json.loads(route.request.post_data)
            received[origin].append(body)
            answer = f"{origin} answers {body['message']} [1]."
            route.fulfill(
                body=chat_reply(answer, f"{origin[7:]}-{len(received[origin])}"),
                content_type="text/event-stream",
                headers=headers,
            )

        return chat

    page.route(
        ROUTED + "/two.html",
        lambda route: route.fulfill(body=TWO_WIDGETS, content_type="text/html"),
    )
    page.route(
        OTHER + "/widget.js",
        lambda route: route.fulfill(
            body=(STATIC_DIR / "widget.js").read_bytes(), content_type="text/javascript"
        ),
    )
    page.route(ROUTED + "/api/chat", server(ROUTED, {}))
    page.route(OTHER + "/api/chat", server(OTHER, CORS))
    page.goto(ROUTED + "/two.html")

    # Two widgets (the repeated tag added none), each with its own id; the first keeps the
    # documented one. No id appears twice on the page, and every aria reference of a widget
    # resolves inside that widget.
    found = page.evaluate(PAGE_IDS)
    assert sorted(found["hosts"]) == ["carqa-widget", "carqa-widget-2"]
    assert len(found["ids"]) == len(set(found["ids"])), found["ids"]
    assert {ref["host"] for ref in found["refs"]} == {"carqa-widget", "carqa-widget-2"}
    assert all(ref["resolves"] for ref in found["refs"]), found["refs"]
    assert page.evaluate(
        "() => [window.carqa.id, window.carqaWidgets.map((w) => [w.id, w.endpoint])]"
    ) == ["carqa-widget", [["carqa-widget", ROUTED], ["carqa-widget-2", OTHER]]]
    first, second = page.locator("#carqa-widget"), page.locator("#carqa-widget-2")
    assert first.get_by_role("button", name="Open chat: Alpha literature").is_visible()
    assert second.get_by_role("button", name="Open chat: Beta literature").is_visible()

    # Each widget asks its own server, shows its own answer and fires its own events.
    page.evaluate(
        """() => {
          window.__events = [];
          for (const id of ['carqa-widget', 'carqa-widget-2']) {
            document.getElementById(id).addEventListener('carqa:event', (event) => {
              window.__events.push([id, event.detail.type]);
            });
          }
        }"""
    )
    first.get_by_role("button", name="Open chat: Alpha literature").click()
    _ask_in(page, "carqa-widget", "Why do patients relapse?")
    second.get_by_role("button", name="Open chat: Beta literature").click()
    _ask_in(page, "carqa-widget-2", "What is CRS?")
    assert [b["message"] for b in received[ROUTED]] == ["Why do patients relapse?"]
    assert [b["message"] for b in received[OTHER]] == ["What is CRS?"]
    assert first.locator(".msg.bot .answer").inner_text().startswith(f"{ROUTED} answers Why")
    assert second.locator(".msg.bot .answer").inner_text().startswith(f"{OTHER} answers What")
    events = page.evaluate("() => window.__events")
    assert [e for e in events if e[0] == "carqa-widget"] == [
        ["carqa-widget", "sources"],
        ["carqa-widget", "delta"],
        ["carqa-widget", "done"],
    ]
    assert [e[1] for e in events if e[0] == "carqa-widget-2"] == ["sources", "delta", "done"]

    # Question elements: the untargeted one asks the first widget only, the targeted one the
    # widget it names. Each continues its own session. (Both panels closed first: the left one
    # covers the buttons.)
    first.get_by_role("button", name="Close chat", exact=True).click()
    second.get_by_role("button", name="Close chat", exact=True).click()
    page.get_by_role("button", name="Ask the first").click()
    _wait_idle(page, "carqa-widget")
    page.get_by_role("button", name="Ask the second").click()
    page.wait_for_function("() => window.__events.length === 12")
    _wait_idle(page, "carqa-widget-2")
    assert [(b["message"], b.get("session_id")) for b in received[ROUTED]] == [
        ("Why do patients relapse?", None),
        ("What is CRS?", "carqa.test-1"),
    ]
    assert [(b["message"], b.get("session_id")) for b in received[OTHER]] == [
        ("What is CRS?", None),
        ("What is ICANS?", "other.test-1"),
    ]

    # Each conversation is stored apart (the first under its old key) and restored apart.
    stored = page.evaluate(
        """([a, b]) => [a, b].map((key) => JSON.parse(localStorage.getItem(key)).sessionId)""",
        [f"carqa:{ROUTED}", f"carqa:{OTHER}#carqa-widget-2"],
    )
    assert stored == ["carqa.test-2", "other.test-2"]
    page.reload()
    assert first.locator(".msg.user").all_text_contents() == [
        "You: Why do patients relapse?",
        "You: What is CRS?",
    ]
    assert second.locator(".msg.user").all_text_contents() == [
        "You: What is CRS?",
        "You: What is ICANS?",
    ]
    assert page.errors == []


def test_the_same_server_twice_on_one_page(routed_page: Any) -> None:
    """Two widgets of one server (on both sides of the page) are two conversations: the second
    used to be dropped as the first "loaded twice"."""
    page = routed_page
    bodies: list[dict[str, Any]] = []

    def chat(route: Any) -> None:
        bodies.append(json.loads(route.request.post_data))
        route.fulfill(
            body=chat_reply("Loss of CD19 [1].", f"s{len(bodies)}"),
            content_type="text/event-stream",
        )

    html = """<!doctype html><html lang="en"><head><title>Twice</title></head><body><main>
      <h1>Twice</h1></main>
      <script src="/widget.js" data-title="Right" data-open="true"></script>
      <script src="/widget.js" data-title="Left" data-position="left" data-id="left-chat"></script>
    </body></html>"""
    page.route(
        ROUTED + "/twice.html", lambda route: route.fulfill(body=html, content_type="text/html")
    )
    page.route(ROUTED + "/api/chat", chat)
    page.goto(ROUTED + "/twice.html")
    assert page.evaluate("() => window.carqaWidgets.map((w) => w.id)") == [
        "carqa-widget",
        "left-chat",
    ]
    _ask_in(page, "carqa-widget", "Why do patients relapse?")
    page.locator("#left-chat").get_by_role("button", name="Open chat: Left").click()
    _ask_in(page, "left-chat", "What is CRS?")
    assert [b.get("session_id") for b in bodies] == [None, None]  # not the first one's session
    keys = page.evaluate("() => Object.keys(localStorage).sort()")
    assert keys == [f"carqa:{ROUTED}", f"carqa:{ROUTED}#left-chat"]
    page.locator("#left-chat").get_by_role("button", name="Start a new conversation").click()
    assert page.locator("#left-chat .msg").count() == 0
    assert page.locator("#carqa-widget .msg").count() == 2  # the other conversation stays
    assert page.errors == []


def test_the_widget_recovers_from_a_failed_answer_and_a_replaced_session(
    routed_page: Any,
) -> None:
    """Mid-conversation, an answer fails half-way (the LLM went down), then the server no
    longer knows the session (evicted by CARQA_MAX_SESSIONS, or expired): the widget keeps
    its session through the failure, takes the new one with its note, continues in it, and
    shows the note of an answer flagged llm_truncated / llm_uncited."""
    page = routed_page
    bodies: list[dict[str, Any]] = []
    expired = "This conversation was not found or has expired, so a new one was started."
    cut = (
        "The model's answer was cut at 8192 characters. 1 of the answer's 2 sentences cites "
        "no evidence: check it against the sources."
    )
    failure = {
        "error": {
            "code": "llm_unavailable",
            "message": "The language model is down.",
            "hint": "Try again later.",
        }
    }
    replies = [
        chat_reply("Loss of CD19 [1].", "s1"),
        sse_body(
            ("sources", {"citations": [CITATION]}), ("delta", {"text": "Part"}), ("error", failure)
        ),
        chat_reply("In adults too [1].", "s2", message=expired, flags=["session_expired"]),
        chat_reply(
            "Tocilizumab [1]. And then",
            "s2",
            message=cut,
            flags=["llm_truncated", "llm_uncited"],
        ),
    ]

    def chat(route: Any) -> None:
        bodies.append(json.loads(route.request.post_data))
        route.fulfill(body=replies[len(bodies) - 1], content_type="text/event-stream")

    page.route(ROUTED + "/api/chat", chat)
    open_widget(page)
    ask_widget(page, "Why do patients relapse?")
    ask_widget(page, "and in adults?")
    error = widget_host(page).locator(".msg.error").last
    assert "The language model is down. Try again later." in error.inner_text()  # and the hint
    assert page.get_by_label("Your question").input_value() == "and in adults?"
    page.get_by_label("Your question").press("Enter")  # send it again
    page.wait_for_function(
        "() => document.querySelector('#carqa-widget').shadowRoot"
        ".querySelectorAll('.msg.bot .note').length === 1"
    )
    ask_widget(page, "how is CRS treated?")
    assert [b.get("session_id") for b in bodies] == [None, "s1", "s1", "s2"]
    notes = widget_host(page).locator(".msg.bot .note").all_text_contents()
    assert notes == [expired, cut]
    last = widget_host(page).locator(".msg.bot").last
    assert last.locator(".answer").inner_text().startswith("Tocilizumab")
    saved = page.evaluate(f"() => JSON.parse(localStorage.getItem('carqa:{ROUTED}'))")
    assert saved["sessionId"] == "s2"
    assert page.errors == []
