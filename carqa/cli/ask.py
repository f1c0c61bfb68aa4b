"""``carqa ask``: one question, answered with cited sentences from the indexed abstracts.

Flags become :class:`carqa.settings.Settings` and :class:`carqa.qa.types.Filters` (checked
here as the API checks them: PMIDs that are PMIDs, a year range that can match); the answer
prints as text with numbered sources (:mod:`carqa.cli.answers`), streamed when an LLM writes
it, or as JSON.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer

from carqa.cli.answers import answering_settings, print_answer, print_stream
from carqa.cli.common import INDEX_DIR_HELP, LLM_HELP, app, friendly_errors
from carqa.errors import InputError
from carqa.index.corpus.sources import PMID


def _check_pmids(values: list[str] | None) -> list[str] | None:
    """--pmid / --exclude-pmid values must be PubMed ids, as the API requires: "abc" would
    otherwise filter out every paper and read as "no paper passes the filters"."""
    for value in values or []:
        if not PMID.fullmatch(value):
            raise typer.BadParameter(f"{value!r} is not a PMID (1 to 10 digits).")
    return values


def _filters(
    year_from: int | None,
    year_to: int | None,
    pmids: list[str] | None,
    exclude_pmids: list[str] | None,
    cited_only: bool,
    no_seed: bool,
    relations: list[str] | None = None,
    publication_types: list[str] | None = None,
) -> Any:
    from carqa.qa.types import Filters

    if year_from is not None and year_to is not None and year_from > year_to:
        raise InputError(
            f"--year-from {year_from} is after --year-to {year_to}: no paper could match.",
            hint="Swap them, or give only one.",
        )
    return Filters(
        year_from=year_from,
        year_to=year_to,
        pmids=list(pmids) if pmids else None,
        exclude_pmids=list(exclude_pmids) if exclude_pmids else None,
        cited_only=cited_only,
        include_seed=not no_seed,
        relations=list(relations) if relations else None,
        publication_types=list(publication_types) if publication_types else None,
    )


@app.command()
@friendly_errors
def ask(
    question: str = typer.Argument(..., help="The question, in quotes."),
    as_json: bool = typer.Option(False, "--json", help="Print the answer as JSON."),
    k: int = typer.Option(5, "--k", min=1, max=50, help="Papers to draw evidence from."),
    year_from: int | None = typer.Option(
        None, "--year-from", metavar="YEAR", help="Only papers from this year."
    ),
    year_to: int | None = typer.Option(
        None, "--year-to", metavar="YEAR", help="Only papers up to this year."
    ),
    pmids: list[str] = typer.Option(
        None,
        "--pmid",
        metavar="PMID",
        callback=_check_pmids,
        help="Only these papers (repeatable).",
    ),
    exclude_pmids: list[str] = typer.Option(
        None,
        "--exclude-pmid",
        metavar="PMID",
        callback=_check_pmids,
        help="Leave these papers out (repeatable).",
    ),
    cited_only: bool = typer.Option(
        False, "--cited-only", help="Only papers cited by the seed review."
    ),
    no_seed: bool = typer.Option(False, "--no-seed", help="Leave the seed review out."),
    relations: list[str] = typer.Option(
        None,
        "--relation",
        help="Only papers with this relation to the seed review: seed, cited, citing, "
        "similar or file (repeatable). --relation citing: what came after the review.",
    ),
    publication_types: list[str] = typer.Option(
        None,
        "--type",
        help='Only papers of this PubMed publication type, e.g. "Randomized Controlled Trial" '
        "or Review (repeatable; any of them).",
    ),
    index_dir: Path | None = typer.Option(None, "--index-dir", help=INDEX_DIR_HELP),
    llm_provider: str | None = typer.Option(None, "--llm-provider", help=LLM_HELP),
    llm_model: str | None = typer.Option(None, "--llm-model", help="LLM model name."),
    llm_base_url: str | None = typer.Option(None, "--llm-base-url", help="LLM server URL."),
) -> None:
    """Answer one question with cited sentences from the indexed abstracts."""
    from carqa.qa.engine import Engine

    filters = _filters(
        year_from,
        year_to,
        pmids,
        exclude_pmids,
        cited_only,
        no_seed,
        relations,
        publication_types,
    )
    engine = Engine.open(answering_settings(index_dir, llm_provider, llm_model, llm_base_url))
    if as_json:
        typer.echo(json.dumps(engine.ask(question, k=k, filters=filters).to_dict()))
        return
    if engine.llm is None:
        print_answer(engine.ask(question, k=k, filters=filters).to_dict())
        return
    print_stream(engine.ask_stream(question, k=k, filters=filters))
