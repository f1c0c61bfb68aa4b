from __future__ import annotations

from pathlib import Path

import pytest

from index.errors import InputError
from qa.chat import FLAG_SESSION_EXPIRED, ChatService, condense, is_follow_up
from qa.engine import Engine
from qa.sessions import SessionStore

FIRST = "Does tisagenlecleucel cause cytokine release syndrome in children?"


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        ("and in adults?", "Does tisagenlecleucel cause cytokine release syndrome in adults?"),
        (
            "What about in adults?",
            "Does tisagenlecleucel cause cytokine release syndrome in adults?",
        ),
        (
            "for lymphoma",
            "Does tisagenlecleucel cause cytokine release syndrome in children for lymphoma?",
        ),
        (
            "and how is it treated?",
            "Does tisagenlecleucel cause cytokine release syndrome in children: how is it treated?",
        ),
    ],
)
def test_rule_based_condensation(message: str, expected: str) -> None:
    assert condense(FIRST, message) == expected


def test_a_new_question_stands_alone() -> None:
    message = "Is neurotoxicity common after axicabtagene ciloleucel?"
    assert not is_follow_up(message)
    assert condense(FIRST, message) == message
    assert condense(None, "and in adults?") == "and in adults?"


def test_preposition_replaces_the_last_phrase_it_matches() -> None:
    previous = "How often does CRS occur in children with leukaemia after CAR T?"
    assert condense(previous, "and in adults?") == (
        "How often does CRS occur in adults with leukaemia after CAR T?"
    )


@pytest.fixture
def chat(engine: Engine, tmp_path: Path) -> ChatService:
    return ChatService(engine, SessionStore.open(tmp_path))


def test_follow_up_is_condensed_and_answered(chat: ChatService) -> None:
    session, first = chat.reply("Why do patients relapse after CD19 CAR T cell therapy?")
    assert not first.abstained
    same, follow = chat.reply("and in adults?", session)
    assert same == session
    assert follow.query == "Why do patients relapse after CD19 CAR T cell therapy in adults?"
    assert not follow.abstained
    turns = chat.sessions.history(session)
    assert [t.message for t in turns] == [
        "Why do patients relapse after CD19 CAR T cell therapy?",
        "and in adults?",
    ]
    assert turns[1].query == follow.query


def test_follow_up_without_session_is_not_condensed(chat: ChatService) -> None:
    _, answer = chat.reply("and in adults?")
    assert answer.query == "and in adults?"


def test_unknown_session_starts_a_new_one(chat: ChatService) -> None:
    session, answer = chat.reply("What causes CAR T cell exhaustion?", "expired-or-made-up")
    assert session != "expired-or-made-up"
    assert FLAG_SESSION_EXPIRED in answer.flags
    assert chat.sessions.exists(session)


def test_stream_done_event_carries_the_session(chat: ChatService) -> None:
    events = list(chat.reply_stream("How is cytokine release syndrome managed?"))
    assert events[0].type == "sources"
    done = events[-1]
    assert done.type == "done"
    session = done.data["session_id"]
    assert chat.sessions.exists(session)
    follow = list(chat.reply_stream("and in adults?", session))[-1].data
    assert follow["session_id"] == session
    assert follow["query"].endswith("in adults?")


def test_bad_input_creates_no_session(chat: ChatService) -> None:
    with pytest.raises(InputError):
        chat.reply("   ")
    with pytest.raises(InputError):
        chat.reply_stream("")
    assert chat.sessions.count() == 0
