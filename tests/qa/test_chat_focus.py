"""Chat turns about the papers a conversation is about (``carqa.qa.focus``), over the invented
CAR T fixture corpus: a detail follow-up is answered from the paper just discussed, quoting
the sentence that holds the detail; it widens to the corpus when that paper does not say."""

from __future__ import annotations

from pathlib import Path

import pytest
from carqa.qa.chat import FLAG_FOCUS_WIDENED, ChatService
from carqa.qa.engine import Engine
from carqa.qa.focus import asks_about_focus, cue_score, detail_kind, known_words, not_about
from carqa.qa.followup import is_follow_up
from carqa.qa.llm import LLMWriter
from carqa.qa.sessions import SessionStore
from langchain_core.language_models.fake_chat_models import FakeListChatModel

LEUKAEMIA = "What did CD19 CAR T cells achieve in relapsed childhood leukaemia?"
LEUKAEMIA_PAPER = "90000002"
HOW_MANY = "how many children were infused?"


@pytest.fixture()
def chat(engine: Engine) -> ChatService:
    return ChatService(engine, SessionStore(None))


def test_a_detail_question_is_answered_from_the_paper_just_discussed(chat: ChatService) -> None:
    # It names something of its own ("infused"): the follow-up rules alone searched it on its
    # own, and found whichever paper says most about infusing children.
    assert not is_follow_up(HOW_MANY)
    session, first = chat.reply(LEUKAEMIA)
    assert first.citations[0].pmid == LEUKAEMIA_PAPER
    assert first.focus_pmids == []  # a new question searches the corpus
    _, detail = chat.reply(HOW_MANY, session)
    assert detail.citations[0].pmid == LEUKAEMIA_PAPER
    assert "30 children" in detail.citations[0].text  # the sentence that holds the number
    assert detail.focus_pmids[0] == LEUKAEMIA_PAPER
    assert detail.query == f"{LEUKAEMIA[:-1]}: {HOW_MANY}"
    assert FLAG_FOCUS_WIDENED not in detail.flags


def test_asked_for_the_main_finding_the_conclusion_is_quoted(chat: ChatService) -> None:
    session, _ = chat.reply(LEUKAEMIA)
    _, finding = chat.reply("what was the main finding?", session)
    assert finding.citations[0].pmid == LEUKAEMIA_PAPER
    assert finding.citations[0].section == "CONCLUSIONS"


def test_a_detail_answer_quotes_the_detail_not_the_conclusion_again(chat: ChatService) -> None:
    session, first = chat.reply(LEUKAEMIA)
    _, detail = chat.reply("what costimulatory domain did they use?", session)
    assert detail.citations[0].pmid == LEUKAEMIA_PAPER
    assert "4-1BB" in detail.citations[0].text
    assert detail.citations[0].text not in {c.text for c in first.citations}


def test_a_detail_the_papers_in_focus_do_not_hold_widens_to_the_corpus(
    chat: ChatService,
) -> None:
    session, _ = chat.reply(LEUKAEMIA)
    _, where = chat.reply("where was the study done?", session)
    assert FLAG_FOCUS_WIDENED in where.flags
    assert where.focus_pmids == []
    assert where.message and "all indexed papers were searched" in where.message


def test_the_focus_follows_the_conversation(chat: ChatService) -> None:
    session, _ = chat.reply(LEUKAEMIA)
    myeloma = "Which BCMA CAR T cells were given in relapsed multiple myeloma?"
    _, other = chat.reply(myeloma, session)
    assert other.citations[0].pmid in {"90000008", "90000015"}
    _, detail = chat.reply("how many patients were treated?", session)
    assert detail.citations[0].pmid == other.citations[0].pmid
    assert detail.focus_pmids[0] == other.citations[0].pmid


def test_the_stream_answers_the_same_and_says_the_focus(chat: ChatService) -> None:
    session, _ = chat.reply(LEUKAEMIA)
    events = list(chat.reply_stream(HOW_MANY, session))
    assert events[0].type == "sources"
    done = events[-1].data
    assert done["citations"][0]["pmid"] == LEUKAEMIA_PAPER
    assert done["focus_pmids"][0] == LEUKAEMIA_PAPER
    assert done["session_id"] == session
    text = "".join(e.data["text"] for e in events if e.type == "delta")
    assert text == done["answer"] and "30 children" in text


def test_the_focus_survives_a_restart(engine: Engine, tmp_path: Path) -> None:
    with SessionStore.open(tmp_path) as store:
        session, _ = ChatService(engine, store).reply(LEUKAEMIA)
    with SessionStore.open(tmp_path) as store:
        assert store.history(session)[-1].focus[0] == LEUKAEMIA_PAPER
        _, detail = ChatService(engine, store).reply(HOW_MANY, session)
    assert detail.citations[0].pmid == LEUKAEMIA_PAPER


def test_an_abstention_keeps_the_focus(chat: ChatService) -> None:
    session, _ = chat.reply(LEUKAEMIA)
    _, off = chat.reply("What is the GDP of Germany?", session)
    assert off.abstained
    assert chat.sessions.history(session)[-1].focus[0] == LEUKAEMIA_PAPER


def test_the_llm_writes_a_detail_answer_from_the_papers_in_focus(
    engine: Engine, tmp_path: Path
) -> None:
    model = FakeListChatModel(
        responses=[
            "CD19 CAR T cells induced durable remissions [1].",
            f"{LEUKAEMIA[:-1]}: {HOW_MANY}",
            "Thirty children and young adults were treated [1].",
        ]
    )
    llm_engine = Engine(engine.index, llm=LLMWriter(model))
    chat = ChatService(llm_engine, SessionStore.open(tmp_path))
    session, _ = chat.reply(LEUKAEMIA)
    _, detail = chat.reply(HOW_MANY, session)
    assert detail.answer == "Thirty children and young adults were treated [1]."
    assert {c.pmid for c in detail.citations} <= set(detail.focus_pmids)
    assert detail.focus_pmids[0] == LEUKAEMIA_PAPER


KNOWN = known_words(
    [
        "Is HPV a risk factor for pterygium? 100 specimens of pterygium from Danish patients were"
        " tested by PCR with the HPV primers MY09/11. HPV type 6 was found in four.",
    ]
)


@pytest.mark.parametrize(
    "message",
    [
        "what PCR primers did they use?",
        "how many specimens were tested?",
        "which HPV type was found?",
        "where was the study done?",
        "what kind of study design was it?",
        "what dose was used?",
        "what dose were they taking?",
        "what kind of primers?",
        "why?",
    ],
)
def test_questions_about_the_papers_in_focus(message: str) -> None:
    assert asks_about_focus(message, lambda: KNOWN)


@pytest.mark.parametrize(
    "message",
    [
        "in Denmark?",  # a refinement: the same subject, a place added
        "and for conjunctival melanoma?",
        "What did the ZUMA-1 trial show?",  # a named trial: a new question
        "What are the factors that predict CRS?",  # general, present tense
        "How many patients relapse after CAR T cell therapy?",  # names what the paper does not
        "And what is cytokine release syndrome?",
        "Do tuberculosis patients in China stick to their treatment?",
        "and PCR in children?",  # a group of people: a refinement
    ],
)
def test_questions_that_are_not_about_the_papers_in_focus(message: str) -> None:
    assert not asks_about_focus(message, lambda: KNOWN)


@pytest.mark.parametrize(
    ("message", "kind"),
    [
        ("how many students took part?", "count"),
        ("where was the study done?", "place"),
        ("which dose do they recommend?", "dose"),
        ("what kind of trial was it?", "design"),
        ("how long did the treatment last?", "duration"),
        ("what PCR primers were used?", "method"),
        ("how often did atrial fibrillation occur?", "rate"),
        ("what was the main finding?", "finding"),
        ("what were they treated with?", None),
    ],
)
def test_the_kind_of_detail_asked_for(message: str, kind: str | None) -> None:
    assert detail_kind(message) == kind


def test_a_refinement_leaves_out_papers_that_do_not_name_its_subject() -> None:
    words = {"1": frozenset({"large", "cell", "lymphoma"}), "2": frozenset({"mantle", "cell"})}
    assert not_about("and for mantle cell lymphoma?", words, words.__getitem__) == ["1", "2"]
    assert not_about("and in adults?", words, words.__getitem__) == []


def test_api_chat_says_the_focus_in_json_and_in_the_stream(engine: Engine, tmp_path: Path) -> None:
    from carqa.api.app import create_app
    from fastapi.testclient import TestClient

    from carqa.settings import Settings
    from tests.api.sse import parse_sse

    chat = ChatService(engine, SessionStore(None))
    app = create_app(Settings(index_dir=tmp_path / "index"), engine=engine, chat=chat)
    with TestClient(app) as client:
        first = client.post("/api/chat", json={"message": LEUKAEMIA}).json()
        assert first["focus_pmids"] == []
        body = {"message": HOW_MANY, "session_id": first["session_id"]}
        detail = client.post("/api/chat", json=body).json()
        assert detail["focus_pmids"][0] == LEUKAEMIA_PAPER
        assert detail["citations"][0]["pmid"] == LEUKAEMIA_PAPER
        with client.stream(
            "POST", "/api/chat", json=body, headers={"accept": "text/event-stream"}
        ) as response:
            events = parse_sse(response.iter_lines())
        name, done = events[-1]
        assert name == "done" and done["focus_pmids"][0] == LEUKAEMIA_PAPER
        schema = client.get("/openapi.json").json()["components"]["schemas"]["ChatResponse"]
        assert "focus_pmids" in schema["properties"]
        query = client.post("/api/query", json={"question": HOW_MANY}).json()
        assert "focus_pmids" not in query


def test_carqa_chat_says_which_papers_a_detail_came_from(small_index_dir: Path) -> None:
    from tests.cli.helpers import chat as cli_chat

    result = cli_chat(small_index_dir, LEUKAEMIA, HOW_MANY)
    assert "30 children" in result.stdout
    assert f"(from the papers discussed: PMID {LEUKAEMIA_PAPER}" in result.stdout


@pytest.mark.parametrize(
    ("kind", "sentence"),
    [
        ("place", "The study ran from 1999 to 2000 in Gülhane Military Medical Academy."),
        ("place", "Trondheim and Stavanger University Hospitals, Norway."),
        ("place", "100 specimens of pterygium from Danish patients were examined."),
        ("design", "In a retrospective review of 150 suspects, decisions were analysed."),
        ("count", "The exam was given to 207 medical students."),
    ],
)
def test_a_sentence_holding_the_detail_is_recognised(kind: str, sentence: str) -> None:
    assert cue_score(kind, sentence, ["student"]) > 0


def test_a_dose_is_not_a_count() -> None:
    assert (
        cue_score("count", "Each capsule holds 100 mg of aspirin and 50 mg of atenolol.", []) == 0
    )
