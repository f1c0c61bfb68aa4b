"""``carqa chat``: a conversation in the terminal, follow-ups read against what came before.

The chat service (:class:`carqa.qa.chat.ChatService`) does the answering and keeps the
sessions; this module is the terminal around it: the prompt, the slash commands, Ctrl-C that
stops an answer without leaving, and the notes that say what was searched and which papers a
detail came from.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import typer
from rich.markup import escape

from carqa.cli.answers import answering_settings, print_stream
from carqa.cli.common import INDEX_DIR_HELP, LLM_HELP, app, console, err_console, friendly_errors
from carqa.qa.blank import visible_text

# Printed through rich (console.print), which reads "[...]" as markup: so none is used.
CHAT_COMMANDS_HELP = (
    "/new starts a new conversation, /quit (or Ctrl-D) leaves, /help shows this. "
    "Ctrl-C stops an answer as it arrives."
)
_COMMAND = re.compile(r"/[A-Za-z]+")
"""What ``carqa chat`` reads as a command rather than a question: one slash word."""


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

    settings = answering_settings(index_dir, llm_provider, llm_model, llm_base_url)
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
                done = print_stream(events)
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
