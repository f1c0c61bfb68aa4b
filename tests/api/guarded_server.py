"""Serve the app over the fake engine with ``carqa serve``'s uvicorn options (connection
limits, trusted proxies): ``python -m tests.api.guarded_server --port N [CARQA_* env]``.

For the slow-client and forwarded-header tests, which need a real server and its sockets but
not a built index.
"""

from __future__ import annotations

import argparse
import tempfile

import uvicorn
from carqa.api.app import create_app
from carqa.api.connections import uvicorn_options

from carqa.settings import Settings
from tests.api.fakes import FakeChat, FakeEngine


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    settings = Settings.load(index_dir=tempfile.mkdtemp(prefix="carqa-guarded-"))
    engine = FakeEngine()
    app = create_app(settings, engine=engine, chat=FakeChat(engine))
    options = uvicorn_options(settings)
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning", **options)


if __name__ == "__main__":
    main()
