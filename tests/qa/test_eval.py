"""``carqa.qa.eval.evaluate`` against a stand-in engine: what each measure counts."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from carqa.qa.eval import EvalQuestion, evaluate, load_questions, unindexed_sources, without_paper
from carqa.qa.types import Filters

from carqa.errors import InputError


@dataclass
class _Answer:
    abstained: bool
    citations: list[Any] = field(default_factory=list)


@dataclass
class _Retrieval:
    pmids: list[str]
    timings: dict[str, float] = field(default_factory=lambda: {"encode": 0.1, "rank": 0.1})


@dataclass
class _Result:
    answer: _Answer
    retrieval: _Retrieval


class StandInEngine:
    """Knows papers "1" and "2"; paper "1" answers questions mentioning "one". It abstains when
    no paper it knows answers (as the real engine does below its confidence threshold)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Filters | None]] = []
        self.index = SimpleNamespace(papers={"1": object(), "2": object()})

    def ask_detailed(
        self, question: str, *, k: int, filters: Filters | None, ranked: int
    ) -> _Result:
        self.calls.append((question, filters))
        excluded = set(filters.exclude_pmids or []) if filters else set()
        papers = [p for p in ("1", "2") if p not in excluded]
        answers = "one" in question and "1" in papers
        return _Result(_Answer(abstained=not answers), _Retrieval(pmids=papers))


QUESTIONS = [
    EvalQuestion("question one", "1"),
    EvalQuestion("question one again", "1"),
    EvalQuestion("something else", None),
]


def test_leave_source_out_asks_again_without_the_source() -> None:
    engine = StandInEngine()
    report = evaluate(engine, QUESTIONS, leave_source_out=True)  # type: ignore[arg-type]
    assert report["abstain_rate_answerable"] == 0.0
    assert report["abstain_rate_unanswerable"] == 1.0
    assert report["abstain_rate_source_left_out"] == 1.0
    # The repeats come after every timed question (answerable ones only) and are not
    # questions of their own.
    assert [(q, f.exclude_pmids if f else None) for q, f in engine.calls] == [
        ("question one", None),
        ("question one again", None),
        ("something else", None),
        ("question one", ["1"]),
        ("question one again", ["1"]),
    ]
    assert report["n"] == 3


def test_leave_source_out_skips_sources_the_index_does_not_hold() -> None:
    """Leaving out an unindexed paper changes nothing: re-asking such a question counted an
    ordinary answer as "source left out" (and the CLI already warns that it is a miss)."""
    engine = StandInEngine()
    questions = [EvalQuestion("question one", "1"), EvalQuestion("question one", "7")]
    progress: list[int] = []
    report = evaluate(
        engine,  # type: ignore[arg-type]
        questions,
        leave_source_out=True,
        on_progress=progress.append,
    )
    assert [f.exclude_pmids if f else None for _, f in engine.calls] == [None, None, ["1"]]
    assert report["abstain_rate_source_left_out"] == 1.0  # one repeat, not two
    assert progress == [1, 1, 1]


def test_leave_source_out_is_off_by_default() -> None:
    engine = StandInEngine()
    report = evaluate(engine, QUESTIONS)  # type: ignore[arg-type]
    assert report["abstain_rate_source_left_out"] is None
    assert len(engine.calls) == 3


def test_leave_source_out_keeps_the_caller_filters() -> None:
    engine = StandInEngine()
    filters = Filters(year_from=2010, exclude_pmids=["9"])
    progress: list[int] = []
    evaluate(
        engine,  # type: ignore[arg-type]
        QUESTIONS[:1],
        filters=filters,
        leave_source_out=True,
        on_progress=progress.append,
    )
    assert progress == [1, 1]  # the question, then its repeat
    assert engine.calls[0][1] is filters
    again = engine.calls[1][1]
    assert again is not None and again.year_from == 2010 and again.exclude_pmids == ["9", "1"]
    assert filters.exclude_pmids == ["9"]  # not mutated
    assert without_paper(None, "5") == Filters(exclude_pmids=["5"])


def _question_file(path: Path, questions: list[str]) -> Path:
    path.write_text("".join(json.dumps({"question": q, "pmid": "1"}) + "\n" for q in questions))
    return path


def test_an_over_long_question_is_refused_with_its_line(tmp_path: Path) -> None:
    path = _question_file(tmp_path / "q.jsonl", ["short one", "short two", "x" * 1001, "ok"])
    with pytest.raises(
        InputError,
        match=r"q\.jsonl:3: the question is 1001 characters long; "
        r"the limit is 1000",
    ):
        load_questions(path, max_chars=1000)
    assert len(load_questions(path)) == 4  # no limit given: not checked here


def test_the_limit_counts_collapsed_whitespace_like_the_engine(tmp_path: Path) -> None:
    path = _question_file(tmp_path / "q.jsonl", ["a" * 5 + " " * 50 + "b" * 4])
    assert load_questions(path, max_chars=10)[0].question.startswith("aaaaa")


def test_a_blank_question_is_refused_with_its_line(tmp_path: Path) -> None:
    path = _question_file(tmp_path / "q.jsonl", ["fine", "   "])
    with pytest.raises(InputError, match=r"q\.jsonl:2: needs a non-empty"):
        load_questions(path, max_chars=1000)


@pytest.mark.parametrize("invisible", ["\u200b", "\u2060\u00ad", "\u200e\u200f", "\x00 \x1b"])
def test_an_invisible_question_is_refused_with_its_line_like_a_blank_one(
    tmp_path: Path, invisible: str
) -> None:
    """The engine refuses it as empty, so the run would stop there, halfway through."""
    path = _question_file(tmp_path / "q.jsonl", ["fine", "   "])
    with pytest.raises(InputError) as blank:
        load_questions(path)
    _question_file(path, ["fine", invisible])
    with pytest.raises(InputError) as refused:
        load_questions(path)
    assert (refused.value.message, refused.value.hint) == (blank.value.message, blank.value.hint)


def test_a_question_with_invisible_characters_in_it_is_read(tmp_path: Path) -> None:
    question = "Why do patients\u200b relapse after CD19\u00ad CAR T?"
    path = _question_file(tmp_path / "q.jsonl", [question])
    assert load_questions(path, max_chars=1000) == [EvalQuestion(question, "1")]


def test_unindexed_sources_counts_answerable_questions_only() -> None:
    questions = [*QUESTIONS, EvalQuestion("elsewhere", "7"), EvalQuestion("again", "8")]
    assert unindexed_sources(questions, {"1", "2"}) == 2
    assert unindexed_sources(QUESTIONS, {"1"}) == 0


def test_a_byte_order_mark_is_read_and_other_encodings_are_refused_with_their_line(
    tmp_path: Path,
) -> None:
    bom = tmp_path / "bom.jsonl"
    bom.write_bytes(b'\xef\xbb\xbf{"question": "with a BOM", "pmid": "1"}\n')
    assert load_questions(bom) == [EvalQuestion("with a BOM", "1")]
    latin1 = tmp_path / "latin1.jsonl"
    latin1.write_bytes(b'{"question": "fine", "pmid": null}\n{"question": "caf\xe9?"}\n')
    with pytest.raises(InputError, match=r"latin1\.jsonl:2: not UTF-8"):
        load_questions(latin1)


def test_lines_end_at_newlines_only(tmp_path: Path) -> None:
    # json.dumps(..., ensure_ascii=False) leaves U+2028/U+2029/U+0085 unescaped in strings.
    question = "Why\u2028do patients\u2029relapse\x85after CAR T?"
    path = tmp_path / "q.jsonl"
    lines = [json.dumps({"question": question, "pmid": "1"}, ensure_ascii=False), ""]
    path.write_text("\r\n".join(lines), encoding="utf-8", newline="")
    assert load_questions(path) == [EvalQuestion(question, "1")]


def test_fields_of_the_wrong_type_are_refused_with_their_line(tmp_path: Path) -> None:
    path = tmp_path / "q.jsonl"
    good = [
        ({"question": "int pmid", "pmid": 31844332}, "31844332"),
        ({"question": "padded pmid", "pmid": " 31844332 "}, "31844332"),
        ({"question": "no source", "pmid": None}, None),
        ({"question": "empty source", "pmid": ""}, None),
    ]
    path.write_text("".join(json.dumps(record) + "\n" for record, _ in good))
    assert [q.pmid for q in load_questions(path)] == [pmid for _, pmid in good]
    bad = [
        ({"question": ["a", "list"], "pmid": "1"}, '"question"'),
        ({"question": 42, "pmid": "1"}, '"question"'),
        ({"question": "bool", "pmid": True}, r'"pmid" must be a PubMed id .* not true'),
        ({"question": "float", "pmid": 3.1e7}, '"pmid" must be'),
        ({"question": "list", "pmid": ["1"]}, '"pmid" must be'),
        ({"question": "prefixed", "pmid": "PMID:1"}, '"pmid" must be'),
        ({"question": "conclusion", "pmid": "1", "conclusion": ["x"]}, '"conclusion"'),
    ]
    for record, message in bad:
        path.write_text(json.dumps({"question": "fine", "pmid": "1"}) + "\n" + json.dumps(record))
        with pytest.raises(InputError, match=rf"q\.jsonl:2: .*{message}"):
            load_questions(path)


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("not json", r"q\.jsonl:1: not JSON"),
        ("[1, 2]", r"q\.jsonl:1: not a JSON object"),
        ('{"pmid": "1"}', r'q\.jsonl:1: needs a non-empty "question"'),
    ],
)
def test_a_malformed_line_is_named_with_a_hint_on_the_format(
    tmp_path: Path, line: str, message: str
) -> None:
    """The CLI prints these as the README promises, a message and a hint: the hint shows the
    line format. A JSON list was reported as lacking a question, which reads as a typo."""
    path = tmp_path / "q.jsonl"
    path.write_text(line + "\n")
    with pytest.raises(InputError, match=message) as error:
        load_questions(path)
    assert '{"question": ' in (error.value.hint or "")
