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

from index.errors import IndexCorrupt, IndexMismatch

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


def read_manifest(folder: Path, *, rebuild_hint: str) -> dict[str, Any]:
    """The manifest of a build folder; :class:`IndexCorrupt` when missing or unreadable,
    :class:`IndexMismatch` when written by another format version."""
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
    return manifest


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
    }
