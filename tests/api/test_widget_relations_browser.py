"""The widget's relation and publication type filters, in a real browser against a live server
over invented papers (a seed review, the paper it cites, papers citing it, a similar article):
``data-relation``/``data-type`` on the script tag reach the server as filters, and each source
says what kind of evidence it is ("phase II trial · cites the review · 2021")."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from carqa.index.corpus.pipeline import build

from bench._common import LiveServer
from carqa.settings import Settings
from tests.api.browser_support import ask_widget

pytestmark = pytest.mark.browser

NEIGHBOURS = Path(__file__).resolve().parents[2] / "tests" / "fixtures" / "neighbour_papers.jsonl"
QUESTION = "Why does relapse happen after engineered killer cells?"
PAGE = """<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Filters</title></head>
<body><main><h1>What came after the review</h1></main>
<script src="/widget.js" data-relation="citing" data-type="Clinical Trial, Phase II|Case Reports"
        data-open="true"></script></body></html>"""


@pytest.fixture(scope="module")
def neighbour_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    index_dir = tmp_path_factory.mktemp("neighbours-served")
    build(Settings.load(index_dir=index_dir), sources=[NEIGHBOURS])
    with LiveServer(index_dir) as server:
        yield server.base_url


def test_widget_filters_by_relation_and_type_and_labels_the_evidence(
    neighbour_server: str,
    page: Any,
) -> None:
    sent: list[dict[str, Any]] = []
    page.on(
        "request",
        lambda request: (
            sent.append(json.loads(request.post_data))
            if request.url.endswith("/api/chat") and request.method == "POST"
            else None
        ),
    )
    page.route(
        neighbour_server + "/filtered.html",
        lambda route: route.fulfill(body=PAGE, content_type="text/html"),
    )
    page.goto(neighbour_server + "/filtered.html")
    ask_widget(page, QUESTION)

    assert sent and sent[0]["filters"] == {
        "relations": ["citing"],
        "publication_types": ["Clinical Trial, Phase II", "Case Reports"],
    }
    sources = page.locator("#carqa-widget .sources li")
    assert sources.count() >= 1
    kinds = [sources.nth(i).locator(".kind").text_content() for i in range(sources.count())]
    assert set(kinds) <= {
        "phase II trial · cites the review · 2021",
        "case report · cites the review · 2023",
    }
    assert "phase II trial · cites the review · 2021" in kinds
    assert page.errors == []  # type: ignore[attr-defined]
