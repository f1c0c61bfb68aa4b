"""Getting a corpus into the store: from files, from PubMed around a seed, or an update.

Each ``ingest_*`` function writes the store in one transaction and returns the
:class:`PipelineReport` that :func:`carqa.index.corpus.pipeline.build` completes with the index
build. The checks that must pass before anything is written (files that hold papers, a seed
not withdrawn) are here too, as :func:`read_sources` and :func:`check_seed_not_deleted`, so
the pipeline can run them before it opens the store. :func:`entrez_client` makes the real
PubMed client from the settings (tests replace it with one over a fake transport).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from carqa.index.corpus.entrez import EntrezClient
from carqa.index.corpus.expand import ExpandReport, expand_corpus
from carqa.index.corpus.seed import SeedReport, fetch_seed_corpus
from carqa.index.corpus.sources import LoadedCorpus, load_sources
from carqa.index.corpus.store import STORE_FILENAME, CorpusStore
from carqa.index.corpus.update import Expansion, UpdateChanges, missing_warnings, update_pubmed

from carqa.errors import InputError
from carqa.progress import ProgressCallback
from carqa.settings import Settings

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


def ingest_files(
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


def ingest_pubmed(
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


def ingest_update(
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
