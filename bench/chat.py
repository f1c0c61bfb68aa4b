"""Chat over real papers: is each turn answered from the right paper, and how fast?

Usage (from the repository root, with an index of the corpus the conversations are about)::

    .venv/bin/python bench/chat.py --index-dir IDX --corpus pubmedqa --json
    .venv/bin/python bench/chat.py --index-dir IDX --corpus bioasq

The conversations (``tests/qa/data/chat_conversations.jsonl``) were written by reading the
abstracts of PubMedQA's and BioASQ's corpora: each turn has its message, its kind and the
papers an answer to it should cite first. Kinds:

- ``first``: the conversation's opening question;
- ``detail``: a follow-up asking for a detail of the paper just discussed ("how many patients
  were included?", "where was the study done?", "which dose?"); its papers are those holding
  the detail;
- ``refinement``: the same subject with one part changed or added ("and in cervical cancer?",
  "in northern Israel?");
- ``topic-switch``: a new question on another subject.

A turn scores when the reply's first citation is one of its papers (an abstention does not).
Every conversation runs in its own chat session, without an LLM, as ``/api/chat`` does.

Latency, in the same run: each turn's chat reply, and ``Engine.ask`` on the same message (what
``/api/query`` does with it), interleaved conversation by conversation, each call with the
query-vector cache emptied first so neither is timed on the other's cached vectors; the whole
set ``--rounds`` times (other processes on the machine load both alike).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # for bench._common

from bench._common import REPO_ROOT, machine_info, percentile, print_result, run_script

CONVERSATIONS = REPO_ROOT / "tests" / "qa" / "data" / "chat_conversations.jsonl"
KINDS = ("first", "detail", "refinement", "topic-switch")
CORPORA = ("pubmedqa", "bioasq")


@dataclass(frozen=True)
class ScriptedTurn:
    """A message of a written conversation, its kind, and the papers its reply should cite
    first."""

    message: str
    kind: str
    pmids: tuple[str, ...]


@dataclass(frozen=True)
class Conversation:
    name: str
    corpus: str
    turns: tuple[ScriptedTurn, ...]


@dataclass
class TurnResult:
    """What one turn of a replayed conversation got."""

    conversation: str
    message: str
    kind: str
    right: bool
    cited: str | None
    query: str
    took_ms: float
    extra: dict[str, Any] = field(default_factory=dict)


def load_conversations(path: Path = CONVERSATIONS, corpus: str | None = None) -> list[Conversation]:
    """The conversations in ``path`` (JSON lines), those over ``corpus`` when given. A line
    with an unknown kind or corpus, or a turn without papers, is a ValueError."""
    conversations = []
    for number, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        record = json.loads(line)
        turns = tuple(
            ScriptedTurn(t["message"], t["kind"], tuple(t["pmids"])) for t in record["turns"]
        )
        if record["corpus"] not in CORPORA:
            raise ValueError(f"{path}:{number}: unknown corpus {record['corpus']!r}")
        for turn in turns:
            if turn.kind not in KINDS or not turn.pmids:
                raise ValueError(f"{path}:{number}: bad turn {turn}")
        if turns[0].kind != "first":
            raise ValueError(f"{path}:{number}: a conversation opens with a 'first' turn")
        if corpus is None or record["corpus"] == corpus:
            conversations.append(Conversation(record["name"], record["corpus"], turns))
    return conversations


def _clear_query_cache(engine: Any) -> None:
    cache = getattr(getattr(engine, "retriever", None), "_cache", None)
    if cache is not None:
        cache.clear()


def replay(
    chat: Any, conversation: Conversation, *, k: int = 5, cold: bool = False
) -> list[TurnResult]:
    """Each turn of ``conversation`` sent to ``chat`` (a ``ChatService``) in one new session.
    ``cold`` empties the query-vector cache before each turn (for timing)."""
    session = None
    results = []
    for turn in conversation.turns:
        if cold:
            _clear_query_cache(chat.engine)
        started = time.perf_counter()
        session, answer = chat.reply(turn.message, session, k=k)
        took = (time.perf_counter() - started) * 1000
        cited = answer.citations[0].pmid if answer.citations and not answer.abstained else None
        extra = {"focus_pmids": list(getattr(answer, "focus_pmids", None) or [])}
        results.append(
            TurnResult(
                conversation.name,
                turn.message,
                turn.kind,
                cited in turn.pmids,
                cited,
                answer.query,
                took,
                extra,
            )
        )
    return results


def score(results: Iterable[TurnResult]) -> dict[str, dict[str, Any]]:
    """Per turn kind (and ``all``): turns, right, rate."""
    table: dict[str, dict[str, Any]] = {}
    for result in results:
        for kind in (result.kind, "all"):
            row = table.setdefault(kind, {"turns": 0, "right": 0})
            row["turns"] += 1
            row["right"] += int(result.right)
    for row in table.values():
        row["rate"] = round(row["right"] / row["turns"], 3) if row["turns"] else None
    order = [*KINDS, "all"]
    return {kind: table[kind] for kind in order if kind in table}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--index-dir", type=Path, required=True, help="a built carqa index")
    parser.add_argument("--corpus", choices=CORPORA, required=True, help="the index's corpus")
    parser.add_argument("--conversations", type=Path, default=CONVERSATIONS)
    parser.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    parser.add_argument("--misses", action="store_true", help="list the turns that missed")
    parser.add_argument(
        "--rounds",
        type=int,
        default=3,
        help="timing rounds over the whole set (scores come from the first; default 3)",
    )
    return parser.parse_args(argv)


def _open(index_dir: Path) -> tuple[Any, Any]:
    """(engine, chat service) over ``index_dir``, sessions in memory, no LLM."""
    from carqa.qa.chat import ChatService
    from carqa.qa.engine import Engine
    from carqa.qa.sessions import SessionStore

    from carqa.settings import Settings

    settings = Settings.load(index_dir=index_dir)
    engine = Engine.open(settings)
    engine.llm = None
    return engine, ChatService(engine, SessionStore(None))


def run(args: argparse.Namespace) -> dict[str, Any]:
    conversations = load_conversations(args.conversations, args.corpus)
    engine, chat = _open(args.index_dir)
    for conversation in conversations[:2]:  # warm-up (lazy loads), not measured
        replay(chat, conversation)
    results: list[TurnResult] = []
    chat_ms: list[float] = []
    query_ms: list[float] = []
    for round_ in range(max(1, args.rounds)):
        for conversation in conversations:
            replayed = replay(chat, conversation, cold=True)
            chat_ms.extend(result.took_ms for result in replayed)
            if round_ == 0:
                results.extend(replayed)
            for turn in conversation.turns:
                _clear_query_cache(engine)
                started = time.perf_counter()
                engine.ask(turn.message, k=5)
                query_ms.append((time.perf_counter() - started) * 1000)
    chat_p50, query_p50 = percentile(chat_ms, 50), percentile(query_ms, 50)
    output: dict[str, Any] = {
        "corpus": args.corpus,
        "index_dir": str(args.index_dir),
        "conversations": len(conversations),
        "scores": score(results),
        "latency_ms": {
            "chat_p50": chat_p50,
            "chat_p90": percentile(chat_ms, 90),
            "query_p50": query_p50,
            "query_p90": percentile(query_ms, 90),
            "chat_over_query_p50": round(chat_p50 / query_p50, 3) if query_p50 else None,
        },
        "machine": machine_info(),
    }
    if args.misses:
        output["misses"] = [
            {
                "conversation": r.conversation,
                "kind": r.kind,
                "message": r.message,
                "query": r.query,
                "cited": r.cited,
                **r.extra,
            }
            for r in results
            if not r.right
        ]
    return output


def summary(result: dict[str, Any]) -> str:
    scores = ", ".join(
        f"{kind} {row['right']}/{row['turns']}" for kind, row in result["scores"].items()
    )
    latency = result["latency_ms"]
    return (
        f"{result['corpus']}: {scores}; chat p50 {latency['chat_p50']} ms vs query p50 "
        f"{latency['query_p50']} ms ({latency['chat_over_query_p50']}x)"
    )


def main() -> None:
    args = parse_args()
    result = run(args)
    print_result(result, summary(result), as_json=args.json)


if __name__ == "__main__":
    run_script(main)
