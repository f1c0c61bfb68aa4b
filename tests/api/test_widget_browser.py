"""The chat widget in a real browser: headless Debian Chromium driven by Playwright.

A live server runs in a subprocess; the test loads its demo page, opens the widget with the
keyboard, asks a question, watches the sources arrive before the streamed answer, follows the
PubMed citation links, checks that an abstract containing ``<img src=x onerror=...>`` stays inert
text, reloads and continues the conversation, and runs axe-core over the page with the widget
open. A screenshot of the widget answering is saved to ``artifacts/widget.png``.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from carqa.index.search.layout import link_or_copy

from bench._common import LiveServer
from tests.api.browser_support import (
    ARTIFACTS,
    ask_widget,
    widget_host,
)

pytestmark = pytest.mark.browser


INJECTED = "<img src=x onerror=alert(1)>"


@dataclass(frozen=True)
class ServedIndex:
    """``carqa serve`` on the fixture index, and questions it answers in known ways."""

    url: str
    question: str  # answered with citations
    xss_question: str  # retrieves the abstract with the injected markup
    follow_up: str


@pytest.fixture(scope="module")
def live_server(
    small_index_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServedIndex]:
    """``carqa serve`` on the fixture index, in a subprocess on a free loopback port.

    The server gets its own index directory holding the fixture's build (hard links: answering
    only reads it) under ``builds/``, where ``current`` must lead: chat sessions are written
    beside ``current``, which must not be the shared (read-only) fixture directory.
    """
    index_dir = tmp_path_factory.mktemp("served-index")
    build = (small_index_dir / "current").resolve()
    shutil.copytree(
        build,
        index_dir / "builds" / build.name,
        copy_function=lambda a, b: link_or_copy(Path(a), Path(b)),
    )
    (index_dir / "current").symlink_to(Path("builds") / build.name)
    with LiveServer(index_dir) as server:
        yield ServedIndex(
            url=server.base_url,
            question="Why do patients relapse after CD19 CAR T cell therapy?",
            xss_question="Which markup must appear as plain text: img src onerror?",
            follow_up="How could it be prevented?",
        )


WATCH_STREAM = """
() => {
  // What the widget showed at each stream event: the event order proves the answer was read
  // as a stream (sources, then delta pieces, then done), the snapshots that the sources were
  // on screen before the answer text.
  const host = document.querySelector('#carqa-widget');
  window.__carqaEvents = [];
  host.addEventListener('carqa:event', (event) => {
    const boxes = host.shadowRoot.querySelectorAll('.msg.bot');
    const box = boxes[boxes.length - 1];
    window.__carqaEvents.push({
      type: event.detail.type,
      sourcesShown: box.querySelectorAll('.sources li').length,
      answerShown: (box.querySelector('.answer') || {}).textContent || '',
    });
  });
}
"""


def test_widget_answers_streams_cites_stays_inert_and_continues_after_reload(
    live_server: ServedIndex, page: Any
) -> None:
    origin = live_server.url
    page.on(
        "request",
        lambda request: (
            None if request.url.startswith(origin) else page.external.append(request.url)
        ),
    )
    page.goto(origin + "/")

    # Keyboard: focus the launcher, open with Enter, focus lands in the question box.
    page.get_by_role("button", name="Open chat: Literature assistant").focus()
    page.keyboard.press("Enter")
    launcher = page.locator("#carqa-widget .launcher")
    assert launcher.get_attribute("aria-expanded") == "true"
    assert launcher.get_attribute("aria-label") == "Close chat: Literature assistant"
    question_box = page.get_by_label("Your question")
    assert question_box.evaluate("el => el.getRootNode().activeElement === el")
    # Escape closes and gives focus back to the launcher.
    page.keyboard.press("Escape")
    assert page.locator("#carqa-widget .panel").is_hidden()
    assert launcher.get_attribute("aria-expanded") == "false"
    assert (
        page.evaluate(
            "() => document.querySelector('#carqa-widget').shadowRoot.activeElement.className"
        )
        == "launcher"
    )
    page.keyboard.press("Enter")
    assert page.locator("#carqa-widget .panel").is_visible()

    # Ask: the sources are shown first, then the answer grows as it streams.
    page.evaluate(WATCH_STREAM)
    ask_widget(page, live_server.question)
    events = page.evaluate("() => window.__carqaEvents")
    types = [event["type"] for event in events]
    assert types[0] == "sources" and types[-1] == "done", types
    assert types.count("delta") >= 2 and set(types[1:-1]) == {"delta"}, types
    # Events are recorded before the widget renders them: at the first delta the sources are
    # on screen and no answer text is yet.
    first_delta = events[types.index("delta")]
    assert first_delta["sourcesShown"] >= 1, events
    assert first_delta["answerShown"] == "", events
    assert events[-1]["answerShown"].strip(), events  # grew while the deltas arrived

    reply = widget_host(page).locator(".msg.bot").last
    answer = reply.locator(".answer")
    assert answer.inner_text().strip()
    cites = answer.locator("a.cite")
    assert cites.count() >= 1
    for i in range(cites.count()):
        href = cites.nth(i).get_attribute("href")
        assert href and href.startswith("https://pubmed.ncbi.nlm.nih.gov/"), href
        assert cites.nth(i).get_attribute("rel") == "noopener noreferrer"
    source_links = reply.locator(".sources a")
    assert source_links.count() >= 1
    assert source_links.first.get_attribute("href").startswith("https://pubmed.ncbi.nlm.nih.gov/")

    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "widget.png"))

    # The abstract with injected markup is shown as text: no element, no script, no dialog.
    page.evaluate("() => { window.__xss = false; }")
    ask_widget(page, live_server.xss_question)
    reply = widget_host(page).locator(".msg.bot").last
    assert INJECTED in reply.inner_text()
    counts = page.evaluate(
        """() => ({
          shadow: document.querySelector('#carqa-widget').shadowRoot.querySelectorAll('img').length,
          page: document.querySelectorAll('img').length,
        })"""
    )
    assert counts == {"shadow": 0, "page": 0}
    page.wait_for_timeout(300)  # give a would-be onerror handler time to fire
    assert page.dialogs == []
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "widget-injection.png"))

    # Reload: the conversation is restored and the next question continues the same session.
    session_before = page.evaluate(
        f"() => JSON.parse(localStorage.getItem('carqa:{origin}')).sessionId"
    )
    assert session_before
    page.reload()
    page.get_by_role("button", name="Open chat: Literature assistant").click()
    restored = widget_host(page).locator(".msg.user")
    assert restored.count() == 2
    assert live_server.question in restored.first.inner_text()
    assert INJECTED in widget_host(page).locator(".msg.bot").last.inner_text()
    with page.expect_request(lambda r: r.url.endswith("/api/chat")) as request_info:
        ask_widget(page, live_server.follow_up)
    sent = json.loads(request_info.value.post_data)
    assert sent["session_id"] == session_before
    assert sent["stream"] is True
    assert widget_host(page).locator(".msg.user").count() == 3

    assert page.errors == []
    assert page.external == []


def test_widget_has_no_serious_accessibility_violations(
    live_server: ServedIndex, page: Any
) -> None:
    from axe_playwright_python.base import AXE_SCRIPT

    page.goto(live_server.url + "/")
    page.get_by_role("button", name="Open chat: Literature assistant").click()
    ask_widget(page, live_server.question)
    page.evaluate(AXE_SCRIPT)
    results = page.evaluate("async () => await axe.run(document, {resultTypes: ['violations']})")
    serious = [
        {
            "id": violation["id"],
            "impact": violation["impact"],
            "help": violation["help"],
            "nodes": [node["target"] for node in violation["nodes"]],
        }
        for violation in results["violations"]
        if violation["impact"] in ("serious", "critical")
    ]
    assert serious == [], json.dumps(serious, indent=2)
    # The scan really covered the widget (axe reports what it checked as passes too).
    checked = page.evaluate(
        "async () => (await axe.run('#carqa-widget', {resultTypes: ['passes']})).passes.length"
    )
    assert checked > 5


def test_widget_shows_server_errors_and_abstentions(live_server: ServedIndex, page: Any) -> None:
    page.goto(live_server.url + "/")
    page.evaluate("() => localStorage.clear()")
    page.reload()
    page.get_by_role("button", name="Open chat: Literature assistant").click()
    ask_widget(page, "What is the capital of France?")
    reply = widget_host(page).locator(".msg.bot").last
    assert "Not answered by the indexed literature." in reply.inner_text()
    # A question over the length limit: the server's 422 message is shown, as text.
    page.evaluate("() => window.carqa.ask('x'.repeat(1500))")
    page.wait_for_function(
        "() => document.querySelector('#carqa-widget').shadowRoot.querySelector('.msg.error')"
    )
    error = widget_host(page).locator(".msg.error").last
    assert "limit is 1000" in error.inner_text()
    assert error.get_attribute("role") == "alert"


def test_page_says_what_is_indexed_offers_its_examples_and_shows_answers_once(
    live_server: ServedIndex, page: Any
) -> None:
    """The page names the corpus (the seed review, linked), its size and years; its example
    questions come from the server; an extractive answer's sentences are not repeated under
    Sources; the browser's /favicon.ico is served; /docs renders with no request elsewhere."""
    origin = live_server.url
    page.on(
        "request",
        lambda request: (
            None if request.url.startswith(origin) else page.external.append(request.url)
        ),
    )
    failed: list[str] = []
    page.on("response", lambda r: failed.append(r.url) if r.status >= 400 else None)
    page.goto(origin + "/")
    corpus = page.locator("#corpus")
    corpus.locator("a").wait_for()
    said = corpus.inner_text()
    assert "PubMed abstracts from 20" in said, said
    assert "invented review" in said and "and the papers it cites" in said, said
    assert corpus.locator("a").get_attribute("href") == "https://pubmed.ncbi.nlm.nih.gov/90000001/"
    examples = page.locator("#examples button")
    examples.first.wait_for()
    assert "CD19 CAR T" in examples.first.inner_text()  # a CAR T review keeps its examples

    launcher = page.get_by_role("button", name="Open chat: Literature assistant")
    launcher.click()
    starters = widget_host(page).locator(".starters button")
    assert starters.count() == 3
    assert starters.first.inner_text() == examples.first.inner_text()
    assert "PubMed abstracts" in widget_host(page).locator(".about").inner_text()
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "widget-corpus.png"))

    ask_widget(page, live_server.question)
    reply = widget_host(page).locator(".msg.bot").last
    sources = reply.locator(".sources li")
    assert sources.count() >= 1
    assert reply.locator(".sources .quote").count() == 0, reply.inner_text()  # shown once...
    for i in range(sources.count()):  # ... in the answer, which quotes every source sentence
        link = sources.nth(i).locator("a").inner_text()
        assert link.startswith(f"[{i + 1}] ")
    for meta in reply.locator(".sources .meta").all_inner_texts():
        assert "Untitled" not in meta
    page.screenshot(path=str(ARTIFACTS / "widget-answer-once.png"))

    icon = page.request.get(origin + "/favicon.ico")
    assert icon.status == 200 and icon.headers["content-type"] == "image/x-icon"
    page.goto(origin + "/docs")
    page.locator(".swagger-ui .info .title").wait_for(timeout=30_000)
    assert "carqa" in page.locator(".swagger-ui .info .title").inner_text()
    page.screenshot(path=str(ARTIFACTS / "docs.png"))
    assert page.external == []
    assert not [url for url in failed if "favicon" in url], failed
    assert page.errors == []
