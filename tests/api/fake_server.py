"""Serve the app over the fake engine: ``python -m tests.api.fake_server --port N``.

For browser tests of the widget that should not depend on a built index (and for trying the
widget by hand). Streams are slowed a little so a test can watch them arrive in pieces.
"""

from __future__ import annotations

import argparse
import tempfile

import uvicorn
from carqa.api.app import create_app

from carqa.settings import Settings
from tests.api.fakes import FakeChat, FakeEngine


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--delay", type=float, default=0.05, help="seconds between deltas")
    args = parser.parse_args()
    engine = FakeEngine(delay=args.delay)
    settings = Settings(index_dir=tempfile.mkdtemp(prefix="carqa-fake-"))
    app = create_app(settings, engine=engine, chat=FakeChat(engine))
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
