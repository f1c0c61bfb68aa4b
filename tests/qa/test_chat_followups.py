"""The written conversations over PubMedQA and BioASQ (``tests/qa/data/chat_conversations.jsonl``)
and their scorer (``bench/chat.py``).

The set is frozen: its questions were written by reading the abstracts, before the chat rules
they measure were written, and are not reworded to suit the rules.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from bench.chat import CONVERSATIONS, KINDS, TurnResult, load_conversations, score


def test_the_set_is_large_and_mixed() -> None:
    conversations = load_conversations()
    kinds = Counter(turn.kind for c in conversations for turn in c.turns)
    assert len(conversations) >= 30
    assert kinds["detail"] >= 40
    assert set(kinds) == set(KINDS)
    assert {c.corpus for c in conversations} == {"pubmedqa", "bioasq"}
    assert len({c.name for c in conversations}) == len(conversations)


def test_every_expected_paper_is_in_its_corpus(shared_data: Path) -> None:
    pmids = {
        corpus: {
            json.loads(line)["pmid"]
            for line in (shared_data / corpus / "corpus.jsonl").read_text().splitlines()
        }
        for corpus in ("pubmedqa", "bioasq")
    }
    for conversation in load_conversations():
        for turn in conversation.turns:
            missing = set(turn.pmids) - pmids[conversation.corpus]
            assert not missing, (conversation.name, turn.message, missing)


def test_a_bad_turn_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "c.jsonl"
    line = {"name": "x", "corpus": "pubmedqa", "turns": [{"message": "q", "kind": "other"}]}
    line["turns"][0]["pmids"] = ["1"]
    path.write_text(json.dumps(line) + "\n")
    with pytest.raises(ValueError, match="bad turn"):
        load_conversations(path)
    assert CONVERSATIONS.is_file()


def test_score_counts_turns_per_kind() -> None:
    results = [
        TurnResult("a", "q", "first", True, "1", "q", 1.0),
        TurnResult("a", "how many?", "detail", False, "2", "q: how many?", 1.0),
        TurnResult("a", "where?", "detail", True, "1", "q: where?", 1.0),
    ]
    table = score(results)
    assert table["first"] == {"turns": 1, "right": 1, "rate": 1.0}
    assert table["detail"] == {"turns": 2, "right": 1, "rate": 0.5}
    assert table["all"]["right"] == 2
    assert list(table) == ["first", "detail", "all"]


GOALS = {"first": 1.0, "detail": 0.9, "refinement": 0.75, "topic-switch": 1.0}
"""What the chat must score per turn kind on the PubMedQA conversations."""


@pytest.mark.slow
def test_the_written_conversations_are_answered_from_the_right_papers(shared_data: Path) -> None:
    """The PubMedQA conversations, over an index of the PubMedQA corpus (built once into the
    benchmarks' cache, or ``CARQA_CHAT_BENCH_INDEX``); BioASQ's corpus takes too long to build
    here: ``bench/chat.py --corpus bioasq`` measures it."""
    import os

    from bench._common import default_index_dir, ensure_index
    from bench.chat import parse_args, run

    index_dir = os.environ.get("CARQA_CHAT_BENCH_INDEX")
    if not index_dir:
        index_dir = str(default_index_dir())
        ensure_index(shared_data / "pubmedqa" / "corpus.jsonl", Path(index_dir), progress=False)
    result = run(parse_args(["--index-dir", index_dir, "--corpus", "pubmedqa", "--rounds", "1"]))
    rates = {kind: row["rate"] for kind, row in result["scores"].items()}
    for kind, goal in GOALS.items():
        assert rates[kind] >= goal, (kind, result["scores"])
