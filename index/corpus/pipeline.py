"""``build``: get a corpus (PubMed or files) into the store, then build its search index.

The one entry point behind ``carqa build`` and ``carqa serve --build-if-missing`` (and, with
:func:`index_stored`, ``carqa build --index-only``). It only orchestrates:
checks the request, runs one ingest (:mod:`carqa.index.corpus.ingest`: files, the PubMed seed
flow, or an update; one store transaction each) under the corpus lock, then
``carqa.index.search.build.build_index``, in process or on Ray.
The returned :class:`~carqa.index.corpus.ingest.PipelineReport` holds every number the CLI
summary shows.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from carqa.index.corpus.entrez import EntrezClient
from carqa.index.corpus.ingest import (
    PipelineReport,
    check_seed_not_deleted,
    ingest_files,
    ingest_pubmed,
    ingest_update,
    read_sources,
)
from carqa.index.corpus.store import STORE_FILENAME, CorpusStore, check_index_dir, make_index_dir
from carqa.index.corpus.update import Expansion, check_expansion, corpus_lock

from carqa.errors import InputError
from carqa.progress import ProgressCallback, no_progress
from carqa.settings import Settings

if TYPE_CHECKING:
    from carqa.index.search.chunking import ChunkSettings


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
    expand: Sequence[str] = (),
    since: int | None = None,
    max_expand: int | None = None,
    update: bool = False,
    runner: str = "in-process",
    ray_address: str | None = None,
) -> PipelineReport:
    """Ingest into ``<settings.index_dir>/corpus.sqlite``, then build the index.

    With ``sources`` the corpus comes from those files (XML/JSONL/snapshot, or directories);
    otherwise from PubMed: ``pmid``, else ``doi``, else ``settings.seed_pmid``, else
    ``settings.seed_doi``. The corpus is replaced unless ``add`` (then papers are upserted).
    ``expand`` (relations ``citing``, ``similar``) adds the papers citing the seed and its
    similar articles (:mod:`carqa.index.corpus.expand`); ``update`` fetches only what is new
    around the stored seed (:mod:`carqa.index.corpus.update`).
    ``client`` overrides the Entrez client (tests pass one with a fake transport);
    ``on_progress`` is told how each step advances (``carqa build`` draws it).
    ``runner="ray"`` reads the files, chunks and embeds with Ray Data (a local Ray, or the
    cluster at ``ray_address`` / ``RAY_ADDRESS``): :mod:`carqa.index.search.ray_build`.
    """
    check_expansion(
        sources=sources,
        doi=doi,
        pmid=pmid,
        add=add,
        expand=expand,
        since=since,
        max_expand=max_expand,
        update=update,
        index_dir=settings.index_dir,
    )
    _check_runner(runner)
    request = _Request(
        sources, doi, pmid, add, build_index, client, tuple(expand), since, max_expand, update
    )
    if runner == "ray":
        from carqa.index.search.ray_build import ray_session

        with ray_session(ray_address, progress=on_progress is not None):
            return _build(settings, request, on_progress, runner)
    return _build(settings, request, on_progress, runner)


def _check_runner(runner: str) -> None:
    if runner not in ("in-process", "ray"):
        raise InputError(f"Unknown runner {runner!r}.", hint="Use --runner in-process or ray.")


@dataclass(frozen=True)
class _Request:
    """What :func:`build` was asked for, as one value for the runner-specific call."""

    sources: Sequence[Path] | None
    doi: str | None
    pmid: str | None
    add: bool
    build_index: bool
    client: EntrezClient | None
    expand: tuple[str, ...]
    since: int | None
    max_expand: int | None
    update: bool


def _build(
    settings: Settings,
    request: _Request,
    on_progress: ProgressCallback | None,
    runner: str,
) -> PipelineReport:
    sources, doi, pmid, add = request.sources, request.doi, request.pmid, request.add
    build_index, client, expand = request.build_index, request.client, request.expand
    since, max_expand, update = request.since, request.max_expand, request.update
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
        loaded = read_sources(list(sources), on_progress=progress, add=add, runner=runner)
        check_seed_not_deleted(loaded, index_dir, add=add)
    make_index_dir(index_dir)
    with corpus_lock(index_dir), CorpusStore.open(index_dir) as store:
        if loaded is not None:
            report = ingest_files(store, loaded, add=add, on_progress=progress)
        elif update:
            report = ingest_update(
                store,
                settings,
                client=client,
                relations=tuple(expand) or None,
                since=since,
                max_expand=max_expand,
                on_progress=progress,
            )
        else:
            report = ingest_pubmed(
                store,
                settings,
                doi=doi,
                pmid=pmid,
                add=add,
                client=client,
                on_progress=progress,
                expansion=Expansion(tuple(expand), since, max_expand),
            )
        report.relations = store.relation_counts()
        if chunk_settings is not None:
            report.index = _build_search_index(
                store, settings, chunk_settings, progress, runner=runner
            )
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
    settings: Settings,
    *,
    on_progress: ProgressCallback | None = None,
    runner: str = "in-process",
    ray_address: str | None = None,
) -> PipelineReport:
    """Build the index from the corpus already in the store, fetching and reading nothing.

    The second half of ``carqa build --no-index``: without it a corpus stored on its own could
    only be indexed by fetching or reading it all again. A missing or empty store is an
    :class:`InputError` (an empty index would answer nothing). ``runner``: as :func:`build`.
    """
    _check_runner(runner)
    if runner == "ray":
        from carqa.index.search.ray_build import ray_session

        with ray_session(ray_address, progress=on_progress is not None):
            return _index_stored(settings, on_progress, "ray")
    return _index_stored(settings, on_progress, runner)


def _index_stored(
    settings: Settings, on_progress: ProgressCallback | None, runner: str
) -> PipelineReport:
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
            index=_build_search_index(store, settings, chunk_settings, on_progress, runner=runner),
        )


def _build_search_index(
    store: CorpusStore,
    settings: Settings,
    chunk_settings: ChunkSettings,
    on_progress: ProgressCallback | None,
    *,
    runner: str = "in-process",
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
        **({"runner": runner} if runner != "in-process" else {}),
    )
    return built.as_dict()
