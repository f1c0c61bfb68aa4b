from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from carqa.cli import app

runner = CliRunner()
WIDE = {"COLUMNS": "250"}  # no line wrapping in the middle of what a test looks for
RELAPSE = "Why do patients relapse after CD19 CAR T cell therapy?"


def chat(index_dir: Path, *lines: str, options: tuple[str, ...] = ()) -> Result:
    """``carqa chat`` typed into: each line one message, then end of input (Ctrl-D)."""
    result = runner.invoke(
        app,
        ["chat", "--index-dir", str(index_dir), *options],
        input="".join(f"{line}\n" for line in lines),
        env=WIDE,
    )
    assert result.exit_code == 0, result.output
    return result


def test_ask_prints_answer_with_numbered_citations(small_index_dir: Path) -> None:
    result = runner.invoke(app, ["ask", RELAPSE, "--index-dir", str(small_index_dir)])
    assert result.exit_code == 0, result.output
    assert "[1]" in result.stdout
    assert "PMID 90000004" in result.stdout
    assert "https://pubmed.ncbi.nlm.nih.gov/90000004/" in result.stdout


def test_ask_json(small_index_dir: Path) -> None:
    result = runner.invoke(
        app, ["ask", RELAPSE, "--json", "--k", "3", "--index-dir", str(small_index_dir)]
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["abstained"] is False
    assert data["citations"][0]["pmid"] == "90000004"
    assert data["query"] == RELAPSE


def test_ask_filters(small_index_dir: Path) -> None:
    result = runner.invoke(
        app,
        ["ask", RELAPSE, "--json", "--year-from", "2030", "--index-dir", str(small_index_dir)],
    )
    assert result.exit_code == 0
    assert json.loads(result.stdout)["abstained"] is True
    result = runner.invoke(
        app,
        ["ask", RELAPSE, "--json", "--pmid", "90000011", "--index-dir", str(small_index_dir)],
    )
    assert {c["pmid"] for c in json.loads(result.stdout)["citations"]} == {"90000011"}
    result = runner.invoke(
        app,
        [
            *("ask", RELAPSE, "--json", "--exclude-pmid", "90000004"),
            *("--index-dir", str(small_index_dir)),
        ],
    )
    assert result.exit_code == 0, result.output
    cited = {c["pmid"] for c in json.loads(result.stdout)["citations"]}
    assert "90000004" not in cited  # the best paper for RELAPSE (test_ask_json)


def test_ask_off_topic_abstains(small_index_dir: Path) -> None:
    result = runner.invoke(
        app, ["ask", "How do I caramelize onions?", "--index-dir", str(small_index_dir)]
    )
    assert result.exit_code == 0
    assert "does not seem to answer" in result.stdout


def test_missing_index_is_a_clear_error(tmp_path: Path) -> None:
    for args in (["ask", RELAPSE], ["chat"], ["eval", "--questions", "q.jsonl"]):
        if args[0] == "eval":
            (tmp_path / "q.jsonl").write_text('{"question": "x", "pmid": null}\n')
            args = ["eval", "--questions", str(tmp_path / "q.jsonl")]
        result = runner.invoke(app, [*args, "--index-dir", str(tmp_path / "nowhere")])
        assert result.exit_code == 1, args
        assert "Error:" in result.stderr
        assert "carqa build" in result.stderr  # the hint
        assert "Traceback" not in result.output


def test_empty_question_is_an_input_error(small_index_dir: Path) -> None:
    result = runner.invoke(app, ["ask", "  ", "--index-dir", str(small_index_dir)])
    assert result.exit_code == 2
    assert "empty" in result.stderr


def test_an_invisible_question_is_refused_like_a_blank_one(small_index_dir: Path) -> None:
    """A zero-width space, word joiner or soft hyphen alone was searched and abstained."""
    blank = runner.invoke(app, ["ask", "  ", "--index-dir", str(small_index_dir)])
    invisible = runner.invoke(
        app, ["ask", "\u200b\u2060\u00ad", "--index-dir", str(small_index_dir)]
    )
    assert invisible.exit_code == blank.exit_code == 2
    assert invisible.stderr == blank.stderr
    assert invisible.stdout == blank.stdout == ""


def test_chat_skips_an_invisible_message_like_a_blank_one(small_index_dir: Path) -> None:
    """An empty line prompts again; a line of zero-width characters was searched instead."""
    blank = chat(small_index_dir, "   ", "\t")
    assert chat(small_index_dir, "\u200b", "\u2060\u00ad\u200e").stdout == blank.stdout
    answered = chat(small_index_dir, "\u200b", RELAPSE.replace("CD19 ", "CD19\u200b "))
    assert "PMID 90000004" in answered.stdout
    assert "does not seem to answer" not in answered.stdout


def test_chat_condenses_follow_ups_and_ends_on_eof(small_index_dir: Path) -> None:
    result = chat(small_index_dir, RELAPSE, "and in adults?")
    assert "[1]" in result.stdout
    assert "(searched: Why do patients relapse after CD19 CAR T cell therapy in adults?)" in (
        result.stdout
    )
    assert result.stdout.rstrip().endswith("Bye.")


def test_chat_prints_its_session_and_resumes_it(small_index_dir: Path, tmp_path: Path) -> None:
    index_dir = tmp_path / "index"
    shutil.copytree(small_index_dir, index_dir, symlinks=True)  # chat writes sessions.sqlite
    first = chat(index_dir, RELAPSE)
    shown = re.findall(r"session (\S+) \(resume with --session (\S+)\)", first.stdout)
    assert len(shown) == 1, first.stdout  # once, when the conversation starts
    session, again = shown[0]
    assert session == again
    resumed = chat(index_dir, "and in adults?", options=("--session", session))
    assert f"Continuing session {session}." in resumed.stdout
    assert "(searched: Why do patients relapse after CD19 CAR T cell therapy in adults?)" in (
        resumed.stdout
    )
    assert "resume with" not in resumed.stdout  # same session: nothing new to print


def test_chat_keeps_sessions_where_the_setting_says(small_index_dir: Path, tmp_path: Path) -> None:
    from carqa.qa.sessions import SessionStore

    index_dir = tmp_path / "index"
    shutil.copytree(small_index_dir, index_dir, symlinks=True)
    for left in index_dir.glob("sessions.sqlite*"):  # other chat tests share small_index_dir
        left.unlink()
    elsewhere = tmp_path / "state" / "sessions.sqlite"
    result = runner.invoke(
        app,
        ["chat", "--index-dir", str(index_dir)],
        input=f"{RELAPSE}\n",
        env={**WIDE, "CARQA_SESSIONS_PATH": str(elsewhere)},
    )
    assert result.exit_code == 0, result.output
    [session] = re.findall(r"session (\S+) \(resume with", result.stdout)
    assert not (index_dir / "sessions.sqlite").exists()
    with SessionStore(elsewhere) as store:
        assert [turn.message for turn in store.history(session)] == [RELAPSE]


def test_chat_without_a_writable_sessions_file_goes_on_in_memory(
    small_index_dir: Path, tmp_path: Path
) -> None:
    (tmp_path / "a-file").write_text("not a folder")
    unwritable = tmp_path / "a-file" / "sessions.sqlite"
    result = runner.invoke(
        app,
        ["chat", "--index-dir", str(small_index_dir)],
        input=f"{RELAPSE}\nand in adults?\n",
        env={**WIDE, "CARQA_SESSIONS_PATH": str(unwritable)},
    )
    assert result.exit_code == 0, result.output
    assert f"cannot write the chat sessions database {unwritable}" in result.stderr
    assert "kept in memory" in result.stderr and "CARQA_SESSIONS_PATH" in result.stderr
    assert "(searched: Why do patients relapse after CD19 CAR T cell therapy in adults?)" in (
        result.stdout
    )


def test_chat_says_when_the_session_is_unknown(small_index_dir: Path, tmp_path: Path) -> None:
    index_dir = tmp_path / "index"
    shutil.copytree(small_index_dir, index_dir, symlinks=True)
    result = chat(index_dir, "and in adults?", options=("--session", "no-such-session"))
    assert (
        "Session no-such-session was not found or has expired; starting a new conversation."
        in result.stdout
    )
    new = re.findall(r"session (\S+) \(resume with --session \S+\)", result.stdout)
    assert len(new) == 1 and new[0] != "no-such-session"


def test_chat_quit_command(small_index_dir: Path) -> None:
    result = chat(small_index_dir, "/new", "/quit")
    assert "New conversation." in result.stdout


def test_chat_commands_with_invisible_characters_are_commands(small_index_dir: Path) -> None:
    """A pasted "\u200b/quit" was asked as a question, and the chat went on."""
    result = chat(small_index_dir, "\u200b/new\u00ad", "\u2060/quit", RELAPSE)
    assert "New conversation." in result.stdout
    assert "PMID 90000004" not in result.stdout  # left before the question


def test_chat_unknown_command_is_not_asked(small_index_dir: Path) -> None:
    """ "/clear" or "/help" (what other chat tools take) was searched as a question: the user
    got an abstention and, believing the conversation cleared, went on inside the old one."""
    result = chat(small_index_dir, RELAPSE, "/clear", "and in adults?", "/help")
    assert "Unknown command /clear: /new starts a new conversation, /quit (or Ctrl-D) leaves" in (
        result.stdout
    )
    # once after the unknown command, once for /help
    assert result.stdout.count("/help shows this. Ctrl-C stops an answer as it arrives.") == 2
    assert "does not seem to answer" not in result.stdout  # neither was searched
    assert "(searched: Why do patients relapse after CD19 CAR T cell therapy in adults?)" in (
        result.stdout
    )


def test_eval_json_alone_on_stdout(small_index_dir: Path, tmp_path: Path) -> None:
    questions = tmp_path / "questions.jsonl"
    rows = [
        {
            "question": RELAPSE,
            "pmid": "90000004",
            "conclusion": "Antigen escape through loss of CD19 and poor CAR T cell persistence "
            "are the two main causes of relapse after CD19 CAR T cell therapy.",
        },
        {"question": "Does Kymriah produce lasting remissions?", "pmid": "90000003"},
        {"question": "What is the offside rule in football?", "pmid": None},
    ]
    questions.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    result = runner.invoke(
        app,
        ["eval", "--questions", str(questions), "--index-dir", str(small_index_dir), "--json"],
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    for key in (
        "n",
        "recall@1",
        "recall@5",
        "recall@10",
        "mrr",
        "conclusion@1",
        "conclusion@3",
        "abstain_rate_answerable",
        "abstain_rate_unanswerable",
        "abstain_rate_source_left_out",
        "latency_ms_p50",
        "latency_ms_p95",
        "latency_ms_encode_p50",
        "latency_ms_answer_p50",
    ):
        assert key in report
    assert report["n"] == 3
    assert report["recall@1"] == 1.0
    assert report["mrr"] == 1.0
    assert report["conclusion@1"] == 1.0
    assert report["abstain_rate_answerable"] == 0.0
    assert report["abstain_rate_unanswerable"] == 1.0
    assert report["latency_ms_p50"] > 0
    assert 0 < report["latency_ms_encode_p50"] < report["latency_ms_p95"]
    assert 0 < report["latency_ms_answer_p50"] < report["latency_ms_p95"]
    assert 0.0 <= report["abstain_rate_source_left_out"] <= 1.0
    assert "Evaluating" in result.stderr
    result = runner.invoke(
        app,
        [
            *("eval", "--questions", str(questions), "--index-dir", str(small_index_dir)),
            *("--json", "--no-leave-source-out"),
        ],
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["abstain_rate_source_left_out"] is None


def test_eval_rejects_a_malformed_file(small_index_dir: Path, tmp_path: Path) -> None:
    questions = tmp_path / "bad.jsonl"
    questions.write_text('{"pmid": "1"}\n')
    result = runner.invoke(
        app, ["eval", "--questions", str(questions), "--index-dir", str(small_index_dir)]
    )
    assert result.exit_code == 2
    assert "bad.jsonl:1" in result.stderr


def test_eval_refuses_an_over_long_question_before_asking(
    small_index_dir: Path, tmp_path: Path
) -> None:
    questions = tmp_path / "long.jsonl"
    rows = [{"question": RELAPSE, "pmid": "90000004"}] * 3 + [{"question": "y" * 1599}]
    questions.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    result = runner.invoke(
        app, ["eval", "--questions", str(questions), "--index-dir", str(small_index_dir)]
    )
    assert result.exit_code == 2
    stderr = " ".join(result.stderr.split())  # rich wraps long lines
    assert "long.jsonl:4: the question is 1599 characters long" in stderr
    assert "Evaluating" not in result.stderr  # refused before the first question


def test_eval_warns_about_pmids_not_in_the_index(small_index_dir: Path, tmp_path: Path) -> None:
    questions = tmp_path / "questions.jsonl"
    rows = [
        {"question": RELAPSE, "pmid": "90000004"},
        {"question": "Does Kymriah produce lasting remissions?", "pmid": "12345"},
        {"question": "What is the offside rule in football?", "pmid": None},
    ]
    questions.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    result = runner.invoke(
        app,
        [
            *("eval", "--questions", str(questions), "--index-dir", str(small_index_dir)),
            *("--json", "--no-leave-source-out"),
        ],
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["n"] == 3  # stdout is still the JSON alone
    stderr = " ".join(result.stderr.split())  # rich wraps long lines
    warning = (
        "Warning: 1 of 3 questions name a pmid that is not in the index; they count as misses."
    )
    assert stderr.count(warning) == 1


# -- a model asked for must be the index's own ----------------------------------------------


def _other_model(folder: Path) -> Path:
    """A folder that resolves as a model (weights, a 384-d config) unlike the index's."""
    folder.mkdir()
    (folder / "model.safetensors").write_bytes(bytes(range(256)) * 16)
    (folder / "config.json").write_text('{"hidden_size": 384}')
    return folder


def test_a_model_other_than_the_indexs_is_refused(small_index_dir: Path, tmp_path: Path) -> None:
    other = _other_model(tmp_path / "other-model")
    result = runner.invoke(
        app,
        ["ask", RELAPSE, "--index-dir", str(small_index_dir)],
        env={"CARQA_MODEL": str(other), "COLUMNS": "250"},
    )
    assert result.exit_code == 1
    assert "Traceback" not in result.output
    assert "was built with model 'default'" in result.stderr
    assert f"you asked for '{other}'" in result.stderr
    assert f"carqa build --index-dir {small_index_dir} --model {other}" in result.stderr


def test_a_missing_model_folder_is_refused(small_index_dir: Path) -> None:
    result = runner.invoke(
        app,
        ["ask", RELAPSE, "--index-dir", str(small_index_dir)],
        env={"CARQA_MODEL": "/nonexistent/model", "COLUMNS": "250"},
    )
    assert result.exit_code == 1
    assert "Traceback" not in result.output
    assert "Embedding model folder /nonexistent/model does not exist." in result.stderr


def test_the_indexs_own_model_asked_for_by_name_is_used(small_index_dir: Path) -> None:
    result = runner.invoke(
        app,
        ["ask", RELAPSE, "--json", "--index-dir", str(small_index_dir)],
        env={"CARQA_MODEL": "default"},
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["citations"][0]["pmid"] == "90000004"


# -- filters are checked as the API checks them ---------------------------------------------


@pytest.mark.parametrize(
    ("flag", "value"), [("--pmid", "abc"), ("--pmid", "12 3"), ("--exclude-pmid", "9000000x")]
)
def test_a_pmid_filter_that_is_not_digits_is_a_usage_error(
    small_index_dir: Path, flag: str, value: str
) -> None:
    result = runner.invoke(
        app, ["ask", RELAPSE, flag, value, "--index-dir", str(small_index_dir)], env=WIDE
    )
    assert result.exit_code == 2
    assert "Traceback" not in result.output
    assert f"Invalid value for '{flag}': {value!r} is not a PMID" in result.output


def test_reversed_years_are_an_input_error(small_index_dir: Path) -> None:
    result = runner.invoke(
        app,
        [
            *("ask", RELAPSE, "--year-from", "2020", "--year-to", "2010"),
            *("--index-dir", str(small_index_dir)),
        ],
        env=WIDE,
    )
    assert result.exit_code == 2
    assert "Traceback" not in result.output
    assert "Error: --year-from 2020 is after --year-to 2010" in result.stderr


def test_a_one_year_range_is_accepted(small_index_dir: Path) -> None:
    result = runner.invoke(
        app,
        [
            *("ask", RELAPSE, "--json", "--year-from", "2019", "--year-to", "2019"),
            *("--index-dir", str(small_index_dir)),
        ],
    )
    assert result.exit_code == 0, result.output


def test_chat_ctrl_c_stops_the_answer_not_the_chat(
    small_index_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ctrl-C while a slow (LLM) answer streams used to leave the chat, conversation and all.
    Now it stops that answer, which is not kept: the next follow-up builds on the last whole
    turn."""
    from carqa.qa.chat import ChatService
    from carqa.qa.types import AnswerEvent

    index_dir = tmp_path / "index"
    shutil.copytree(small_index_dir, index_dir, symlinks=True)
    real_reply_stream = ChatService.reply_stream

    def interrupted_once(self, message, session_id=None, **kwargs):  # type: ignore[no-untyped-def]
        if message != "What is neurotoxicity?":
            return real_reply_stream(self, message, session_id, **kwargs)

        def stream():  # type: ignore[no-untyped-def]
            yield AnswerEvent("delta", {"text": "Neurotoxicity is"})
            raise KeyboardInterrupt  # the user presses Ctrl-C here

        return stream()

    monkeypatch.setattr(ChatService, "reply_stream", interrupted_once)
    result = chat(index_dir, RELAPSE, "What is neurotoxicity?", "and in adults?")
    assert "Neurotoxicity is\nAnswer stopped. (Ctrl-C at the prompt leaves.)" in result.stdout
    # The chat went on, and the follow-up attached to the relapse question, not the stopped one.
    assert "(searched: Why do patients relapse after CD19 CAR T cell therapy in adults?)" in (
        result.stdout
    )
    assert result.stdout.rstrip().endswith("Bye.")


def test_chat_an_llm_failing_mid_answer_ends_the_line_then_says_so(
    small_index_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The partial answer's line was left open: the next prompt ran on after it."""
    from carqa.qa.chat import ChatService
    from carqa.qa.llm import LLMUnavailable
    from carqa.qa.types import AnswerEvent

    def failing(self, message, session_id=None, **kwargs):  # type: ignore[no-untyped-def]
        def stream():  # type: ignore[no-untyped-def]
            yield AnswerEvent("delta", {"text": "Relapse is"})
            raise LLMUnavailable("The LLM server did not answer.")

        return stream()

    monkeypatch.setattr(ChatService, "reply_stream", failing)
    result = chat(small_index_dir, RELAPSE)
    assert "carqa> Relapse is\nyou> " in result.stdout  # not "Relapse isyou> "
    assert "Error: The LLM server did not answer." in result.stderr


def test_eval_times_the_first_question_without_a_cached_vector(
    small_index_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from carqa.qa.retrieve import HybridRetriever

    cache_hits: list[str] = []
    encode = HybridRetriever.encode

    def spy(self: HybridRetriever, text: str, **kwargs: object) -> object:
        if text in self._cache:
            cache_hits.append(text)
        return encode(self, text, **kwargs)

    monkeypatch.setattr(HybridRetriever, "encode", spy)
    questions = tmp_path / "one.jsonl"
    questions.write_text(json.dumps({"question": RELAPSE, "pmid": "90000004"}) + "\n")
    result = runner.invoke(
        app,
        [
            *("eval", "--questions", str(questions), "--index-dir", str(small_index_dir)),
            *("--json", "--no-leave-source-out"),
        ],
    )
    assert result.exit_code == 0, result.output
    assert cache_hits == []  # the warm-up must not have encoded the question being timed
