"""An index directory on disk: its file names, the ``current`` link, the build lock, publishing.

An index directory holds ``builds/<id>/`` (each a complete, checksummed build), a ``current``
symlink to the build that is served, ``cache/`` (embedding cache, ONNX exports) and
``build.lock``. This module is the one place that knows that layout, so the writer
(:mod:`carqa.index.search.build`) and the reader (:mod:`carqa.index.search.reader`) agree on it
without the reader importing the writer.

Why publish by symlink: a new build is written into ``builds/.tmp-<id>``, renamed to
``builds/<id>``, and ``current`` is swapped with an atomic ``os.replace`` of a temporary
symlink. A kill at any moment leaves ``current`` pointing at the previous, complete build.
The build lock is an ``flock`` on ``build.lock``, released by the OS even after a kill.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import shlex
import shutil
from collections.abc import Iterator
from pathlib import Path

from carqa.index.corpus.store import STORE_FILENAME
from carqa.index.search.manifest import MANIFEST_FILE

from carqa.errors import CarqaError, IndexCorrupt, IndexNotFound

log = logging.getLogger(__name__)

BUILDS_DIR = "builds"
CURRENT_LINK = "current"
CACHE_DIR = "cache"
EMBEDDING_CACHE = "embeddings.sqlite"
LOCK_FILE = "build.lock"
META_FILE = "meta.sqlite"
CHUNKS_FAISS = "chunks.faiss"
SENTENCES_FAISS = "sentences.faiss"
SENTENCES_NPY = "sentences.npy"
ONNX_DIR = "onnx"
TMP_PREFIX = ".tmp-"
REQUIRED_FILES = (META_FILE, CHUNKS_FAISS)
"""Files every build has, so its manifest must list (and checksum) them."""


class BuildBusy(CarqaError):
    """Another build holds the index directory's lock."""


def current_build(index_dir: Path) -> Path | None:
    """The build ``<index_dir>/current`` points at, if it exists and is a published build
    (see :func:`current_problem`); None otherwise."""
    link = Path(index_dir) / CURRENT_LINK
    if not link.is_symlink() or current_problem(index_dir) is not None:
        return None
    target = link.resolve()
    return target if target.is_dir() else None


def current_problem(index_dir: Path) -> str | None:
    """Why ``<index_dir>/current`` is not a link carqa may follow (None when it is, or when
    there is none): it must be a symlink to a folder directly in ``<index_dir>/builds/``.

    Why: everything trusts ``current`` — ``Index.open`` serves what it leads to, a build
    compares it to decide "up to date" and keeps it from pruning. A link edited or restored
    to lead elsewhere (``../other-index/builds/x``, an absolute path, a nested folder) would
    make carqa serve and vouch for files it never built or checksummed for this index; so a
    build ignores such a link and replaces it, and opening refuses it with the rebuild hint."""
    index_dir = Path(index_dir)
    link = index_dir / CURRENT_LINK
    if not link.is_symlink():
        if link.exists():
            return f"{link} is a {'folder' if link.is_dir() else 'file'}, not a link to a build"
        return None
    try:
        builds = (index_dir / BUILDS_DIR).resolve()
        target = link.resolve()
    except (OSError, RuntimeError) as error:  # a symlink loop (RuntimeError before 3.13)
        return f"{link} cannot be followed ({error})"
    if not target.is_relative_to(builds):
        return f"{link} points to {target}, outside {builds}"
    if target.parent != builds:
        return f"{link} points to {target}, not to a build folder directly in {builds}"
    return None


def check_current(index_dir: Path) -> None:
    """Before a build: a ``current`` that is not ours to replace is an error; a link leading
    outside ``builds/`` is only a warning (the build replaces the link, never what it leads
    to, and neither compares with nor keeps that folder — see :func:`current_problem`)."""
    problem = current_problem(index_dir)
    if problem is None:
        return
    link = index_dir / CURRENT_LINK
    if not link.is_symlink():
        raise CarqaError(
            f"{problem}; a build would have to replace it.",
            hint=f"Move {shell_path(link)} out of the index folder (carqa does not delete "
            "what it did not make), then index the stored corpus: "
            f"`carqa build --index-only --index-dir {shell_path(index_dir)}`.",
        )
    log.warning("%s: not a build of this index; the new build replaces the link.", problem)


def shell_path(path: Path | str) -> str:
    """``path`` as a shell word: hints print commands to paste, and an index dir may hold
    spaces or brackets (``~/My Index``) that would otherwise split or glob."""
    return shlex.quote(str(path))


def rebuild_hint(index_dir: Path) -> str:
    where = shell_path(index_dir)
    return (
        f"Rebuild it: `carqa build --index-dir {where}` "
        f"(or `carqa build --index-dir {where} --from FILE` without PubMed access)."
    )


@contextlib.contextmanager
def build_lock(index_dir: Path) -> Iterator[None]:
    """An exclusive, non-blocking lock on the index directory for the duration of a build."""
    path = Path(index_dir) / LOCK_FILE
    with path.open("a+") as handle:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as error:
            raise BuildBusy(
                f"Another build is running in {index_dir}.",
                hint="Wait for it to finish (the lock is released when it exits).",
            ) from error
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def link_or_copy(source: Path, target: Path) -> None:
    """Hard link (no 90 MB copy per build) when on the same filesystem, else copy."""
    try:
        os.link(source, target)
    except OSError:
        shutil.copyfile(source, target)


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def swap_current(index_dir: Path, build: Path) -> None:
    """Point ``current`` at ``build``: a new symlink under a temp name, then ``os.replace``."""
    link = index_dir / CURRENT_LINK
    tmp = index_dir / f".{CURRENT_LINK}.tmp-{os.getpid()}"
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    os.symlink(os.path.relpath(build, index_dir), tmp)
    os.replace(tmp, link)
    fsync_dir(index_dir)


def prune(index_dir: Path, keep: set[Path]) -> list[str]:
    """Remove builds other than ``keep`` and leftovers of killed builds (the caller holds the
    build lock)."""
    removed: list[str] = []
    keep_resolved = {k.resolve() for k in keep}
    for child in sorted((index_dir / BUILDS_DIR).iterdir()):
        if child.resolve() in keep_resolved:
            continue
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child, ignore_errors=True)
        else:
            child.unlink(missing_ok=True)
        removed.append(child.name)
    for stale in index_dir.glob(f".{CURRENT_LINK}.tmp-*"):
        stale.unlink(missing_ok=True)
    return removed


def served_build_folder(index_dir: Path) -> Path:
    """The build folder an index directory serves: the target of its ``current`` link, or
    ``index_dir`` itself when it is a build folder. Each way it can fail is an error that says
    what to run: a file given for a folder, a damaged or foreign ``current``, a corpus with no
    index yet, nothing there at all."""
    if index_dir.exists() and not index_dir.is_dir():
        # Not "holds no built index" with a hint to build into it: a file cannot hold one.
        raise IndexNotFound(
            f"{index_dir} is a file, not a directory.",
            hint="Pass the index folder to --index-dir (or CARQA_INDEX_DIR); files to index "
            "go to `carqa build --from FILE`.",
        )
    if (index_dir / MANIFEST_FILE).is_file():
        return index_dir  # a build folder given directly
    link = index_dir / CURRENT_LINK
    if link.is_symlink() or link.exists():
        problem = current_problem(index_dir)
        if problem is not None and link.is_symlink():
            raise IndexCorrupt(
                f"{problem}: carqa only opens the builds it published there.",
                hint=rebuild_hint(index_dir),
            )
        if problem is not None:  # a folder or file a build will not replace
            raise IndexCorrupt(
                f"{problem}.",
                hint=f"Move {shell_path(link)} out of the index folder, then run "
                f"`carqa build --index-only --index-dir {shell_path(index_dir)}`.",
            )
        target = link.resolve()
        if target.is_dir():
            return target
        raise IndexCorrupt(
            f"{link} points to {target}, which does not exist.", hint=rebuild_hint(index_dir)
        )
    if (index_dir / STORE_FILENAME).is_file():
        # A corpus without its index (`carqa build --no-index`, `snapshot import --no-index`):
        # index what is there, nothing needs fetching.
        raise IndexNotFound(
            f"{index_dir} holds a corpus but no built index.",
            hint=f"Index it: `carqa build --index-only --index-dir {shell_path(index_dir)}`.",
        )
    where = "does not exist" if not index_dir.exists() else "holds no built index"
    raise IndexNotFound(
        f"{index_dir} {where}.",
        hint=f"Build one: `carqa build --index-dir {shell_path(index_dir)}` (from PubMed), or "
        f"`carqa build --index-dir {shell_path(index_dir)} --from FILE` (from JSONL/XML files).",
    )
