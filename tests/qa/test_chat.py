from __future__ import annotations

from pathlib import Path

import pytest
from carqa.qa.chat import (
    FLAG_SESSION_EXPIRED,
    ChatService,
    condense,
    is_follow_up,
    next_topic,
    topic,
)
from carqa.qa.engine import Engine
from carqa.qa.sessions import SessionStore, Turn

from carqa.errors import InputError
from carqa.settings import Settings

FIRST = "Does tisagenlecleucel cause cytokine release syndrome in children?"


@pytest.mark.parametrize(
    ("topic", "message", "expected"),
    [
        # A place is added: the disease stays (it was lost when "in Denmark" replaced it).
        (
            "Is HPV involved in pterygium?",
            "in Denmark?",
            "Is HPV involved in pterygium in Denmark?",
        ),
        (
            "How common is group B streptococcus carriage in pregnant women?",
            "in northern Israel?",
            "How common is group B streptococcus carriage in pregnant women in northern Israel?",
        ),
        # A group of people replaces the group, whatever else the phrase says of it.
        (
            "Does vitamin D raise regulatory T cells in healthy people?",
            "and in patients with chronic kidney disease?",
            "Does vitamin D raise regulatory T cells in patients with chronic kidney disease?",
        ),
        # A disease replaces the disease, also in an "of" phrase.
        (
            "Does PET change the management of primary rectal cancer?",
            "and in cervical cancer?",
            "Does PET change the management of cervical cancer?",
        ),
    ],
)
def test_a_phrase_replaces_the_part_of_the_subject_it_names(
    topic: str, message: str, expected: str
) -> None:
    assert condense(topic, message) == expected


def test_a_possessive_after_a_named_subject_does_not_refer_back() -> None:
    assert not is_follow_up("Do tuberculosis patients in China stick to their treatment?")
    assert is_follow_up("what was their dose?")


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


def test_an_aspect_of_the_topic_is_asked_about_the_topic() -> None:
    assert condense(FIRST, "what dose was used?") == f"{FIRST[:-1]}: what dose was used?"
    assert condense(FIRST, "What are the side effects?") == (
        f"{FIRST[:-1]}: What are the side effects?"
    )


def test_is_the_same_true_continues_the_topic_like_is_that_true() -> None:
    assert condense(FIRST, "Is the same true for lymphoma?") == condense(
        FIRST, "Is that also true for lymphoma?"
    )


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        ("And what is cytokine release syndrome?", "What is cytokine release syndrome?"),
        ("Also, what is the mechanism of CD19 loss?", "What is the mechanism of CD19 loss?"),
        ("OK, but how long does manufacturing take?", "How long does manufacturing take?"),
        ("or is CRS more common in adults?", "Is CRS more common in adults?"),
    ],
)
def test_a_connector_before_a_question_of_its_own_starts_a_new_topic(
    message: str, expected: str
) -> None:
    assert not is_follow_up(message)
    assert condense(FIRST, message) == expected
    assert next_topic([Turn(FIRST, FIRST, "", False, 0.0, FIRST)], message, expected) == expected


@pytest.mark.parametrize(
    "message",
    [
        "and what about BCMA?",
        "And how is it treated?",
        "and what dose was used?",
        "but why?",
        "and is that also true for BCMA?",
    ],
)
def test_a_connector_before_a_question_that_leans_on_the_topic_is_a_follow_up(
    message: str,
) -> None:
    assert is_follow_up(message)
    assert condense(FIRST, message).startswith(FIRST[:-1])


@pytest.mark.parametrize(
    "message",
    ["compare that with axi-cel", "How does it compare with axi-cel?", "and compare with axi-cel"],
)
def test_a_comparison_adds_a_compared_with_phrase(message: str) -> None:
    assert is_follow_up(message)
    assert condense(FIRST, message) == f"{FIRST[:-1]} compared with axi-cel?"
    assert condense("CRS compared with tocilizumab alone?", message) == (
        "CRS compared with axi-cel?"
    )


def test_compare_starting_a_question_of_its_own_stands_alone() -> None:
    message = "Compare CD28 and 4-1BB costimulation"
    assert not is_follow_up(message)
    assert condense(FIRST, message) == message


def test_preposition_replaces_the_last_phrase_it_matches() -> None:
    previous = "How often does CRS occur in children with leukaemia after CAR T?"
    assert condense(previous, "and in adults?") == (
        "How often does CRS occur in adults with leukaemia after CAR T?"
    )


@pytest.mark.parametrize(
    "message",
    [
        "What is ICANS?",
        "Tocilizumab for CRS?",
        "Which antigen does ide-cel target?",
        "Is CRS common?",
        "So is CRS common?",
        "toxicity?",
        "What is the best treatment for CRS?",
        "Is CRS more common in adults?",
        "What did the ZUMA-1 trial show?",
        # A pronoun that points into the message itself.
        "What are the factors that predict CRS?",
        "Is there evidence that 4-1BB improves persistence?",
        "What causes CRS and how is it treated?",
        "Does tisagenlecleucel have the same toxicity as axi-cel?",
        "Which one of CD28 and 4-1BB persists longer?",
    ],
)
def test_a_short_question_with_a_topic_of_its_own_stands_alone(message: str) -> None:
    assert not is_follow_up(message)
    assert condense(FIRST, message) == message


@pytest.mark.parametrize(
    "message",
    [
        "and in adults?",
        "OK, and in adults?",
        "what about toxicity?",
        "how is it treated?",
        "Is that also true for lymphoma?",
        "why?",
        "tell me more",
        "How often?",
        # Aspect words ask about a subject without naming one.
        "what dose was used?",
        "any long-term data?",
        "What are the side effects?",
        "what were the results?",
        "So what is the treatment?",
        "what dose was used in children?",
        # Pronouns and "which one" / "the same" that refer back.
        "Is ide-cel approved for it?",
        "why does that happen?",
        "which one has more CRS?",
        "Is the same true for solid tumours?",
    ],
)
def test_messages_that_refer_back_are_follow_ups(message: str) -> None:
    assert is_follow_up(message)
    assert condense(FIRST, message) != message


def test_only_messages_that_stand_alone_change_the_topic() -> None:
    def turn(message: str, query: str, topic: str | None) -> Turn:
        return Turn(message, query, answer="", abstained=False, created=0.0, topic=topic)

    adults = FIRST.replace("children", "adults")
    history = [turn(FIRST, FIRST, FIRST), turn("and in adults?", adults, FIRST)]
    assert topic([]) is None
    assert topic(history) == FIRST
    assert next_topic(history, "what about toxicity?", f"{FIRST[:-1]}: toxicity?") == FIRST
    assert next_topic(history, "What is ICANS?", "What is ICANS?") == "What is ICANS?"
    assert next_topic([], "and in adults?", "and in adults?") == "and in adults?"
    # A turn recorded before turns had topics: its query is the best guess.
    assert topic([turn("and in adults?", adults, None)]) == adults


def test_condensing_never_exceeds_max_chars() -> None:
    long_follow_up = "what about " + "toxicity " * 15  # 146 characters: fits on its own
    query = condense(FIRST, long_follow_up, max_chars=200)
    assert len(query) <= 200
    assert query.startswith("Does tisagenlecleucel")  # the topic gives way, but stays
    assert query.endswith("toxicity?")  # the follow-up is kept whole
    too_long_for_any_topic = "and " + "x" * 190
    assert condense(FIRST, too_long_for_any_topic, max_chars=200) == "x" * 190 + "?"
    assert len(condense(FIRST, "and in " + "adults " * 40, max_chars=120)) <= 120


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


RELAPSE = "Why do patients relapse after CD19 CAR T?"


def test_follow_ups_attach_to_the_topic_not_to_the_previous_query(chat: ChatService) -> None:
    session, _ = chat.reply(RELAPSE)
    asked = {}
    for message in ["what about toxicity?", "and neurotoxicity?", "how is it treated?"]:
        asked[message] = chat.reply(message, session)[1].query
    _, crs = chat.reply("what about CRS?", session)
    assert asked == {
        "what about toxicity?": "Why do patients relapse after CD19 CAR T: toxicity?",
        "and neurotoxicity?": "Why do patients relapse after CD19 CAR T: neurotoxicity?",
        "how is it treated?": "Why do patients relapse after CD19 CAR T: how is it treated?",
    }
    assert crs.query == "Why do patients relapse after CD19 CAR T: CRS?"
    _, icans = chat.reply("What is ICANS?", session)
    assert icans.query == "What is ICANS?"  # a new short question is a new topic
    _, adults = chat.reply("and in adults?", session)
    assert adults.query == "What is ICANS in adults?"


def test_a_long_conversation_keeps_its_queries_within_the_limit(
    small_index, tmp_path: Path
) -> None:
    limit = 120
    engine = Engine(small_index, settings=Settings(max_question_chars=limit))
    chat = ChatService(engine, SessionStore.open(tmp_path))
    session, _ = chat.reply(RELAPSE)
    follow_ups = ["what about toxicity?", "and neurotoxicity?", "how is it treated?"]
    for i in range(25):
        message = follow_ups[i % 3] if i % 7 else "and " + "very " * 22 + "long?"
        same, answer = chat.reply(message, session)
        assert same == session
        assert len(answer.query) <= limit
    events = list(chat.reply_stream("what about CRS?", session))
    assert len(events[-1].data["query"]) <= limit


def test_an_unknown_session_is_said_in_the_message(chat: ChatService) -> None:
    _, follow = chat.reply("and in adults?", "expired-or-made-up")
    assert FLAG_SESSION_EXPIRED in follow.flags
    assert follow.message is not None
    assert "not found or has expired" in follow.message
    assert "on its own" in follow.message  # the follow-up had no conversation to lean on
    done = list(chat.reply_stream("and in adults?", "expired-or-made-up"))[-1].data
    assert FLAG_SESSION_EXPIRED in done["flags"]
    assert "not found or has expired" in done["message"]
    _, fresh = chat.reply("and in adults?")
    assert fresh.message is None or "expired" not in fresh.message


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
