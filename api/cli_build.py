"""``carqa build`` and ``carqa snapshot``: get the corpus and build its index."""

from __future__ import annotations

from api.cli_common import app, not_implemented, snapshot_app


@app.command()
def build() -> None:
    """Build the corpus (PubMed or --from files) and its search index."""
    not_implemented("build")


@snapshot_app.command("export")
def snapshot_export() -> None:
    """Write the built corpus to a portable snapshot file."""
    not_implemented("snapshot export")


@snapshot_app.command("import")
def snapshot_import() -> None:
    """Load a corpus snapshot file into the store."""
    not_implemented("snapshot import")
