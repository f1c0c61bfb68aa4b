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

from index.build import _link_or_copy

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
        copy_function=lambda a, b: _link_or_copy(Path(a), Path(b)),
    )
    (index_dir / "current").symlink_to(Path("builds") / build.name)
    port = _free_port()
    log = tmp_path_factory.mktemp("server") / "server.log"
    command = [
        sys.executable,
        "-m",
        "api.cli",
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
    page.get_by_role("button", name="Open chat: CAR T literature assistant").focus()
    page.keyboard.press("Enter")
    launcher = page.locator("#carqa-widget .launcher")
    assert launcher.get_attribute("aria-expanded") == "true"
    assert launcher.get_attribute("aria-label") == "Close chat: CAR T literature assistant"
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
    page.get_by_role("button", name="Open chat: CAR T literature assistant").click()
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
    page.get_by_role("button", name="Open chat: CAR T literature assistant").click()
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
    page.get_by_role("button", name="Open chat: CAR T literature assistant").click()
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


def _reply(answer: str, session_id: str, **extra: Any) -> str:
    """A streamed chat reply with one citation, as the server sends it."""
    done = {
        "answer": answer,
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
    return page


def _open_widget(page: Any) -> None:
    page.goto(ROUTED + "/")
    page.get_by_role("button", name="Open chat: CAR T literature assistant").click()


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
    page.get_by_role("button", name="Open chat: CAR T literature assistant").click()
    assert _widget(page).locator(".msg.bot .note").last.inner_text() == note
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
