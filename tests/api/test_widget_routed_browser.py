"""The widget in Chromium against scripted replies (no server: the test answers the browser's
requests): notes and focus lines shown, a new chat while an answer streams, pasted and blank
questions, the busy state."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.api.browser_support import (
    ROUTED,
    ask_widget,
    chat_reply,
    open_widget,
    widget_host,
)

pytestmark = pytest.mark.browser


def test_widget_shows_the_note_of_an_answer(routed_page: Any) -> None:
    """An answer can come with a note the user must read: above all that the session had
    expired, so a follow-up was answered without its conversation. The widget showed only
    abstentions' notes."""
    page = routed_page
    note = "This conversation was not found or has expired, so a new one was started."
    page.route(
        ROUTED + "/api/chat",
        lambda route: route.fulfill(
            body=chat_reply(
                "Loss of CD19 causes relapse [1].",
                "s2",
                message=note,
                flags=["session_expired"],
            ),
            content_type="text/event-stream",
        ),
    )
    open_widget(page)
    ask_widget(page, "and in adults?")
    reply = widget_host(page).locator(".msg.bot").last
    assert reply.locator(".answer a.cite").count() == 1
    assert reply.locator(".note").count() == 1
    assert reply.locator(".note").inner_text() == note
    page.reload()  # the note is part of the saved conversation
    page.get_by_role("button", name="Open chat: Literature assistant").click()
    assert widget_host(page).locator(".msg.bot .note").last.inner_text() == note
    assert page.errors == []


def test_widget_shows_which_papers_a_follow_up_came_from(routed_page: Any) -> None:
    """A follow-up about "the study" is answered from the papers just discussed: the reply's
    focus_pmids, shown under the answer (and kept with the saved conversation)."""
    page = routed_page
    page.route(
        ROUTED + "/api/chat",
        lambda route: route.fulfill(
            body=chat_reply("Thirty children were treated [1].", "s3", focus_pmids=["90000003"]),
            content_type="text/event-stream",
        ),
    )
    open_widget(page)
    ask_widget(page, "how many children were treated?")
    focus = widget_host(page).locator(".msg.bot").last.locator(".focus")
    assert focus.inner_text() == "From the papers discussed: PMID 90000003"
    page.reload()
    page.get_by_role("button", name="Open chat: Literature assistant").click()
    assert widget_host(page).locator(".msg.bot .focus").last.inner_text().endswith("90000003")
    assert page.errors == []


def test_new_chat_while_an_answer_streams_leaves_the_old_conversation(routed_page: Any) -> None:
    """ "New chat" pressed while an answer is still arriving: the late answer belonged to the
    old conversation. It used to land in the new one (an orphan reply in the transcript) and
    its session id was kept, so the "new" chat went on with the old conversation's context."""
    page = routed_page
    held: list[Any] = []
    bodies: list[dict[str, Any]] = []

    def chat(route: Any) -> None:
        bodies.append(json.loads(route.request.post_data))
        if len(bodies) == 1:
            route.fulfill(body=chat_reply("First [1].", "old"), content_type="text/event-stream")
        elif len(bodies) == 2:
            held.append(route)  # answered after "New chat" is pressed
        else:
            route.fulfill(body=chat_reply("Fresh [1].", "new"), content_type="text/event-stream")

    page.route(ROUTED + "/api/chat", chat)
    open_widget(page)
    ask_widget(page, "Why do patients relapse?")
    box = page.get_by_label("Your question")
    box.fill("and in adults?")
    box.press("Enter")
    page.wait_for_function(
        "() => document.querySelector('#carqa-widget').shadowRoot"
        ".querySelector('form button').disabled"
    )
    assert bodies[1]["session_id"] == "old"
    widget_host(page).get_by_role("button", name="Start a new conversation").click()
    assert widget_host(page).locator(".msg").count() == 0
    assert page.get_by_role("button", name="Send question").is_enabled()  # not stuck "busy"
    held[0].fulfill(body=chat_reply("Late [1].", "old"), content_type="text/event-stream")
    page.wait_for_timeout(300)
    assert widget_host(page).locator(".msg").count() == 0
    saved = page.evaluate(f"() => JSON.parse(localStorage.getItem('carqa:{ROUTED}'))")
    assert saved == {"sessionId": None, "turns": []}

    ask_widget(page, "What is CRS?")
    assert "session_id" not in bodies[2]
    assert [m.text_content() for m in widget_host(page).locator(".msg.user").all()] == [
        "You: What is CRS?"
    ]
    assert page.errors == []


def test_a_pasted_question_over_the_limit_is_not_cut_short(routed_page: Any) -> None:
    """The question box cut pasted text at 1000 characters without a word, so the end of a
    long question was silently lost and the answer was to another question. The limit is the
    server's (CARQA_MAX_QUESTION_CHARS), which says how long is too long."""
    page = routed_page
    sent: list[str] = []
    limit_error = {
        "error": {
            "code": "question_too_long",
            "message": "message is 1200 characters long; the limit is 1000.",
        }
    }

    def chat(route: Any) -> None:
        sent.append(json.loads(route.request.post_data)["message"])
        route.fulfill(status=422, json=limit_error)

    page.route(ROUTED + "/api/chat", chat)
    open_widget(page)
    question = "Why do patients relapse after CD19 CAR T cell therapy? " * 21 + "In adults?"
    assert len(question) > 1000
    box = page.get_by_label("Your question")
    box.focus()
    page.keyboard.insert_text(question)  # as a paste does
    box.press("Enter")
    page.wait_for_function(
        "() => document.querySelector('#carqa-widget').shadowRoot.querySelector('.msg.error')"
    )
    assert sent == [question]
    assert "the limit is 1000" in widget_host(page).locator(".msg.error").inner_text()
    assert box.input_value() == question  # back in the box, to be shortened


def test_an_answer_is_marked_busy_while_it_streams(routed_page: Any) -> None:
    """Each piece of a streamed answer re-renders it inside the live log; until the answer is
    complete the message says aria-busy, so a screen reader reads it once, not every version."""
    page = routed_page
    held: list[Any] = []
    page.route(ROUTED + "/api/chat", lambda route: held.append(route))
    open_widget(page)
    box = page.get_by_label("Your question")
    box.fill("Why do patients relapse?")
    box.press("Enter")
    for _ in range(100):  # until the request is in flight (held, not answered)
        if held:
            break
        page.wait_for_timeout(20)
    assert held, "the chat request was made"
    reply = widget_host(page).locator(".msg.bot").last
    assert reply.get_attribute("aria-busy") == "true"
    held[0].fulfill(body=chat_reply("Loss of CD19 [1].", "s1"), content_type="text/event-stream")
    page.wait_for_function(
        "() => !document.querySelector('#carqa-widget').shadowRoot"
        ".querySelector('.msg.bot:last-child').hasAttribute('aria-busy')"
    )
    assert reply.locator(".answer a.cite").count() == 1
    assert page.errors == []


# -- blank questions: the server's rule, in the widget and in ECMA-262 ------------------------


def test_the_blank_rule_means_the_same_in_ecma_262(page: Any) -> None:
    """carqa.qa.blank's pattern is the OpenAPI document's JSON Schema pattern, and the widget's own
    check: in Chromium's ECMA-262 engine, with and without the u flag, it must find a visible
    character in exactly the text Python's re finds one in."""
    from carqa.qa.blank import NOT_BLANK_PATTERN, is_blank

    texts = [chr(code) for code in range(0x10000) if not 0xD800 <= code <= 0xDFFF]
    texts += ["\u200b" * 3, " \u2060\u00ad\n", "\u200bx", "\U0001f9ec", "\U000e0041", "a\u200b"]
    plain, unicode = page.evaluate(
        """([pattern, texts]) => ['', 'u'].map((flags) => {
          const visible = new RegExp(pattern, flags);
          return texts.map((text) => visible.test(text));
        })""",
        [NOT_BLANK_PATTERN, texts],
    )
    expected = [not is_blank(text) for text in texts]
    assert [t for t, a, b in zip(texts, plain, expected, strict=True) if a != b] == []
    assert [t for t, a, b in zip(texts, unicode, expected, strict=True) if a != b] == []


def test_an_invisible_question_is_not_sent_like_a_blank_one(routed_page: Any) -> None:
    """A question of spaces was ignored, one of zero-width characters sent (and refused by the
    server with a 422 shown as an error)."""
    page = routed_page
    sent: list[str] = []

    def chat(route: Any) -> None:
        sent.append(json.loads(route.request.post_data)["message"])
        route.fulfill(body=chat_reply("Loss of CD19 [1].", "s1"), content_type="text/event-stream")

    page.route(ROUTED + "/api/chat", chat)
    open_widget(page)
    box = page.get_by_label("Your question")
    for text in ("   ", "\u200b", "\u2060\u00ad\u200e", "\u200f\t\u3164"):
        box.fill(text)
        box.press("Enter")
    page.evaluate("() => window.carqa.ask('\\u200b\\u200d')")
    page.wait_for_timeout(300)
    assert sent == []
    assert widget_host(page).locator(".msg").count() == 0
    ask_widget(page, "\u200bWhy do patients relapse?")  # invisible characters in a question: sent
    assert sent == ["\u200bWhy do patients relapse?"]
    assert widget_host(page).locator(".msg.bot .answer a.cite").count() == 1
    assert page.errors == []
