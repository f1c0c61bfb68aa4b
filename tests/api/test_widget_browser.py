"""The chat widget in a real browser: headless Debian Chromium driven by Playwright.

A live server runs in a subprocess; the test loads its demo page, opens the widget with the
keyboard, asks a question, watches the sources arrive before the streamed answer, follows the
PubMed citation links, checks that an abstract containing ``<img src=x onerror=...>`` stays inert
text, reloads and continues the conversation, and runs axe-core over the page with the widget
open. A screenshot of the widget answering is saved to ``artifacts/widget.png``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from carqa.index.search.layout import link_or_copy

pytestmark = pytest.mark.browser

REPO_ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO_ROOT / "artifacts"
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
INJECTED = "<img src=x onerror=alert(1)>"


@dataclass(frozen=True)
class LiveServer:
    url: str
    question: str  # answered with citations
    xss_question: str  # retrieves the abstract with the injected markup
    follow_up: str


def _chromium() -> str:
    for candidate in (os.environ.get("CARQA_CHROMIUM"), "/usr/bin/chromium"):
        if candidate and Path(candidate).exists():
            return candidate
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if not found:
        pytest.skip("Chromium not found: install Debian's `chromium` (scripts/setup.sh --dev)")
    return found


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _start(command: list[str], port: int, log: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}
    with log.open("wb") as out:
        process = subprocess.Popen(
            command, cwd=REPO_ROOT, env=env, stdout=out, stderr=subprocess.STDOUT
        )
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"server exited early:\n{log.read_text(errors='replace')}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200:
                return process
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    process.terminate()
    raise AssertionError(f"server not ready in time:\n{log.read_text(errors='replace')}")


@pytest.fixture(scope="module")
def live_server(
    small_index_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveServer]:
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
    port = _free_port()
    log = tmp_path_factory.mktemp("server") / "server.log"
    command = [
        sys.executable,
        "-m",
        "carqa.cli",
        "serve",
        "--index-dir",
        str(index_dir),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--log-level",
        "warning",
    ]
    server = LiveServer(
        url=f"http://127.0.0.1:{port}",
        question="Why do patients relapse after CD19 CAR T cell therapy?",
        xss_question="Which markup must appear as plain text: img src onerror?",
        follow_up="How could it be prevented?",
    )
    process = _start(command, port, log)
    try:
        yield server
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    executable = _chromium()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1100, "height": 760})
    page = context.new_page()
    page.dialogs = []  # type: ignore[attr-defined]
    page.errors = []  # type: ignore[attr-defined]
    page.on("dialog", lambda dialog: (page.dialogs.append(dialog.message), dialog.dismiss()))
    page.on("pageerror", lambda error: page.errors.append(str(error)))
    # Any request that leaves the server under test is a failure (the widget makes none).
    page.external = []  # type: ignore[attr-defined]
    yield page
    context.close()


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


def _widget(page: Any) -> Any:
    return page.locator("#carqa-widget")


def _ask(page: Any, question: str) -> None:
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


def test_widget_answers_streams_cites_stays_inert_and_continues_after_reload(
    live_server: LiveServer, page: Any
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
    _ask(page, live_server.question)
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

    reply = _widget(page).locator(".msg.bot").last
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
    _ask(page, live_server.xss_question)
    reply = _widget(page).locator(".msg.bot").last
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
    restored = _widget(page).locator(".msg.user")
    assert restored.count() == 2
    assert live_server.question in restored.first.inner_text()
    assert INJECTED in _widget(page).locator(".msg.bot").last.inner_text()
    with page.expect_request(lambda r: r.url.endswith("/api/chat")) as request_info:
        _ask(page, live_server.follow_up)
    sent = json.loads(request_info.value.post_data)
    assert sent["session_id"] == session_before
    assert sent["stream"] is True
    assert _widget(page).locator(".msg.user").count() == 3

    assert page.errors == []
    assert page.external == []


def test_widget_has_no_serious_accessibility_violations(live_server: LiveServer, page: Any) -> None:
    from axe_playwright_python.base import AXE_SCRIPT

    page.goto(live_server.url + "/")
    page.get_by_role("button", name="Open chat: Literature assistant").click()
    _ask(page, live_server.question)
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


def test_widget_shows_server_errors_and_abstentions(live_server: LiveServer, page: Any) -> None:
    page.goto(live_server.url + "/")
    page.evaluate("() => localStorage.clear()")
    page.reload()
    page.get_by_role("button", name="Open chat: Literature assistant").click()
    _ask(page, "What is the capital of France?")
    reply = _widget(page).locator(".msg.bot").last
    assert "Not answered by the indexed literature." in reply.inner_text()
    # A question over the length limit: the server's 422 message is shown, as text.
    page.evaluate("() => window.carqa.ask('x'.repeat(1500))")
    page.wait_for_function(
        "() => document.querySelector('#carqa-widget').shadowRoot.querySelector('.msg.error')"
    )
    error = _widget(page).locator(".msg.error").last
    assert "limit is 1000" in error.inner_text()
    assert error.get_attribute("role") == "alert"


# -- the widget against scripted replies (no server: the browser's requests are answered here) --

ROUTED = "http://carqa.test"
STATIC_DIR = REPO_ROOT / "api" / "static"
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


def _sse(*events: tuple[str, dict[str, Any]]) -> str:
    return "".join(f"event: {name}\r\ndata: {json.dumps(data)}\r\n\r\n" for name, data in events)


def _segments(answer: str) -> list[dict[str, Any]]:
    """``answer``'s ``[n]`` markers as the server's segments (each text, then its citations)."""
    segments, start = [], 0
    for run in re.finditer(r"(?:\[\d+\])+", answer):
        numbers = [int(n) for n in re.findall(r"\d+", run.group(0))]
        segments.append({"text": answer[start : run.start()], "citations": numbers})
        start = run.end()
    if start < len(answer):
        segments.append({"text": answer[start:], "citations": []})
    return segments


def _reply(answer: str, session_id: str, **extra: Any) -> str:
    """A streamed chat reply with one citation, as the server sends it."""
    done = {
        "answer": answer,
        "segments": _segments(answer),
        "abstained": False,
        "citations": [CITATION],
        "took_ms": 1.0,
        "query": "q",
        "message": None,
        "flags": [],
        "session_id": session_id,
        **extra,
    }
    return _sse(("sources", {"citations": [CITATION]}), ("delta", {"text": answer}), ("done", done))


@pytest.fixture
def routed_page(page: Any) -> Any:
    """``page`` on a made-up origin serving the demo page and widget from api/static; chat
    requests are left to each test (``page.route(ROUTED + '/api/chat', ...)``)."""

    def static(route: Any) -> None:
        name = route.request.url.removeprefix(ROUTED + "/") or "index.html"
        kind = "text/javascript" if name.endswith(".js") else "text/html"
        route.fulfill(body=(STATIC_DIR / name).read_bytes(), content_type=kind)

    page.route(ROUTED + "/", static)
    page.route(ROUTED + "/widget.js", static)
    page.route(ROUTED + "/demo.js", static)
    # What is indexed: not asked of a made-up host (its failure would come at any time).
    page.route(ROUTED + "/api/corpus", lambda route: route.fulfill(status=404, body=""))
    return page


def _open_widget(page: Any) -> None:
    page.goto(ROUTED + "/")
    page.get_by_role("button", name="Open chat: Literature assistant").click()


def test_widget_shows_the_note_of_an_answer(routed_page: Any) -> None:
    """An answer can come with a note the user must read: above all that the session had
    expired, so a follow-up was answered without its conversation. The widget showed only
    abstentions' notes."""
    page = routed_page
    note = "This conversation was not found or has expired, so a new one was started."
    page.route(
        ROUTED + "/api/chat",
        lambda route: route.fulfill(
            body=_reply(
                "Loss of CD19 causes relapse [1].",
                "s2",
                message=note,
                flags=["session_expired"],
            ),
            content_type="text/event-stream",
        ),
    )
    _open_widget(page)
    _ask(page, "and in adults?")
    reply = _widget(page).locator(".msg.bot").last
    assert reply.locator(".answer a.cite").count() == 1
    assert reply.locator(".note").count() == 1
    assert reply.locator(".note").inner_text() == note
    page.reload()  # the note is part of the saved conversation
    page.get_by_role("button", name="Open chat: Literature assistant").click()
    assert _widget(page).locator(".msg.bot .note").last.inner_text() == note
    assert page.errors == []


def test_widget_shows_which_papers_a_follow_up_came_from(routed_page: Any) -> None:
    """A follow-up about "the study" is answered from the papers just discussed: the reply's
    focus_pmids, shown under the answer (and kept with the saved conversation)."""
    page = routed_page
    page.route(
        ROUTED + "/api/chat",
        lambda route: route.fulfill(
            body=_reply("Thirty children were treated [1].", "s3", focus_pmids=["90000003"]),
            content_type="text/event-stream",
        ),
    )
    _open_widget(page)
    _ask(page, "how many children were treated?")
    focus = _widget(page).locator(".msg.bot").last.locator(".focus")
    assert focus.inner_text() == "From the papers discussed: PMID 90000003"
    page.reload()
    page.get_by_role("button", name="Open chat: Literature assistant").click()
    assert _widget(page).locator(".msg.bot .focus").last.inner_text().endswith("90000003")
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
            route.fulfill(body=_reply("First [1].", "old"), content_type="text/event-stream")
        elif len(bodies) == 2:
            held.append(route)  # answered after "New chat" is pressed
        else:
            route.fulfill(body=_reply("Fresh [1].", "new"), content_type="text/event-stream")

    page.route(ROUTED + "/api/chat", chat)
    _open_widget(page)
    _ask(page, "Why do patients relapse?")
    box = page.get_by_label("Your question")
    box.fill("and in adults?")
    box.press("Enter")
    page.wait_for_function(
        "() => document.querySelector('#carqa-widget').shadowRoot"
        ".querySelector('form button').disabled"
    )
    assert bodies[1]["session_id"] == "old"
    _widget(page).get_by_role("button", name="Start a new conversation").click()
    assert _widget(page).locator(".msg").count() == 0
    assert page.get_by_role("button", name="Send question").is_enabled()  # not stuck "busy"
    held[0].fulfill(body=_reply("Late [1].", "old"), content_type="text/event-stream")
    page.wait_for_timeout(300)
    assert _widget(page).locator(".msg").count() == 0
    saved = page.evaluate(f"() => JSON.parse(localStorage.getItem('carqa:{ROUTED}'))")
    assert saved == {"sessionId": None, "turns": []}

    _ask(page, "What is CRS?")
    assert "session_id" not in bodies[2]
    assert [m.text_content() for m in _widget(page).locator(".msg.user").all()] == [
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
    _open_widget(page)
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
    assert "the limit is 1000" in _widget(page).locator(".msg.error").inner_text()
    assert box.input_value() == question  # back in the box, to be shortened


def test_an_answer_is_marked_busy_while_it_streams(routed_page: Any) -> None:
    """Each piece of a streamed answer re-renders it inside the live log; until the answer is
    complete the message says aria-busy, so a screen reader reads it once, not every version."""
    page = routed_page
    held: list[Any] = []
    page.route(ROUTED + "/api/chat", lambda route: held.append(route))
    _open_widget(page)
    box = page.get_by_label("Your question")
    box.fill("Why do patients relapse?")
    box.press("Enter")
    for _ in range(100):  # until the request is in flight (held, not answered)
        if held:
            break
        page.wait_for_timeout(20)
    assert held, "the chat request was made"
    reply = _widget(page).locator(".msg.bot").last
    assert reply.get_attribute("aria-busy") == "true"
    held[0].fulfill(body=_reply("Loss of CD19 [1].", "s1"), content_type="text/event-stream")
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
        route.fulfill(body=_reply("Loss of CD19 [1].", "s1"), content_type="text/event-stream")

    page.route(ROUTED + "/api/chat", chat)
    _open_widget(page)
    box = page.get_by_label("Your question")
    for text in ("   ", "\u200b", "\u2060\u00ad\u200e", "\u200f\t\u3164"):
        box.fill(text)
        box.press("Enter")
    page.evaluate("() => window.carqa.ask('\\u200b\\u200d')")
    page.wait_for_timeout(300)
    assert sent == []
    assert _widget(page).locator(".msg").count() == 0
    _ask(page, "\u200bWhy do patients relapse?")  # invisible characters in a question: sent
    assert sent == ["\u200bWhy do patients relapse?"]
    assert _widget(page).locator(".msg.bot .answer a.cite").count() == 1
    assert page.errors == []


# -- several widgets on one page ----------------------------------------------------------------

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
    """``_ask`` in the widget whose host has id ``widget``."""
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
                body=_reply(answer, f"{origin[7:]}-{len(received[origin])}"),
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
            body=_reply("Loss of CD19 [1].", f"s{len(bodies)}"), content_type="text/event-stream"
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
        _reply("Loss of CD19 [1].", "s1"),
        _sse(
            ("sources", {"citations": [CITATION]}), ("delta", {"text": "Part"}), ("error", failure)
        ),
        _reply("In adults too [1].", "s2", message=expired, flags=["session_expired"]),
        _reply(
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
    _open_widget(page)
    _ask(page, "Why do patients relapse?")
    _ask(page, "and in adults?")
    error = _widget(page).locator(".msg.error").last
    assert "The language model is down. Try again later." in error.inner_text()  # and the hint
    assert page.get_by_label("Your question").input_value() == "and in adults?"
    page.get_by_label("Your question").press("Enter")  # send it again
    page.wait_for_function(
        "() => document.querySelector('#carqa-widget').shadowRoot"
        ".querySelectorAll('.msg.bot .note').length === 1"
    )
    _ask(page, "how is CRS treated?")
    assert [b.get("session_id") for b in bodies] == [None, "s1", "s1", "s2"]
    notes = _widget(page).locator(".msg.bot .note").all_text_contents()
    assert notes == [expired, cut]
    last = _widget(page).locator(".msg.bot").last
    assert last.locator(".answer").inner_text().startswith("Tocilizumab")
    saved = page.evaluate(f"() => JSON.parse(localStorage.getItem('carqa:{ROUTED}'))")
    assert saved["sessionId"] == "s2"
    assert page.errors == []


def test_page_says_what_is_indexed_offers_its_examples_and_shows_answers_once(
    live_server: LiveServer, page: Any
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
    starters = _widget(page).locator(".starters button")
    assert starters.count() == 3
    assert starters.first.inner_text() == examples.first.inner_text()
    assert "PubMed abstracts" in _widget(page).locator(".about").inner_text()
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "widget-corpus.png"))

    _ask(page, live_server.question)
    reply = _widget(page).locator(".msg.bot").last
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
