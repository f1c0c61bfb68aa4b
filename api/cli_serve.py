"""``carqa serve``: the HTTP API and the web chat widget."""

from __future__ import annotations

from api.cli_common import app, not_implemented


@app.command()
def serve() -> None:
    """Serve the HTTP API and the web chat widget."""
    not_implemented("serve")
