"""Make a file or a whole folder read-only for this process, for tests of read-only deployments.

Permissions first (``chmod a-w``). Root ignores them, and tests often run as root (CI
containers): then the immutable attribute (``chattr +i``), which stops root too, when this
process may set it. Whether the path really is read-only is checked by writing to it, never
assumed.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def read_only(path: Path) -> Iterator[bool]:
    """Make ``path`` (and, for a folder, everything in it) read-only while the block runs.

    Yields whether that worked; when it did not (root without the right to set immutable
    attributes, or a file system without them), ``path`` is left as it was."""
    entries = _entries(path)
    modes = {entry: entry.stat().st_mode for entry in entries}
    immutable: list[Path] = []
    try:
        for entry in entries:
            os.chmod(entry, modes[entry] & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))
        if _writable(path):
            immutable = entries  # undone on the way out, even where only some entries took it
            _chattr("+i", entries)
        done = not _writable(path)
        if not done:
            _restore(modes, immutable)
            modes, immutable = {}, []
        yield done
    finally:
        _restore(modes, immutable)


def _entries(path: Path) -> list[Path]:
    """``path`` and what it holds; symlinks are left alone (they have no mode of their own)."""
    if not path.is_dir():
        return [path]
    inside = [entry for entry in path.rglob("*") if not entry.is_symlink()]
    return [path, *inside]


def _writable(path: Path) -> bool:
    """Whether this process can still write there: create a file in a folder, open a file."""
    try:
        if path.is_dir():
            probe = path / ".write-probe"
            probe.touch()
            probe.unlink()
        else:
            with path.open("r+b"):
                pass
    except OSError:
        return False
    return True


def _chattr(flag: str, entries: list[Path]) -> None:
    if shutil.which("chattr") is not None:
        subprocess.run(["chattr", flag, *map(str, entries)], capture_output=True, check=False)


def _restore(modes: dict[Path, int], immutable: list[Path]) -> None:
    if immutable:
        _chattr("-i", immutable)
    for entry, mode in modes.items():
        os.chmod(entry, mode)
