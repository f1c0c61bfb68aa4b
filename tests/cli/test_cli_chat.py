"""``carqa chat``: follow-ups, sessions kept and resumed, slash commands, and an answer
stopped (Ctrl-C) or failing (the LLM) without ending the chat."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from carqa.cli import app
from tests.cli.helpers import RELAPSE, WIDE, chat, runner


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
