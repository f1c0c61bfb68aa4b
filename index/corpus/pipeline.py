"""``build``: get a corpus (PubMed or files) into the store, then build its search index.

The one entry point behind ``carqa build`` and ``carqa serve --build-if-missing`` (and, with
:func:`index_stored`, ``carqa build --index-only``). It only orchestrates:
:mod:`carqa.index.corpus.seed` (PubMed seed flow), :mod:`carqa.index.corpus.sources`
(``--from`` files), :class:`carqa.index.corpus.store.CorpusStore` (one transaction per ingest)
and ``carqa.index.search.build.build_index``.
The returned :class:`PipelineReport` holds every number the CLI summary shows.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from carqa.index.corpus.entrez import EntrezClient
from carqa.index.corpus.seed import SeedReport, fetch_seed_corpus
from carqa.index.corpus.sources import LoadedCorpus, load_sources
from carqa.index.corpus.store import STORE_FILENAME, CorpusStore, check_index_dir, make_index_dir

from carqa.errors import InputError
from carqa.progress import ProgressCallback, no_progress
from carqa.settings import Settings

if TYPE_CHECKING:
    from carqa.index.search.chunking import ChunkSettings

ENTREZ_CACHE = Path("cache") / "entrez"


@dataclass
class PipelineReport:
    """What one ``build`` did. ``counts`` are the store's after ingest (see
    :meth:`CorpusStore.counts`); ``requests`` the Entrez cached/fetched/retries counts."""

    index_dir: Path
    source: str  # "pubmed", "files", or "store" (index_stored: the corpus already stored)
    added: bool  # --add (upsert) rather than replace
    ingested: int  # papers written this run
    counts: dict[str, int]
    seed_pmid: str | None
    files: list[str] = field(default_factory=list)
    duplicates: int = 0
    # MEDLINE <DeleteCitation>: PMIDs the files withdraw, and how many of those were not
    # in the corpus (replace: not read before the deletion; --add: not stored either).
    deletions: int = 0
    deletions_absent: int = 0
    seed: SeedReport | None = None
    requests: dict[str, int] | None = None
    index: dict[str, Any] | None = None
    warnings: list[str] = field(default_factory=list)

    @property
    def unresolved_references(self) -> list[str]:
        if self.seed is None:
            return []
        return [r.citation or r.doi or "(no citation text)" for r in self.seed.unresolved]

    def as_dict(self) -> dict[str, Any]:
        return {
            "index_dir": str(self.index_dir),
            "source": self.source,
            "added": self.added,
            "ingested": self.ingested,
            "counts": dict(self.counts),
            "seed_pmid": self.seed_pmid,
            "files": list(self.files),
            "duplicates": self.duplicates,
            "deletions": self.deletions,
            "deletions_absent": self.deletions_absent,
            "seed": self.seed.as_dict() if self.seed else None,
            "requests": dict(self.requests) if self.requests else None,
            "index": self.index,
            "warnings": list(self.warnings),
        }


def build(
    settings: Settings,
    *,
    sources: Sequence[Path] | None = None,
    doi: str | None = None,
    pmid: str | None = None,
    add: bool = False,
    build_index: bool = True,
    on_progress: ProgressCallback | None = None,
    client: EntrezClient | None = None,
) -> PipelineReport:
    """Ingest into ``<settings.index_dir>/corpus.sqlite``, then build the index.

    With ``sources`` the corpus comes from those files (XML/JSONL/snapshot, or directories);
    otherwise from PubMed: ``pmid``, else ``doi``, else ``settings.seed_pmid``, else
    ``settings.seed_doi``. The corpus is replaced unless ``add`` (then papers are upserted).
    ``client`` overrides the Entrez client (tests pass one with a fake transport);
    ``on_progress`` is told how each step advances (``carqa build`` draws it).
    """
    if sources and (doi or pmid):
        raise InputError(
            "--from cannot be combined with --doi/--pmid.",
            hint="Use --from for files, or --doi/--pmid to fetch from PubMed.",
        )
    if doi and pmid:
        # Either one names the seed; taking one silently could build around the wrong review.
        raise InputError(
            "--doi and --pmid both name the seed review; give one of them.",
            hint="--pmid is used as is; --doi is looked up in PubMed first.",
        )
    progress = on_progress or no_progress
    chunk_settings = check_index_settings(settings) if build_index else None
    index_dir = check_index_dir(settings.index_dir)
    # Files are read (and refused: unreadable, or holding no papers) before the store is
    # even opened, so a bad --from leaves the existing corpus and index exactly as they were.
    loaded = None
    if sources:
        loaded = read_sources(list(sources), on_progress=progress, add=add)
        check_seed_not_deleted(loaded, index_dir, add=add)
    make_index_dir(index_dir)
    with CorpusStore.open(index_dir) as store:
        if loaded is not None:
            report = _ingest_files(store, loaded, add=add, on_progress=progress)
        else:
            report = _ingest_pubmed(
                store,
                settings,
                doi=doi,
                pmid=pmid,
                add=add,
                client=client,
                on_progress=progress,
            )
        if chunk_settings is not None:
            report.index = _build_search_index(store, settings, chunk_settings, progress)
    return report


def check_index_settings(settings: Settings) -> ChunkSettings:
    """The chunk settings, after checking what the index build will need: the chunk settings
    and the embedding model. An :class:`InputError` (or ``ModelError``) otherwise.

    Called before the corpus store is written: a bad ``CARQA_CHUNK_SIZE`` or ``--model`` found
    only by the index build would leave the corpus replaced and no index built for it.
    """
    from carqa.index.search.chunking import (
        ChunkSettings,  # langchain: imported only when an index is built
    )
    from carqa.index.search.embedding import resolve_model

    chunk_settings = ChunkSettings.from_env()
    resolve_model(settings.model)
    return chunk_settings


def index_stored(
    settings: Settings, *, on_progress: ProgressCallback | None = None
) -> PipelineReport:
    """Build the index from the corpus already in the store, fetching and reading nothing.

    The second half of ``carqa build --no-index``: without it a corpus stored on its own could
    only be indexed by fetching or reading it all again. A missing or empty store is an
    :class:`InputError` (an empty index would answer nothing).
    """
    chunk_settings = check_index_settings(settings)
    index_dir = check_index_dir(settings.index_dir)
    if not (index_dir / STORE_FILENAME).is_file():
        raise InputError(
            f"No corpus at {index_dir}: nothing to index.",
            hint="Build one first with `carqa build` or `carqa build --from FILE` "
            "(or pass the right --index-dir).",
        )
    with CorpusStore.open(index_dir) as store:
        counts = store.counts()
        if not counts["papers"]:
            raise InputError(
                f"The corpus in {index_dir} holds no papers: nothing to index.",
                hint="Build it with `carqa build` or `carqa build --from FILE`.",
            )
        return PipelineReport(
            index_dir=index_dir,
            source="store",
            added=False,
            ingested=0,
            counts=counts,
            seed_pmid=store.seed_pmid(),
            index=_build_search_index(store, settings, chunk_settings, on_progress),
        )


def _build_search_index(
    store: CorpusStore,
    settings: Settings,
    chunk_settings: ChunkSettings,
    on_progress: ProgressCallback | None,
) -> dict[str, Any]:
    """``carqa.index.search.build.build_index`` of the store's corpus (its report as a dict)."""
    from carqa.index.search.build import build_index  # heavy: lazy

    index_dir = Path(settings.index_dir).expanduser()
    built = build_index(
        store,
        index_dir,
        model=settings.model,
        on_progress=on_progress,
        chunk_settings=chunk_settings,
    )
    return built.as_dict()


def read_sources(
    paths: list[Path], *, on_progress: ProgressCallback, add: bool = False
) -> LoadedCorpus:
    """The papers in ``paths``; an :class:`InputError` when they hold none (unless ``add``
    and they delete some: a MEDLINE update file may only withdraw citations).

    Zero papers is refused rather than noted: replacing a corpus with nothing (an empty or
    truncated export, a wrong --from) would publish an empty index that answers nothing.
    """
    on_progress("Reading source files", 0, None)
    corpus = load_sources(
        paths, on_file=lambda done, total: on_progress("Reading source files", done, total)
    )
    if not corpus.papers and not (add and corpus.deleted):
        raise InputError(
            f"The --from sources hold no papers ({', '.join(str(p) for p in corpus.files)}): "
            "nothing was built or replaced.",
            hint="Check the --from files: JSONL needs one paper a line, XML PubmedArticle "
            "or MedlineCitation records.",
        )
    return corpus


def check_seed_not_deleted(corpus: LoadedCorpus, index_dir: Path, *, add: bool) -> None:
    """Refuse (before anything is written) a build whose ``<DeleteCitation>`` withdraws the
    seed review: the seed after this run is the files' (``is_seed``) or, with ``add``, the
    stored one. Deleting it would leave a corpus built around a paper it no longer holds,
    with no cited papers; keeping it would ignore NLM's deletion. The user decides."""
    if not corpus.deleted:
        return
    seed = corpus.seed_pmid
    if seed is None and add and (index_dir / STORE_FILENAME).is_file():
        with CorpusStore.open(index_dir) as store:
            seed = store.seed_pmid()
    if seed is None or seed not in corpus.deleted:
        return
    raise InputError(
        f"PMID {seed} is the seed review, and {corpus.deleted[seed]} deletes it "
        "(<DeleteCitation>): NLM has withdrawn that record. Nothing was changed.",
        hint="Rebuild around another seed (carqa build --pmid/--doi, or a JSONL line with "
        '"is_seed": true), or, to keep this one, take its PMID out of that DeleteCitation.',
    )


def _ingest_files(
    store: CorpusStore, corpus: LoadedCorpus, *, add: bool, on_progress: ProgressCallback
) -> PipelineReport:
    on_progress("Writing the corpus store", 0, None)
    removed = set(corpus.deleted_here)
    if add:
        removed.update(store.add_papers(corpus.papers, source=corpus.source, delete=corpus.deleted))
        if corpus.seed_pmid:
            store.set_seed_pmid(corpus.seed_pmid)
    else:
        store.replace_corpus(corpus.papers, seed_pmid=corpus.seed_pmid, source=corpus.source)
    warnings = [
        f"{path} has {len(pmids)} duplicate PMID line(s) (the later line won): "
        + ", ".join(list(dict.fromkeys(pmids))[:5])
        + (", ..." if len(set(pmids)) > 5 else "")
        for path, pmids in corpus.duplicates_within.items()
    ]
    if corpus.duplicates_across_files:
        warnings.append(
            f"{corpus.duplicates_across_files} PMIDs appear in more than one source file "
            "(the later file won)."
        )
    return PipelineReport(
        index_dir=store.path.parent,
        source="files",
        added=add,
        ingested=len(corpus.papers),
        counts=store.counts(),
        seed_pmid=store.seed_pmid(),
        files=[str(path) for path in corpus.files],
        duplicates=corpus.duplicates,
        deletions=len(corpus.deleted),
        deletions_absent=len(corpus.deleted.keys() - removed),
        warnings=warnings,
    )


def _ingest_pubmed(
    store: CorpusStore,
    settings: Settings,
    *,
    doi: str | None,
    pmid: str | None,
    add: bool,
    client: EntrezClient | None,
    on_progress: ProgressCallback,
) -> PipelineReport:
    if not pmid and not doi:
        pmid, doi = settings.seed_pmid, settings.seed_doi
    client = client or entrez_client(settings, store.path.parent)
    warnings = []
    if not client.email:
        warnings.append(
            "No contact email was sent to NCBI, which asks for one: pass --email or set NCBI_EMAIL."
        )
    corpus = fetch_seed_corpus(client, doi=doi, pmid=pmid, on_progress=on_progress)
    on_progress("Writing the corpus store", 0, None)
    source = f"pubmed:pmid:{corpus.seed.pmid}" + (f" (doi {doi})" if doi and not pmid else "")
    if add:
        store.add_papers(corpus.papers, source=source)
        store.set_seed_pmid(corpus.seed.pmid)
    else:
        store.replace_corpus(corpus.papers, seed_pmid=corpus.seed.pmid, source=source)
    if corpus.report.missing_records:
        warnings.append(
            f"PubMed returned no record for {len(corpus.report.missing_records)} cited PMIDs: "
            + ", ".join(corpus.report.missing_records)
        )
    return PipelineReport(
        index_dir=store.path.parent,
        source="pubmed",
        added=add,
        ingested=len(corpus.papers),
        counts=store.counts(),
        seed_pmid=store.seed_pmid(),
        seed=corpus.report,
        requests=client.stats.as_dict(),
        warnings=warnings + corpus.report.notes,
    )


def entrez_client(settings: Settings, index_dir: Path) -> EntrezClient:
    """The real client: credentials from settings (flags / ``CARQA_NCBI_*``), falling back to
    NCBI's own ``NCBI_EMAIL`` / ``NCBI_API_KEY`` variables; responses cached in the index dir."""
    return EntrezClient(
        email=settings.ncbi_email or os.environ.get("NCBI_EMAIL") or None,
        api_key=settings.ncbi_api_key or os.environ.get("NCBI_API_KEY") or None,
        tool=settings.ncbi_tool,
        cache_dir=Path(index_dir) / ENTREZ_CACHE,
    )
