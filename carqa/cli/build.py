"""``carqa build`` and ``carqa snapshot``: get the corpus and build its index.

Thin wrappers: flags become :class:`carqa.settings.Settings`, the work happens in
:func:`carqa.index.corpus.pipeline.build` and :mod:`carqa.index.corpus.snapshot`, and the
result is rendered as a rich summary table on stdout (progress bars go to stderr).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import typer
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from carqa.cli.common import (
    INDEX_DIR_HELP,
    app,
    console,
    err_console,
    friendly_errors,
    snapshot_app,
)
from carqa.cli.progress import progress_bars
from carqa.settings import Settings


@app.command()
@friendly_errors
def build(
    sources: list[Path] = typer.Option(
        None,
        "--from",
        metavar="PATH",
        help="Build offline from files: PubMed/MEDLINE XML (.xml, .xml.gz), JSONL (.jsonl, "
        ".jsonl.gz), a snapshot, or a directory of them. Repeatable.",
    ),
    doi: str | None = typer.Option(
        None, "--doi", metavar="DOI", help="DOI of the seed review (PubMed)."
    ),
    pmid: str | None = typer.Option(
        None, "--pmid", metavar="PMID", help="PMID of the seed review (PubMed)."
    ),
    email: str | None = typer.Option(
        None,
        "--email",
        metavar="ADDRESS",
        help="Contact email sent to NCBI (or NCBI_EMAIL / CARQA_NCBI_EMAIL).",
    ),
    api_key: str | None = typer.Option(
        None,
        "--api-key",
        metavar="KEY",
        help="NCBI API key: 10 requests/s instead of 3 (or NCBI_API_KEY / CARQA_NCBI_API_KEY).",
    ),
    index_dir: Path | None = typer.Option(None, "--index-dir", help=INDEX_DIR_HELP),
    model: str | None = typer.Option(
        None, "--model", metavar="NAME", help="Embedding model for the index."
    ),
    add: bool = typer.Option(
        False, "--add", help="Add/update papers in the existing corpus instead of replacing it."
    ),
    no_index: bool = typer.Option(False, "--no-index", help="Only build the corpus store."),
    index_only: bool = typer.Option(
        False,
        "--index-only",
        help="Only build the index, from the corpus already in the store (e.g. after "
        "--no-index): nothing is fetched or read.",
    ),
    expand: str | None = typer.Option(
        None,
        "--expand",
        help="Also add the papers that cite the seed review (cited-by) and/or its similar "
        "articles (similar), as PubMed lists them: --expand cited-by,similar.",
    ),
    max_expand: int | None = typer.Option(
        None,
        "--max-expand",
        min=0,
        help="At most N papers per --expand list (similar articles: best PubMed score first).",
    ),
    since: int | None = typer.Option(
        None,
        "--since",
        min=1800,
        max=2200,
        help="Only add --expand papers published in YEAR or later.",
    ),
    update: bool = typer.Option(
        False,
        "--update",
        help="Fetch what is new since the last build (new citing papers, newly resolved "
        "references), embed only the new texts and report what changed. Safe from cron.",
    ),
    runner: str = typer.Option(
        "in-process",
        "--runner",
        help="in-process, or ray: read, chunk and embed with Ray Data (pip install "
        '"carqa[scale]"; docs/scale.md).',
    ),
    ray_address: str | None = typer.Option(
        None, "--ray-address", help="Ray cluster to run on (or RAY_ADDRESS); default: local."
    ),
    backend: str | None = typer.Option(
        None,
        "--backend",
        help="embedded, or milvus: also write the build to Milvus (or CARQA_BACKEND; "
        "CARQA_MILVUS_URI, default <index-dir>/milvus.db; docs/scale.md).",
    ),
) -> None:
    """Build the corpus (PubMed or --from files) and its search index.

    Without --from, fetches the seed review (default: Majzner & Mackall, Nat Med 2019) and
    every paper it cites from PubMed. Re-runs reuse cached PubMed responses.
    """
    from carqa.errors import InputError
    from carqa.index.corpus.expand import parse_expand
    from carqa.index.corpus.pipeline import build as run_build
    from carqa.index.corpus.pipeline import index_stored

    settings = Settings.load(
        index_dir=index_dir, model=model, ncbi_email=email, ncbi_api_key=api_key, backend=backend
    )
    from carqa.index.search.backends import check_backend

    check_backend(settings)  # a missing Milvus client is said before the build, not after
    if index_only:
        if sources or doi or pmid or add or no_index or update or expand:
            raise InputError(
                "--index-only cannot be combined with --from, --doi, --pmid, --add, --no-index, "
                "--expand or --update.",
                hint="--index-only indexes the stored corpus as it is.",
            )
        with progress_bars() as on_progress:
            stored = index_stored(
                settings, on_progress=on_progress, runner=runner, ray_address=ray_address
            )
        print_build_summary(stored)
        _write_backend(settings)
        return
    with progress_bars() as on_progress:
        report = run_build(
            settings,
            sources=sources or None,
            doi=doi,
            pmid=pmid,
            add=add,
            build_index=not no_index,
            on_progress=on_progress,
            expand=parse_expand(expand),
            since=since,
            max_expand=max_expand,
            update=update,
            runner=runner,
            ray_address=ray_address,
        )
    print_build_summary(report)
    if not no_index:
        _write_backend(settings)


def _write_backend(settings: Settings) -> None:
    """With a search backend other than the embedded one, write the new build into it now,
    so the first question served does not (the sentence stage reads the embedded index)."""
    if settings.backend == "embedded":
        return
    from carqa.index.search.backends import open_backend
    from carqa.index.search.reader import Index
    from carqa.qa.engine import Engine

    index = Index.open(settings.index_dir)
    with progress_bars() as on_progress:
        served = open_backend(settings, index.manifest, settings.index_dir, on_progress=on_progress)
        Engine(index, backend=served)
    where = f"{getattr(served, 'uri', '')}, collection {getattr(served, 'collection', '')}"
    console.print(f"Search backend: {settings.backend} ({where})", highlight=False, markup=False)


@snapshot_app.command("export")
@friendly_errors
def snapshot_export(
    file: str = typer.Argument(..., help="Snapshot file to write (e.g. corpus.carqa.jsonl.gz)."),
    index_dir: Path | None = typer.Option(None, "--index-dir", help=INDEX_DIR_HELP),
) -> None:
    """Write the built corpus to a portable snapshot file (versioned gzipped JSONL)."""
    from carqa.errors import InputError
    from carqa.index.corpus.snapshot import DEFAULT_NAME, export_snapshot
    from carqa.index.corpus.store import STORE_FILENAME, CorpusStore

    # Taken as text: a Path forgets a trailing "/", and "out/" (a folder the user meant to
    # exist) became a file named "out".
    if file.endswith(("/", os.sep)) and not Path(file).expanduser().is_dir():
        raise InputError(
            f"{file} names a folder (it ends with {file[-1]!r}), and there is none.",
            hint=f"Give the snapshot's file name, e.g. {Path(file) / DEFAULT_NAME}, "
            "in a folder that exists.",
        )
    settings = Settings.load(index_dir=index_dir)
    _require_store(settings.index_dir / STORE_FILENAME)
    with CorpusStore.open(settings.index_dir) as store:
        info = export_snapshot(store, Path(file))
    console.print(
        f"Wrote {info.papers} papers (seed {info.seed_pmid or 'none'}) to {info.path}\n"
        f"content hash {info.content_hash}",
        highlight=False,
        markup=False,  # the path is the user's and may contain "[...]"
    )


@snapshot_app.command("import")
@friendly_errors
def snapshot_import(
    file: Path = typer.Argument(..., help="Snapshot file written by `carqa snapshot export`."),
    index_dir: Path | None = typer.Option(None, "--index-dir", help=INDEX_DIR_HELP),
    model: str | None = typer.Option(None, "--model", help="Embedding model for the index."),
    no_index: bool = typer.Option(False, "--no-index", help="Only load the corpus store."),
) -> None:
    """Load a corpus snapshot into the store (replacing the corpus), then build the index."""
    from carqa.index.corpus.pipeline import check_index_settings
    from carqa.index.corpus.snapshot import import_snapshot, read_importable
    from carqa.index.corpus.store import CorpusStore, check_index_dir, make_index_dir

    settings = Settings.load(index_dir=index_dir, model=model)
    # Checked before the import replaces the corpus, as `carqa build` does.
    chunk_settings = None if no_index else check_index_settings(settings)
    check_index_dir(settings.index_dir)
    # Read and checked before the store is opened: a refused file creates no empty store.
    loaded = read_importable(file)
    make_index_dir(settings.index_dir)
    with CorpusStore.open(settings.index_dir) as store:
        info = import_snapshot(store, file, loaded=loaded)
        counts = store.counts()
        index_summary = None
        if not no_index:
            from carqa.index.search.build import build_index

            with progress_bars() as on_progress:
                index_summary = build_index(
                    store,
                    settings.index_dir,
                    model=settings.model,
                    on_progress=on_progress,
                    chunk_settings=chunk_settings,
                ).as_dict()
    table = _table("Snapshot imported")
    _row(table, "Snapshot", str(info.path))
    _row(table, "Created", info.created or "?")
    _row(table, "Seed PMID", info.seed_pmid or "none")
    _add_count_rows(table, counts)
    _row(table, "Index directory", str(settings.index_dir))
    if index_summary is not None:
        _add_index_rows(table, index_summary)
    else:
        _row(table, "Index", "not built (--no-index)")
    console.print(table)


def _require_store(path: Path) -> None:
    from carqa.errors import InputError
    from carqa.index.corpus.store import check_index_dir

    check_index_dir(path.parent)
    if not path.is_file():
        raise InputError(
            f"No corpus at {path.parent}.",
            hint="Build one with `carqa build` (or pass --index-dir).",
        )


# -- rendering -------------------------------------------------------------------------------


def _row(table: Table, what: str, value: str) -> None:
    # Text, not markup: titles and citations may contain "[...]".
    table.add_row(what, Text(value))


def _table(title: str) -> Table:
    table = Table(title=title, show_header=False, title_justify="left")
    table.add_column("what", style="bold")
    table.add_column("value", overflow="fold")
    return table


def _add_count_rows(table: Table, counts: dict[str, int]) -> None:
    _row(table, "Papers", str(counts["papers"]))
    _row(table, "  with abstracts", str(counts["with_abstract"]))
    _row(table, "  title-only", str(counts["title_only"]))


def _add_index_rows(table: Table, summary: dict[str, Any]) -> None:
    """Index build rows from ``BuildReport.as_dict()``: a compact line per topic when the
    usual keys are there, else every scalar value."""
    keys = {"build_id", "papers", "chunks", "sentences", "texts_embedded", "texts_cached"}
    if keys <= summary.keys():
        state = "up to date" if summary.get("up_to_date") else "built"
        _row(table, "Index", f"{state}: build {summary['build_id']}")
        _row(
            table,
            "  contents",
            f"{summary['papers']} papers, {summary['chunks']} chunks, "
            f"{summary['sentences']} sentences",
        )
        seconds = summary.get("seconds")
        took = f" in {seconds:.1f} s" if isinstance(seconds, int | float) else ""
        _row(
            table,
            "  embedding",
            f"{summary['texts_embedded']} texts embedded, {summary['texts_cached']} from cache"
            f" ({summary.get('model', '?')}, {summary.get('embed_backend', '?')}){took}",
        )
        encoder = summary.get("query_encoder")
        if encoder:
            precision = summary.get("query_precision")
            _row(
                table, "  query encoder", f"{encoder} {precision}" if encoder == "onnx" else encoder
            )
        return
    for key, value in summary.items():
        if isinstance(value, dict | list):
            continue
        _row(table, f"Index: {key.replace('_', ' ')}", str(value))


def _add_relation_rows(table: Table, report: Any) -> None:
    """Papers per relation to the seed, and what --expand found per list."""
    relations = getattr(report, "relations", None) or {}
    if relations and set(relations) != {"file"}:
        _row(table, "Papers by relation", ", ".join(f"{n} {r}" for r, n in relations.items()))
    expansion = getattr(report, "expansion", None)
    if expansion is None:
        return
    limits = [f"since {expansion.since}"] if expansion.since else []
    limits += [f"at most {expansion.max_expand} each"] if expansion.max_expand is not None else []
    for relation in expansion.relations:
        what = "Citing papers" if relation == "citing" else "Similar articles"
        too_old = expansion.too_old.get(relation, 0)
        _row(
            table,
            what,
            f"{len(expansion.added.get(relation, []))} added ({expansion.linked.get(relation, 0)}"
            f" listed by PubMed, {expansion.already_stored.get(relation, 0)} already in the corpus"
            + (f", {too_old} older than --since" if too_old else "")
            + ")"
            + (f"; {', '.join(limits)}" if limits else ""),
        )


def _add_change_rows(table: Table, changes: Any) -> None:
    """What an --update changed."""
    added = {relation: pmids for relation, pmids in changes.added.items() if pmids}
    _row(
        table,
        "New papers",
        f"{changes.new_papers}"
        + (": " + ", ".join(f"{len(p)} {r}" for r, p in added.items()) if added else ""),
    )
    before, after = changes.references_resolved_before, changes.references_resolved_after
    if after != before:
        _row(table, "References resolved", f"{before} → {after}")


def print_build_summary(report: Any) -> None:
    """The `carqa build` summary for a `carqa.index.corpus.ingest.PipelineReport` (also used by
    serve)."""
    table = _table("carqa build")
    if report.source == "pubmed" and report.seed is not None:
        seed = report.seed
        _row(table, "Source", f"PubMed, seed PMID {seed.seed_pmid}")
        if seed.seed_title:
            _row(table, "Seed", seed.seed_title)
    elif report.source == "store":
        _row(table, "Source", "the stored corpus (--index-only)")
        _row(table, "Seed PMID", report.seed_pmid or "none")
    else:
        _row(table, "Source", "\n".join(report.files) or "files")
        _row(table, "Seed PMID", report.seed_pmid or "none")
    changes = getattr(report, "changes", None)
    if report.source == "store":
        _row(table, "Mode", "index only: corpus unchanged")
    elif changes is not None:
        _row(table, "Mode", "update: only what is new")
        _add_change_rows(table, changes)
    else:
        _row(table, "Mode", "add (upsert)" if report.added else "replace")
        _row(table, "Papers written", str(report.ingested))
        if report.deletions:
            absent = report.deletions_absent
            _row(
                table,
                "Papers deleted",
                f"{report.deletions - absent} (DeleteCitation lists {report.deletions} PMIDs; "
                f"{absent} not in the corpus)",
            )
    _add_count_rows(table, report.counts)
    if report.seed is not None:
        seed = report.seed
        if seed.references_listed:
            share = f"{seed.share_resolved:.0%}" if seed.share_resolved is not None else "-"
            _row(
                table,
                "References resolved",
                f"{seed.resolved}/{seed.references_listed} ({share}): "
                f"{seed.from_reference_list} from the reference list, {seed.from_doi} by DOI, "
                f"{seed.from_ecitmatch} by ECitMatch",
            )
        else:
            _row(table, "References resolved", "no reference list in the seed's record")
        _row(table, "References unresolved", str(len(seed.unresolved)))
        _row(
            table,
            "Cited PMIDs (incl. elink-only)",
            f"{seed.cited_pmids} ({seed.from_elink_only} elink-only)",
        )
        _row(table, "Cited papers fetched", str(seed.fetched))
    elif report.counts.get("seed_references"):
        _row(
            table,
            "Seed references resolved",
            f"{report.counts['seed_references_resolved']}/{report.counts['seed_references']}",
        )
    _add_relation_rows(table, report)
    if report.requests is not None:
        requests = report.requests
        _row(
            table,
            "PubMed requests",
            f"{requests['fetched']} fetched, {requests['cached']} from cache, "
            f"{requests['retries']} retries",
        )
    _row(table, "Index directory", str(report.index_dir))
    if report.index is not None:
        _add_index_rows(table, report.index)
    else:
        _row(table, "Index", "not built (--no-index)")
    console.print(table)

    if report.unresolved_references:
        console.print(f"[bold]Unresolved references ({len(report.unresolved_references)}):[/]")
        for citation in report.unresolved_references:
            console.print(f"  - {citation}", highlight=False, markup=False)
    for warning in report.warnings:
        err_console.print(f"[yellow]Note:[/] {escape(warning)}", highlight=False)


_print_build_summary = print_build_summary  # the name carqa.cli.serve imports
