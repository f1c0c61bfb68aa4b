"""Opening corpus files: gzip is recognised by content, text is UTF-8 with an optional BOM."""

from __future__ import annotations

import gzip
import io
from pathlib import Path
from typing import IO

GZIP_MAGIC = b"\x1f\x8b"


def open_binary(path: Path) -> IO[bytes]:
    """Open a file for reading, gunzipping it when it is gzip data. Decided by the content, not
    the name: browsers save ``x.xml.gz`` already decompressed, and a gzipped download often
    lacks the ``.gz``."""
    with path.open("rb") as probe:
        gzipped = probe.read(len(GZIP_MAGIC)) == GZIP_MAGIC
    return gzip.open(path, "rb") if gzipped else path.open("rb")


def open_text(path: Path) -> IO[str]:
    """Open a UTF-8 text file, gunzipped if it is gzip data (:func:`open_binary`). A byte
    order mark (as Windows editors write) is dropped: JSON has no BOM, so it would make the
    first line invalid."""
    return io.TextIOWrapper(open_binary(path), encoding="utf-8-sig")
