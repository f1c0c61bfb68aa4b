"""``carqa eval``: measure retrieval and answers on a question file.

Two kinds of file: PubMedQA-style (one source pmid a question, or none when unanswerable:
recall@k, MRR, conclusion@k, abstention) and BioASQ-format topical questions (several gold
papers, snippets, exact and ideal answers: measures per question type). The measuring is in
:mod:`carqa.qa.eval` and :mod:`carqa.qa.eval_topical`; here are the flags, the progress bar on
stderr and the table (or JSON alone) on stdout.
"""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from carqa.cli.common import INDEX_DIR_HELP, app, console, err_console, friendly_errors
from carqa.settings import Settings


def _eval_progress() -> Progress:
    """The "Evaluating" bar, on stderr so that ``--json`` output stays alone on stdout."""
    return Progress(
        TextColumn("Evaluating"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err_console,
    )


@app.command(name="eval")
@friendly_errors
def evaluate(
    questions: Path = typer.Option(
        ...,
        "--questions",
        metavar="FILE",
        help='JSONL: {"question", "pmid" (null if unanswerable), optional "conclusion"} a line.',
    ),
    index_dir: Path | None = typer.Option(None, "--index-dir", help=INDEX_DIR_HELP),
    as_json: bool = typer.Option(False, "--json", help="Print the measures as one JSON object."),
    k: int = typer.Option(5, "--k", min=1, max=50, help="Papers to draw evidence from."),
    limit: int | None = typer.Option(None, "--limit", min=1, help="Only the first N questions."),
    leave_source_out: bool = typer.Option(
        True,
        "--leave-source-out/--no-leave-source-out",
        help="Also ask each answerable question with its source paper left out "
        "(abstain_rate_source_left_out: how often carqa then says it cannot answer).",
    ),
    answers_out: Path | None = typer.Option(
        None,
        "--answers-out",
        help="Topical (BioASQ-format) files: also write every answer as JSONL here.",
    ),
    score_answers: Path | None = typer.Option(
        None,
        "--score-answers",
        help="Topical files: score these answers (JSONL as --answers-out writes, e.g. from "
        "another system) instead of asking carqa.",
    ),
) -> None:
    """Measure retrieval and answer quality on a question file (recall@k, MRR, conclusion@k,
    abstention rates, latency). A BioASQ-format file (several gold pmids, snippets, exact and
    ideal answers, a type) gets MAP@10, success@1, snippet@3, exact, rouge2, cite precision
    and abstain rate, overall and per question type."""
    from carqa.qa.eval_topical import is_topical_file

    if is_topical_file(questions):
        _evaluate_topical(questions, index_dir, as_json, k, limit, answers_out, score_answers)
        return
    from carqa.qa.engine import Engine
    from carqa.qa.eval import evaluate as run_eval
    from carqa.qa.eval import left_out_questions, load_questions, unindexed_sources, warm_up

    settings = Settings.load(index_dir=index_dir)
    items = load_questions(questions, max_chars=settings.max_question_chars)[:limit]
    engine = Engine.open(settings)
    missing = unindexed_sources(items, engine.index.papers)
    if missing:
        err_console.print(
            f"[yellow]Warning:[/] {missing} of {len(items)} questions name a pmid that is not "
            "in the index; they count as misses.",
            highlight=False,
        )
    warm_up(engine)
    with _eval_progress() as progress:
        repeats = len(left_out_questions(items, engine.index.papers)) if leave_source_out else 0
        task = progress.add_task("eval", total=len(items) + repeats)
        report = run_eval(
            engine,
            items,
            k=k,
            leave_source_out=leave_source_out,
            on_progress=lambda n: progress.advance(task, n),
        )
    if as_json:
        typer.echo(json.dumps(report))
        return
    table = Table(title=f"carqa eval: {escape(questions.name)}", show_header=True)
    table.add_column("measure")
    table.add_column("value", justify="right")
    for key, value in report.items():
        table.add_row(key, "–" if value is None else str(value))
    console.print(table)


def _evaluate_topical(
    questions: Path,
    index_dir: Path | None,
    as_json: bool,
    k: int,
    limit: int | None,
    answers_out: Path | None,
    score_answers: Path | None,
) -> None:
    """``carqa eval`` on a topical (BioASQ-format) question file."""
    from carqa.qa import eval_topical as topical

    settings = Settings.load(index_dir=index_dir)
    items = topical.load_topical(questions, max_chars=settings.max_question_chars)[:limit]
    if score_answers is not None:
        answers = topical.load_answers(score_answers)[: len(items)]
        report = topical.score(items, answers)
    else:
        from carqa.qa.engine import Engine
        from carqa.qa.eval import warm_up

        engine = Engine.open(settings)
        warm_up(engine)
        answers = []
        with _eval_progress() as progress:
            task = progress.add_task("eval", total=len(items))
            report = topical.evaluate_topical(
                engine,
                items,
                k=k,
                on_progress=lambda n: progress.advance(task, n),
                answers_out=answers,
            )
        if answers_out is not None:
            topical.write_answers(answers_out, answers)
    if as_json:
        typer.echo(json.dumps(report))
        return
    table = Table(title=f"carqa eval: {escape(questions.name)}", show_header=True)
    table.add_column("measure")
    for kind in ("all", *report["by_type"]):
        table.add_column(kind, justify="right")
    for key, value in report.items():
        if key in ("format", "by_type"):
            continue
        row = [report["by_type"][kind].get(key) for kind in report["by_type"]]
        table.add_row(key, *("–" if v is None else str(v) for v in (value, *row)))
    console.print(table)
