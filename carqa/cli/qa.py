"""``carqa ask``, ``carqa chat`` and ``carqa eval``: answering from the command line.

Thin wrappers over :mod:`qa`: flags become :class:`carqa.settings.Settings` and
:class:`carqa.qa.types.Filters`; answers render with rich (numbered citations with PubMed links) or
as JSON. ``eval`` prints its JSON alone on stdout, its progress bar on stderr.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import typer
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from carqa.cli.common import app, console, err_console, friendly_errors
from carqa.errors import InputError
from carqa.index.corpus.sources import PMID
from carqa.qa.blank import visible_text
from carqa.settings import Settings

INDEX_DIR_HELP = "Index directory (default: CARQA_INDEX_DIR, else your user data folder)."
# Help texts are rich markup (typer's rich mode): "[...]" would vanish, so none is used.
CHAT_COMMANDS_HELP = (
    "/new starts a new conversation, /quit (or Ctrl-D) leaves, /help shows this. "
    "Ctrl-C stops an answer as it arrives."
)
_COMMAND = re.compile(r"/[A-Za-z]+")
"""What ``carqa chat`` reads as a command rather than a question: one slash word."""
LLM_HELP = "LLM provider: 'openai' (any OpenAI-compatible server) or 'ollama' (env: CARQA_LLM_*)."


def _settings(
    index_dir: Path | None,
    llm_provider: str | None = None,
    llm_model: str | None = None,
    llm_base_url: str | None = None,
) -> Settings:
    return Settings.load(
        index_dir=index_dir,
        llm_provider=llm_provider,
        llm_model=llm_model,
        llm_base_url=llm_base_url,
    )


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


def print_citations(citations: list[dict[str, Any]]) -> None:
    from carqa.qa.types import evidence_label

    for citation in citations:
        title = citation.get("title") or "(untitled)"
        year = f" ({citation['year']})" if citation.get("year") else ""
        section = f" · {citation['section']}" if citation.get("section") else ""
        kind = evidence_label(
            citation.get("publication_types") or [], citation.get("relation"), None
        )
        console.print(
            f"[bold cyan][{citation['n']}][/] {escape(title)}{year}{escape(section)}\n"
            f"    PMID {escape(citation['pmid'])} · "
            + (f"{escape(kind)} · " if kind else "")
            + f"[link={citation['url']}]{escape(citation['url'])}[/link]",
            highlight=False,
        )


def answer_markup(data: dict[str, Any]) -> str:
    """The answer as rich markup: its ``segments``' text escaped, their citations as styled
    markers (as in the sources list). A "[1]" inside a quoted sentence stays plain text."""
    segments = data.get("segments")
    if not segments:
        return escape(data.get("answer", ""))
    return "".join(
        escape(segment["text"])
        + "".join(f"[bold cyan]\\[{n}][/]" for n in segment.get("citations", []))
        for segment in segments
    )


def print_answer(data: dict[str, Any]) -> None:
    """An answer dict (``Answer.to_dict()``) for people: text, then numbered sources."""
    if data.get("abstained"):
        console.print(f"[yellow]{escape(data.get('message') or 'No answer.')}[/]")
        return
    console.print(answer_markup(data), highlight=False)
    if data.get("message"):
        console.print(f"[yellow]Note:[/] {escape(data['message'])}")
    console.print()
    print_citations(data.get("citations", []))


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
    engine = Engine.open(_settings(index_dir, llm_provider, llm_model, llm_base_url))
    if as_json:
        typer.echo(json.dumps(engine.ask(question, k=k, filters=filters).to_dict()))
        return
    if engine.llm is None:
        print_answer(engine.ask(question, k=k, filters=filters).to_dict())
        return
    _print_stream(engine.ask_stream(question, k=k, filters=filters))


def _print_stream(events: Any) -> dict[str, Any]:
    """Render streamed events: text as it arrives, then the sources. Returns the done data."""
    done: dict[str, Any] = {}
    streamed = False
    for event in events:
        if event.type == "delta":
            console.print(escape(event.data["text"]), end="", highlight=False, soft_wrap=True)
            streamed = True
        elif event.type == "done":
            done = event.data
    if streamed:
        console.print()
    if done.get("abstained"):
        console.print(f"[yellow]{escape(done.get('message') or 'No answer.')}[/]")
    else:
        if done.get("message"):
            console.print(f"[yellow]Note:[/] {escape(done['message'])}")
        console.print()
        print_citations(done.get("citations", []))
    return done


@app.command()
@friendly_errors
def chat(
    k: int = typer.Option(5, "--k", min=1, max=50, help="Papers to draw evidence from."),
    index_dir: Path | None = typer.Option(None, "--index-dir", help=INDEX_DIR_HELP),
    session: str | None = typer.Option(None, "--session", help="Continue this session id."),
    llm_provider: str | None = typer.Option(None, "--llm-provider", help=LLM_HELP),
    llm_model: str | None = typer.Option(None, "--llm-model", help="LLM model name."),
    llm_base_url: str | None = typer.Option(None, "--llm-base-url", help="LLM server URL."),
) -> None:
    """Chat in the terminal: follow-up questions ("and in adults?") use the conversation.

    Type /new for a fresh conversation, /quit (or Ctrl-D) to leave, /help for the commands.
    Ctrl-C stops an answer as it arrives; at the prompt it leaves. The session id is printed
    when a conversation starts; pass it to --session to continue that conversation later.
    """
    from carqa.errors import CarqaError
    from carqa.qa.chat import ChatService
    from carqa.qa.engine import Engine
    from carqa.qa.sessions import open_or_in_memory

    settings = _settings(index_dir, llm_provider, llm_model, llm_base_url)
    engine = Engine.open(settings)
    path = settings.sessions_file
    sessions, problem = open_or_in_memory(
        path, ttl_seconds=settings.session_ttl_seconds, max_sessions=settings.max_sessions
    )
    if problem is not None:
        err_console.print(
            f"[yellow]Note:[/] cannot write the chat sessions database {escape(str(path))} "
            f"({escape(str(problem))}): this conversation is kept in memory and cannot be "
            "resumed later. Set CARQA_SESSIONS_PATH to a file in a writable directory to keep it.",
            soft_wrap=True,
        )
    service = ChatService(engine, sessions)
    papers = len(engine.index.papers)
    console.print(
        f"[bold]carqa chat[/] over {papers} papers. Ask about CAR T cells; "
        "/new starts over, /quit or Ctrl-D leaves."
    )
    session_id = _resumable(sessions, session)
    try:
        while True:
            try:
                # As it reads: a pasted "\u200b/quit" is the command, not a question.
                message = visible_text(console.input("[bold green]you>[/] "))
            except EOFError:
                console.print()
                break
            if not message:  # nothing typed, or nothing visible: prompt again
                continue
            if _COMMAND.fullmatch(message):
                command = message.lower()
                if command in {"/quit", "/exit", "/q"}:
                    break
                if command == "/new":
                    session_id = None
                    console.print("[dim]New conversation.[/]")
                elif command == "/help":
                    console.print(CHAT_COMMANDS_HELP)
                else:
                    # Not asked: "/clear" searched would abstain, and the user would go on
                    # believing the conversation had been cleared.
                    console.print(
                        f"[yellow]Unknown command {escape(message)}:[/] {CHAT_COMMANDS_HELP}"
                    )
                continue
            events = None
            answering = False
            try:
                events = service.reply_stream(message, session_id, k=k)
                console.print("[bold cyan]carqa>[/] ", end="")
                answering = True
                done = _print_stream(events)
            except CarqaError as error:
                if answering:  # end the partial answer's line (an LLM failing mid-answer)
                    console.print()
                err_console.print(f"[bold red]Error:[/] {escape(error.message)}")
                continue
            except KeyboardInterrupt:
                # Ctrl-C while an answer arrives (a slow LLM) stops that answer, not the chat;
                # at the prompt it still leaves. Closing the stream ends the LLM request, and
                # the stopped turn is not stored, so follow-ups build on the last whole one.
                if events is not None:
                    events.close()
                console.print("\n[yellow]Answer stopped.[/] [dim](Ctrl-C at the prompt leaves.)[/]")
                continue
            query = done.get("query")
            if query and query != " ".join(message.split()):
                console.print(f"[dim](searched: {escape(query)})[/]")
            if done.get("focus_pmids"):  # a detail asked of the papers just discussed
                papers = ", ".join(f"PMID {pmid}" for pmid in done["focus_pmids"])
                console.print(f"[dim](from the papers discussed: {escape(papers)})[/]")
            if done.get("session_id") and done["session_id"] != session_id:
                session_id = done["session_id"]
                shown = escape(session_id)
                console.print(
                    f"[dim]session {shown} (resume with --session {shown})[/]", soft_wrap=True
                )
    except KeyboardInterrupt:
        console.print()
    finally:
        sessions.close()
    console.print("Bye.")


def _resumable(sessions: Any, session_id: str | None) -> str | None:
    """``session_id`` if it names a live session; otherwise None, after saying so (a new
    conversation starts rather than the chat failing, but the user must know)."""
    if session_id is None:
        return None
    if sessions.exists(session_id):
        console.print(f"[dim]Continuing session {escape(session_id)}.[/]")
        return session_id
    console.print(
        f"[yellow]Session {escape(session_id)} was not found or has expired; "
        "starting a new conversation.[/]",
        soft_wrap=True,
    )
    return None


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
    with Progress(
        TextColumn("Evaluating"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err_console,
        transient=False,
    ) as progress:
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
        with Progress(
            TextColumn("Evaluating"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=err_console,
        ) as progress:
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
