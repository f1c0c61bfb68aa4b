"""``carqa build --update``: bring a PubMed corpus up to date without rebuilding it.

What changes after a build: new papers cite the seed review, PubMed links more of the seed's
references (a publisher deposits its reference list late, ECitMatch learns a citation), and
new similar articles appear. An update asks PubMed again for exactly those lists (bypassing
the response cache), fetches only the PMIDs the corpus does not hold, and upserts them (and
the seed's refreshed record) into the store. The expansion of the last build (``--expand``,
``--since``, ``--max-expand``, remembered in the store) is repeated unless new values are
given. The index build that follows embeds only the new texts: the embedding cache holds the
rest.

Safe to run from cron: :func:`corpus_lock` makes a second ingest into the same index directory
fail at once with a clear message, and an update that finds nothing new changes nothing (the
index build then reports it up to date).
"""

from __future__ import annotations

import fcntl
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from carqa.index.corpus.entrez import EntrezClient
from carqa.index.corpus.expand import ExpandReport, expand_corpus, parse_expand
from carqa.index.corpus.models import Paper
from carqa.index.corpus.seed import SeedReport, fetch_seed_corpus
from carqa.index.corpus.store import STORE_FILENAME, CorpusStore

from carqa.errors import CarqaError, InputError
from carqa.progress import ProgressCallback

LOCK_FILE = "corpus.lock"


class CorpusBusy(CarqaError):
    """Another build or update is writing this index directory's corpus."""


@contextmanager
def corpus_lock(index_dir: Path) -> Iterator[None]:
    """An exclusive, non-blocking lock on the corpus of ``index_dir`` while it is written.

    Separate from the index build's own lock, which the same process takes afterwards."""
    with (Path(index_dir) / LOCK_FILE).open("a+") as handle:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as error:
            raise CorpusBusy(
                f"Another build or update is writing the corpus in {index_dir}.",
                hint="Wait for it to finish (the lock is released when it exits); a cron "
                "job can simply run again next time.",
            ) from error
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


@dataclass
class Expansion:
    """An expansion's settings, as given on the command line and remembered in the store."""

    relations: tuple[str, ...] = ()
    since: int | None = None
    max_expand: int | None = None

    def save(self, store: CorpusStore) -> None:
        store.set_meta("expand", ",".join(self.relations))
        store.set_meta("since", None if self.since is None else str(self.since))
        store.set_meta("max_expand", None if self.max_expand is None else str(self.max_expand))

    @classmethod
    def stored(cls, store: CorpusStore) -> Expansion:
        since, cap = store.get_meta("since"), store.get_meta("max_expand")
        return cls(
            relations=parse_expand(store.get_meta("expand") or ""),
            since=int(since) if since else None,
            max_expand=int(cap) if cap else None,
        )


@dataclass
class UpdateChanges:
    """What an update changed: new papers per relation, and the seed's references."""

    added: dict[str, list[str]] = field(default_factory=dict)
    references_resolved_before: int = 0
    references_resolved_after: int = 0

    @property
    def new_papers(self) -> int:
        return sum(len(pmids) for pmids in self.added.values())

    def as_dict(self) -> dict:
        return {
            "added": {relation: list(pmids) for relation, pmids in self.added.items()},
            "new_papers": self.new_papers,
            "references_resolved_before": self.references_resolved_before,
            "references_resolved_after": self.references_resolved_after,
        }


def check_expansion(
    *,
    sources: Sequence[Path] | None,
    doi: str | None,
    pmid: str | None,
    add: bool,
    expand: Sequence[str],
    since: int | None,
    max_expand: int | None,
    update: bool,
    index_dir: Path,
) -> None:
    """Refuse combinations of ``--expand``/``--since``/``--max-expand``/``--update`` that
    cannot mean anything, before anything is read or written."""
    if sources and (expand or update or since is not None or max_expand is not None):
        raise InputError(
            "--expand, --since, --max-expand and --update work on a PubMed seed review, "
            "not on --from files.",
            hint="Build from PubMed (--doi/--pmid or the default seed) to expand the corpus.",
        )
    if update and (doi or pmid or add):
        raise InputError(
            "--update refreshes the stored corpus around its own seed: it takes no --doi, "
            "--pmid or --add.",
            hint="Run `carqa build --update` alone (optionally with --expand/--since/"
            "--max-expand to change what it adds).",
        )
    if update and not (Path(index_dir).expanduser() / STORE_FILENAME).is_file():
        raise InputError(
            f"No corpus at {index_dir} to update.",
            hint="Build one first with `carqa build` (or pass the right --index-dir).",
        )
    if (since is not None or max_expand is not None) and not (expand or update):
        raise InputError(
            "--since and --max-expand limit what --expand adds; no --expand was given.",
            hint="Add --expand cited-by (and/or similar), e.g. --expand cited-by --since 2020.",
        )
    if max_expand is not None and max_expand < 0:
        raise InputError("--max-expand must be 0 or more.")


def missing_warnings(seed: SeedReport, expanded: ExpandReport | None) -> list[str]:
    """Warnings for the PMIDs PubMed listed but returned no record for."""
    warnings = []
    if seed.missing_records:
        warnings.append(
            f"PubMed returned no record for {len(seed.missing_records)} cited PMIDs: "
            + ", ".join(seed.missing_records)
        )
    if expanded is not None and expanded.missing_records:
        warnings.append(
            f"PubMed returned no record for {len(expanded.missing_records)} linked PMIDs: "
            + ", ".join(expanded.missing_records[:20])
            + (", ..." if len(expanded.missing_records) > 20 else "")
        )
    return warnings


def update_pubmed(
    store: CorpusStore,
    client: EntrezClient,
    *,
    relations: Sequence[str] | None = None,
    since: int | None = None,
    max_expand: int | None = None,
    on_progress: ProgressCallback,
) -> tuple[SeedReport, ExpandReport | None, UpdateChanges]:
    """Fetch what is new around the stored seed into ``store`` (module docstring)."""
    seed_pmid = store.seed_pmid()
    if seed_pmid is None or not store.source().startswith("pubmed:"):
        raise InputError(
            f"The corpus in {store.path.parent} was not built from a PubMed seed review: "
            "there is nothing to update from.",
            hint="--update refreshes a corpus built with `carqa build` (--doi/--pmid); "
            "for files, run `carqa build --from FILE --add` with the new files.",
        )
    remembered = Expansion.stored(store)
    expansion = Expansion(
        relations=tuple(relations) if relations is not None else remembered.relations,
        since=since if since is not None else remembered.since,
        max_expand=max_expand if max_expand is not None else remembered.max_expand,
    )
    stored = set(store.pmids())
    before = store.counts()["seed_references_resolved"]
    corpus = fetch_seed_corpus(
        client, pmid=seed_pmid, on_progress=on_progress, known=stored, fresh=True
    )
    changes = UpdateChanges(references_resolved_before=before)
    changes.added["cited"] = [paper.pmid for paper in corpus.cited]
    papers = [corpus.seed, *corpus.cited]
    report = None
    if expansion.relations:
        expanded, report = expand_corpus(
            client,
            seed_pmid,
            expansion.relations,
            known=stored | {paper.pmid for paper in corpus.cited},
            since=expansion.since,
            max_expand=expansion.max_expand,
            stored_counts=store.relation_counts(),
            fresh=True,
            on_progress=on_progress,
        )
        papers += expanded
        changes.added.update(report.added)
    on_progress("Writing the corpus store", 0, None)
    if changes.new_papers or _changed(store, corpus.seed):
        store.add_papers(papers, source=store.source())
    expansion.save(store)
    changes.references_resolved_after = store.counts()["seed_references_resolved"]
    return corpus.report, report, changes


def _changed(store: CorpusStore, seed: Paper) -> bool:
    """Whether the refreshed seed record differs from the stored one (a new reference list):
    writing an unchanged one would only touch the store's update time."""
    return store.paper(seed.pmid) != seed
