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
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from carqa.index.corpus.entrez import EntrezClient
from carqa.index.corpus.expand import ExpandReport, expand_corpus
from carqa.index.corpus.seed import SeedReport, fetch_seed_corpus
from carqa.index.corpus.sources import LoadedCorpus, load_sources
from carqa.index.corpus.store import STORE_FILENAME, CorpusStore, check_index_dir, make_index_dir
from carqa.index.corpus.update import (
    Expansion,
    UpdateChanges,
    check_expansion,
    corpus_lock,
    missing_warnings,
    update_pubmed,
)

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
    relations: dict[str, int] = field(default_factory=dict)  # papers per relation to the seed
    expansion: ExpandReport | None = None  # --expand (or --update repeating it)
    changes: UpdateChanges | None = None  # --update: what is new

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
            "relations": dict(self.relations),
            "expansion": self.expansion.as_dict() if self.expansion else None,
            "changes": self.changes.as_dict() if self.changes else None,
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
            report = _ingest_files(store, loaded, add=add, on_progress=progress)
        elif update:
            report = _update(
                store,
                settings,
                client=client,
                relations=tuple(expand) or None,
                since=since,
                max_expand=max_expand,
                on_progress=progress,
            )
        else:
            report = _ingest_pubmed(
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


def read_sources(
    paths: list[Path], *, on_progress: ProgressCallback, add: bool = False, runner: str = ""
) -> LoadedCorpus:
    """The papers in ``paths``; an :class:`InputError` when they hold none (unless ``add``
    and they delete some: a MEDLINE update file may only withdraw citations).

    Zero papers is refused rather than noted: replacing a corpus with nothing (an empty or
    truncated export, a wrong --from) would publish an empty index that answers nothing.
    """
    on_progress("Reading source files", 0, None)

    def on_file(done: int, total: int) -> None:
        on_progress("Reading source files", done, total)

    if runner == "ray":
        from carqa.index.search.ray_build import read_files

        corpus = read_files(paths, on_file=on_file)
    else:
        corpus = load_sources(paths, on_file=on_file)
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
    # Papers the files do not place relative to a seed are "file"; the citation graph still
    # makes a seed's cited papers "cited" (CorpusStore.relations).
    corpus.papers = [
        paper if paper.relation else replace(paper, relation="file") for paper in corpus.papers
    ]
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
    expansion: Expansion,
) -> PipelineReport:
    if not pmid and not doi:
        pmid, doi = settings.seed_pmid, settings.seed_doi
    client = client or entrez_client(settings, store.path.parent)
    warnings = _email_warning(client)
    corpus = fetch_seed_corpus(client, doi=doi, pmid=pmid, on_progress=on_progress)
    papers = corpus.papers
    expanded = None
    if expansion.relations:
        more, expanded = expand_corpus(
            client,
            corpus.seed.pmid,
            expansion.relations,
            known={paper.pmid for paper in papers},
            since=expansion.since,
            max_expand=expansion.max_expand,
            on_progress=on_progress,
        )
        papers = papers + more
    on_progress("Writing the corpus store", 0, None)
    source = f"pubmed:pmid:{corpus.seed.pmid}" + (f" (doi {doi})" if doi and not pmid else "")
    if add:
        store.add_papers(papers, source=source)
        store.set_seed_pmid(corpus.seed.pmid)
    else:
        store.replace_corpus(papers, seed_pmid=corpus.seed.pmid, source=source)
    expansion.save(store)
    warnings += missing_warnings(corpus.report, expanded)
    return PipelineReport(
        index_dir=store.path.parent,
        source="pubmed",
        added=add,
        ingested=len(papers),
        counts=store.counts(),
        seed_pmid=store.seed_pmid(),
        seed=corpus.report,
        requests=client.stats.as_dict(),
        warnings=warnings + corpus.report.notes,
        expansion=expanded,
    )


def _update(
    store: CorpusStore,
    settings: Settings,
    *,
    client: EntrezClient | None,
    relations: tuple[str, ...] | None,
    since: int | None,
    max_expand: int | None,
    on_progress: ProgressCallback,
) -> PipelineReport:
    client = client or entrez_client(settings, store.path.parent)
    warnings = _email_warning(client)
    seed, expanded, changes = update_pubmed(
        store,
        client,
        relations=relations,
        since=since,
        max_expand=max_expand,
        on_progress=on_progress,
    )
    warnings += missing_warnings(seed, expanded)
    return PipelineReport(
        index_dir=store.path.parent,
        source="pubmed",
        added=True,
        ingested=changes.new_papers,
        counts=store.counts(),
        seed_pmid=store.seed_pmid(),
        seed=seed,
        requests=client.stats.as_dict(),
        warnings=warnings + seed.notes,
        expansion=expanded,
        changes=changes,
    )


def _email_warning(client: EntrezClient) -> list[str]:
    if client.email:
        return []
    return [
        "No contact email was sent to NCBI, which asks for one: pass --email or set NCBI_EMAIL."
    ]


def entrez_client(settings: Settings, index_dir: Path) -> EntrezClient:
    """The real client: credentials from settings (flags / ``CARQA_NCBI_*``), falling back to
    NCBI's own ``NCBI_EMAIL`` / ``NCBI_API_KEY`` variables; responses cached in the index dir."""
    return EntrezClient(
        email=settings.ncbi_email or os.environ.get("NCBI_EMAIL") or None,
        api_key=settings.ncbi_api_key or os.environ.get("NCBI_API_KEY") or None,
        tool=settings.ncbi_tool,
        cache_dir=Path(index_dir) / ENTREZ_CACHE,
    )
