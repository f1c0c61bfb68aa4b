"""Fixtures for the HTTP API tests: apps over the fake engine (fast) and clients for them."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from carqa.api.app import create_app
from fastapi.testclient import TestClient

from carqa.settings import Settings
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
