"""A real uvicorn server in a thread, with ``carqa serve``'s uvicorn options, over the fake
engine: for tests that need real sockets (timeouts, connection limits, peer addresses) but not
a subprocess or a built index."""

from __future__ import annotations

import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import uvicorn
from carqa.api.app import create_app
from carqa.api.connections import uvicorn_options

from bench._common import free_port
from carqa.settings import Settings
from tests.api.fakes import FakeChat, FakeEngine

START_TIMEOUT = 60.0


@contextmanager
def in_process_server(**overrides: object) -> Iterator[int]:
    """The app over the fake engine, served in a thread with ``carqa serve``'s options."""
    settings = Settings(index_dir=tempfile.mkdtemp(prefix="carqa-guarded-"), **overrides)
    engine = FakeEngine()
    app = create_app(settings, engine=engine, chat=FakeChat(engine))
    port = free_port()
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, log_level="warning", **uvicorn_options(settings)
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while not server.started:
            assert thread.is_alive() and time.monotonic() < deadline, "the server never came up"
            time.sleep(0.05)
        yield port
    finally:
        server.should_exit = True
        thread.join(timeout=30)
