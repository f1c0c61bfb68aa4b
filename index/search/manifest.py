"""``manifest.json``: what a published build is, and the checks that it is intact and fits.

Why a manifest: an index is only meaningful with the model that made its vectors, the chunking
that made its texts and the corpus it covers. The manifest records all three, plus a checksum
of every file, so that opening an index with the wrong model or a damaged file fails with a
clear error instead of returning nonsense — and so "is the index up to date?" is a comparison
of a few strings rather than a rebuild.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from carqa.errors import IndexCorrupt, IndexMismatch

FORMAT_VERSION = 1
MANIFEST_FILE = "manifest.json"


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def file_entries(folder: Path, names: list[str]) -> dict[str, dict[str, Any]]:
    """``{relative name: {"bytes", "sha256"}}`` for the build's files."""
    return {
        name: {"bytes": (folder / name).stat().st_size, "sha256": sha256_file(folder / name)}
        for name in sorted(names)
    }


def write_manifest(folder: Path, manifest: dict[str, Any]) -> None:
    """Write ``manifest.json`` atomically (temp + fsync + rename)."""
    path = Path(folder) / MANIFEST_FILE
    tmp = path.with_name(f".{MANIFEST_FILE}.tmp-{os.getpid()}")
    with tmp.open("w") as handle:
        json.dump(manifest, handle, indent=2, sort_keys=True)
        handle.write("\n")
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def read_manifest(
    folder: Path, *, rebuild_hint: str, required_files: tuple[str, ...] = ()
) -> dict[str, Any]:
    """The manifest of a build folder; :class:`IndexCorrupt` when missing, unreadable or not
    shaped as a build writes it (see :func:`_check_shape`), :class:`IndexMismatch` when
    written by another format version. ``required_files`` must be among its checksummed files."""
    path = Path(folder) / MANIFEST_FILE
    try:
        manifest = json.loads(path.read_text())
    except FileNotFoundError as error:
        raise IndexCorrupt(
            f"The index at {folder} has no {MANIFEST_FILE}.", hint=rebuild_hint
        ) from error
    except (OSError, ValueError) as error:
        raise IndexCorrupt(f"{path} is unreadable ({error}).", hint=rebuild_hint) from error
    if not isinstance(manifest, dict):
        raise IndexCorrupt(f"{path} is not a JSON object.", hint=rebuild_hint)
    version = manifest.get("format_version")
    if version != FORMAT_VERSION:
        raise IndexMismatch(
            f"The index at {folder} has format version {version}; this carqa reads version "
            f"{FORMAT_VERSION}.",
            hint=rebuild_hint,
        )
    for key in ("model", "files", "counts", "corpus", "chunking"):
        if not isinstance(manifest.get(key), dict):
            raise IndexCorrupt(f"{path} lacks the {key!r} section.", hint=rebuild_hint)
    problem = _check_shape(manifest, required_files)
    if problem is not None:
        raise IndexCorrupt(
            f"{path} is damaged or was edited: {problem}.",
            hint=rebuild_hint,
        )
    return manifest


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_shape(manifest: dict[str, Any], required_files: tuple[str, ...]) -> str | None:
    """What is wrong with the values readers rely on, or None.

    Why: the manifest is the one file of a build that is not checksummed, and everything else
    trusts it — the file list decides what is verified, ``model.dim`` sizes every vector. A
    hand-edited or damaged value must be a refusal with the rebuild hint (and make the next
    ``carqa build`` rebuild), not an ``AttributeError`` from deep inside ``open`` or ``build``,
    nor a check that silently skips a file or reads one outside the build."""
    model = manifest["model"]
    if not isinstance(model.get("id"), str) or not model["id"]:
        return "'model.id' is missing"
    dim = model.get("dim")
    if not _is_int(dim) or dim <= 0:
        return f"'model.dim' is {dim!r}, not a positive integer"
    for name, entry in manifest["files"].items():
        relative = Path(name)
        if relative.is_absolute() or ".." in relative.parts or not relative.parts:
            return f"it lists the file {name!r} outside the build"
        if (
            not isinstance(entry, dict)
            or not _is_int(entry.get("bytes"))
            or not isinstance(entry.get("sha256"), str)
        ):
            return f"the entry of {name!r} lacks its size or sha256"
    for name in required_files:
        if name not in manifest["files"]:
            return f"it does not list {name}"
    for key, value in manifest["counts"].items():
        if not _is_int(value):
            return f"'counts.{key}' is {value!r}, not an integer"
    if not isinstance(manifest["corpus"].get("content_hash"), str):
        return "'corpus.content_hash' is missing"
    vectors = manifest.get("vectors", {})
    if not isinstance(vectors, dict) or not all(isinstance(v, dict) for v in vectors.values()):
        return "the 'vectors' section is not a set of objects"
    return None


def verify_files(folder: Path, manifest: dict[str, Any], *, rebuild_hint: str) -> None:
    """Every file the manifest lists exists with the recorded size and sha256."""
    for name, entry in manifest["files"].items():
        path = Path(folder) / name
        if not path.is_file():
            raise IndexCorrupt(f"The index file {path} is missing.", hint=rebuild_hint)
        if path.stat().st_size != entry.get("bytes"):
            raise IndexCorrupt(
                f"The index file {path} has {path.stat().st_size} bytes, the manifest says "
                f"{entry.get('bytes')}: it is damaged or was changed after the build.",
                hint=rebuild_hint,
            )
        if sha256_file(path) != entry.get("sha256"):
            raise IndexCorrupt(
                f"The index file {path} does not match its checksum: it is damaged or was "
                "changed after the build.",
                hint=rebuild_hint,
            )


def build_key(manifest: dict[str, Any]) -> dict[str, Any]:
    """What decides whether a build is still current: format, model, settings, corpus."""
    return {
        "format_version": manifest.get("format_version"),
        "model_id": manifest.get("model", {}).get("id"),
        "chunking": manifest.get("chunking"),
        "vectors": manifest.get("vectors", {}).get("settings"),
        "corpus_hash": manifest.get("corpus", {}).get("content_hash"),
        # The CARQA_QUERY_PRECISION a build was made for (older builds: none, i.e. fp32 only).
        "query_precision": manifest.get("query_precision_setting", "fp32"),
        # How the BM25 postings were made (older builds: none, so they are rebuilt with them).
        "lexical": manifest.get("lexical", {}).get("settings"),
    }
