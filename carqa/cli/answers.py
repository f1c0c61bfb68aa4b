"""Answers for people in the terminal: the text with its citation markers, then the sources.

``carqa ask`` and ``carqa chat`` print answers the same way, whole (:func:`print_answer`) or as
they arrive from an LLM (:func:`print_stream`): numbered citations styled as in the sources
list, each source with its PMID, kind of evidence and PubMed link. Everything quoted from a
paper or a question is escaped, so a "[1]" or "[red]" in the text stays text.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.markup import escape

from carqa.cli.common import console
from carqa.settings import Settings


def answering_settings(
    index_dir: Path | None,
    llm_provider: str | None = None,
    llm_model: str | None = None,
    llm_base_url: str | None = None,
) -> Settings:
    """The settings of a command that answers: the index and the LLM flags given."""
    return Settings.load(
        index_dir=index_dir,
        llm_provider=llm_provider,
        llm_model=llm_model,
        llm_base_url=llm_base_url,
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


def print_stream(events: Any) -> dict[str, Any]:
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
