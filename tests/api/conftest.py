"""Fixtures for the HTTP API tests: apps over the fake engine (fast) and clients for them; for
the widget's browser tests, headless Chromium and its pages."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from carqa.api.app import create_app
from fastapi.testclient import TestClient

from carqa.settings import Settings
from tests.api.browser_support import CHROMIUM_ARGS, ROUTED, STATIC_DIR, chromium_path
from tests.api.fakes import FakeChat, FakeEngine

MakeClient = Callable[..., TestClient]


@pytest.fixture
def make_client(tmp_path: Path) -> Iterator[MakeClient]:
    """Build a TestClient over the fake engine with any settings overridden."""
    clients: list[TestClient] = []

    def make(*, engine: Any = None, chat: Any = None, **overrides: Any) -> TestClient:
        settings = Settings(index_dir=tmp_path / "index", **overrides)
        engine = engine or FakeEngine()
        chat = chat or FakeChat(engine)
        client = TestClient(create_app(settings, engine=engine, chat=chat))
        client.__enter__()
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.__exit__(None, None, None)


@pytest.fixture
def client(make_client: MakeClient) -> TestClient:
    return make_client()


# -- the widget in a real browser (tests marked browser) ------------------------------------


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    executable = chromium_path()
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
