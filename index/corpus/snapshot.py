"""Corpus snapshots: move a built corpus between machines without PubMed access.

Format (version 1), chosen to be boring, inspectable and safe to load (no pickle): a gzipped
JSON Lines file (conventionally ``*.carqa.jsonl.gz``).

* Line 1 is a header::

    {"format": "carqa-snapshot", "version": 1, "created": "<UTC ISO time>",
     "carqa_version": "...", "seed_pmid": "..." | null, "source": "...",
     "papers": <count>, "content_hash": "<sha256, CorpusStore.content_hash>"}

* Every further line is one paper::

    {"pmid", "title", "journal", "year", "authors", "doi", "mesh", "publication_types",
     "sections": [{"label", "category", "text"}],
     "references": [{"citation", "pmid", "doi"}], "relation", "is_seed": bool}

  ``relation`` is the paper's relation to the seed (``seed``, ``cited``, ``citing``,
  ``similar`` or ``file``); a snapshot written before it existed has none, and import then
  derives it as a build does (the seed, the papers it cites, else ``file``).

Paper lines are a superset of the ``--from`` JSONL shape, so a snapshot also works as
``carqa build --from FILE``. Import checks the header, the paper count and the content hash
before it replaces the corpus (in one transaction), so a truncated or edited file is refused;
a snapshot without papers is refused too (it would replace the corpus with nothing).

Export writes exactly the file it is given: a directory, or a file in a folder that does not
exist, is an error rather than a guessed file name or a tree of new folders (a typo in the
path should not silently put the snapshot somewhere else).
"""

from __future__ import annotations

import gzip
import json
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from carqa.index.corpus.content_hash import corpus_hash, paper_to_dict
from carqa.index.corpus.models import Paper
from carqa.index.corpus.sources import SNAPSHOT_FORMAT, json_lines, paper_from_record
from carqa.index.corpus.store import CorpusStore

from carqa import __version__
from carqa.errors import InputError

SNAPSHOT_VERSION = 1
DEFAULT_NAME = "corpus.carqa.jsonl.gz"


@dataclass(frozen=True)
class SnapshotInfo:
    """What a snapshot holds (its header), and where it is."""

    path: Path
    papers: int
    seed_pmid: str | None
    content_hash: str
    source: str
    created: str

    def as_dict(self) -> dict:
        return {
            "path": str(self.path),
            "papers": self.papers,
            "seed_pmid": self.seed_pmid,
            "content_hash": self.content_hash,
            "source": self.source,
            "created": self.created,
        }


def export_snapshot(store: CorpusStore, path: Path) -> SnapshotInfo:
    """Write the store's corpus to ``path`` (atomically: a temp file renamed into place)."""
    path = Path(path).expanduser()
    _check_target(path, store)
    count = store.counts()["papers"]
    if count == 0:
        raise InputError(
            f"The corpus in {store.path.parent} is empty: nothing to export.",
            hint="Build it first with `carqa build` (or pass the right --index-dir).",
        )
    seed = store.seed_pmid()
    header = {
        "format": SNAPSHOT_FORMAT,
        "version": SNAPSHOT_VERSION,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "carqa_version": __version__,
        "seed_pmid": seed,
        "source": store.source(),
        "papers": count,
        "content_hash": store.content_hash(),
    }
    # A plain open (not mkstemp) so the file gets the usual umask permissions, not 0600.
    temp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with gzip.open(temp, "wt", encoding="utf-8") as out:
            out.write(json.dumps(header, ensure_ascii=False) + "\n")
            for paper in store.papers():
                line = paper_to_dict(paper) | {"is_seed": paper.pmid == seed}
                out.write(json.dumps(line, ensure_ascii=False) + "\n")
        os.replace(temp, path)
    except OSError as error:  # e.g. no permission, disk full
        temp.unlink(missing_ok=True)
        raise InputError(f"Could not write {path}: {error.strerror or error}.") from None
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    return _info(path, header)


def _check_target(path: Path, store: CorpusStore) -> None:
    """Refuse a target export cannot write as asked (see module doc), before any work, and
    one that is the corpus store itself (or one of SQLite's files beside it).

    Why the store: export renames its file over the target, so ``carqa snapshot export
    <index dir>/corpus.sqlite`` (a slip for the store's path as the *source*) replaced the
    corpus with its own snapshot, said "Wrote 22 papers", and left an index directory whose
    store no longer opened."""
    if path.is_dir():
        raise InputError(
            f"{path} is a directory; give the snapshot's file name.",
            hint=f"For example: carqa snapshot export {path / DEFAULT_NAME}",
        )
    if path.parent.exists() and not path.parent.is_dir():
        raise InputError(
            f"{path.parent} is a file, not a folder: {path.name} cannot be written in it.",
            hint="Choose a path in an existing folder.",
        )
    if not path.parent.is_dir():
        raise InputError(
            f"The folder {path.parent} does not exist.",
            hint="Create it first (export does not create folders), or choose another path.",
        )
    store_file = store.path.parent.resolve() / store.path.name
    target = path.parent.resolve() / path.name
    if target.parent == store_file.parent and (
        target.name == store_file.name or target.name.startswith(f"{store_file.name}-")
    ):
        raise InputError(
            f"{path} is the corpus store being exported; writing the snapshot there would "
            "replace the corpus.",
            hint=f"Give the snapshot its own file name, e.g. {path.parent / DEFAULT_NAME}.",
        )


def read_snapshot(path: Path) -> tuple[SnapshotInfo, list[Paper]]:
    """Read and fully validate a snapshot; raises :class:`InputError` on any problem."""
    path = Path(path).expanduser()
    if path.is_dir():
        raise InputError(
            f"{path} is a directory, not a snapshot file.",
            hint="Give the path of a file written by `carqa snapshot export`.",
        )
    if not path.is_file():
        raise InputError(f"{path} does not exist.", hint="Give the path of a snapshot file.")
    papers: list[Paper] = []
    seed_pmid: str | None = None
    try:
        with gzip.open(path, "rt", encoding="utf-8") as handle:
            header = _header(handle.readline(), path)
            for _, where, record in json_lines(handle, path, start=2):
                paper, is_seed = paper_from_record(record, where=where)
                papers.append(paper)
                if is_seed:
                    seed_pmid = paper.pmid
    except (OSError, EOFError, UnicodeDecodeError) as error:
        raise InputError(
            f"{path} is not a readable carqa snapshot ({error}).",
            hint="Snapshots are gzipped JSONL files written by `carqa snapshot export`.",
        ) from None
    if len(papers) != header["papers"]:
        raise InputError(
            f"{path} is incomplete: its header promises {header['papers']} papers, "
            f"it holds {len(papers)}.",
            hint="Export the snapshot again.",
        )
    if seed_pmid != header.get("seed_pmid"):
        raise InputError(f"{path}: the header's seed_pmid does not match the seed paper line.")
    if corpus_hash(papers, seed_pmid) != header["content_hash"]:
        raise InputError(
            f"{path} does not match its content hash: the file was changed or damaged.",
            hint="Export the snapshot again.",
        )
    return _info(path, header), papers


def read_importable(path: Path) -> tuple[SnapshotInfo, list[Paper]]:
    """:func:`read_snapshot`, refusing a snapshot without papers (it would empty the corpus).

    Callers run it before opening the store, so a refused file creates nothing."""
    info, papers = read_snapshot(path)
    if not papers:
        raise InputError(
            f"{path} holds no papers: the corpus was not replaced.",
            hint="Export the snapshot again from a built corpus.",
        )
    return info, papers


def import_snapshot(
    store: CorpusStore, path: Path, *, loaded: tuple[SnapshotInfo, list[Paper]] | None = None
) -> SnapshotInfo:
    """Validate ``path`` completely (or take ``loaded``, :func:`read_importable`'s result),
    then make it the store's corpus in one transaction."""
    info, papers = loaded if loaded is not None else read_importable(path)
    store.replace_corpus(papers, seed_pmid=info.seed_pmid, source=f"snapshot:{path}")
    return info


def _header(line: str, path: Path) -> dict:
    not_snapshot = InputError(
        f"{path} is not a carqa snapshot (no carqa-snapshot header line).",
        hint="Snapshots are written by `carqa snapshot export`; "
        "plain JSONL corpora go through `carqa build --from FILE`.",
    )
    try:
        header = json.loads(line) if line.strip() else None
    except json.JSONDecodeError:
        raise not_snapshot from None
    if not isinstance(header, dict) or header.get("format") != SNAPSHOT_FORMAT:
        raise not_snapshot
    version_ = header.get("version")
    if not _is_int(version_) or version_ > SNAPSHOT_VERSION or version_ < 1:
        raise InputError(
            f"{path} is a version {version_} snapshot; this carqa reads version "
            f"{SNAPSHOT_VERSION}.",
            hint="Upgrade carqa, or export the snapshot with this version.",
        )
    papers = header.get("papers")
    if not _is_int(papers) or papers < 0 or not isinstance(header.get("content_hash"), str):
        raise InputError(
            f"{path}: the snapshot header lacks a paper count ('papers') or 'content_hash'.",
            hint="Export the snapshot again.",
        )
    return header


def _is_int(value: object) -> bool:
    """An integer in JSON terms: ``true`` is a bool to us, not the count 1 (which Python's
    ``isinstance(True, int)`` would let through as "a version 1 snapshot of 1 paper")."""
    return isinstance(value, int) and not isinstance(value, bool)


def _info(path: Path, header: dict) -> SnapshotInfo:
    return SnapshotInfo(
        path=path,
        papers=header["papers"],
        seed_pmid=header.get("seed_pmid"),
        content_hash=header["content_hash"],
        source=header.get("source") or "",
        created=header.get("created") or "",
    )
