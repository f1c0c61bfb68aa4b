from __future__ import annotations

import sys
from pathlib import Path

import pytest
from carqa.qa.chat import ChatService
from carqa.qa.engine import Engine
from carqa.qa.llm import (
    FLAG_EMPTY,
    FLAG_REMOVED,
    FLAG_UNCITED,
    CitationFilter,
    LLMUnavailable,
    LLMWriter,
    answer_messages,
    chat_model_from_settings,
    check_citations,
)
from carqa.qa.sessions import SessionStore
from carqa.qa.types import Citation
from langchain_core.language_models.fake_chat_models import (
    FakeListChatModel,
    GenericFakeChatModel,
)
from langchain_core.messages import AIMessage

from carqa.settings import Settings

RELAPSE = "Why do patients relapse after CD19 CAR T cell therapy?"


def fake(*replies: str) -> GenericFakeChatModel:
    """A chat model that streams each reply word by word (no network)."""
    return GenericFakeChatModel(messages=iter([AIMessage(content=r) for r in replies]))


@pytest.fixture(scope="module")
def index(small_index):
    return small_index


def llm_engine(index, *replies: str) -> Engine:
    return Engine(index, llm=LLMWriter(fake(*replies)))


# -- citation checking -----------------------------------------------------------------------


def test_filter_keeps_valid_markers_split_across_tokens() -> None:
    checker = CitationFilter(valid={1, 2})
    pieces = ["Loss of CD19 ", "[", "1", "] and ", "exhaustion [2", "][", "9]."]
    out = "".join(checker.feed(p) for p in pieces) + checker.flush()
    assert out == "Loss of CD19 [1] and exhaustion [2]."
    assert checker.removed == [9]
    assert checker.cited == {1, 2}


def test_filter_passes_brackets_that_are_not_markers() -> None:
    checker = CitationFilter(valid={1})
    text = "Doses [mean] were [1]. Range [3 mg], [ x ], [^a] and [4"
    out = checker.feed(text) + checker.flush()
    assert out == text
    assert checker.removed == []


def test_filter_checks_markers_in_other_brackets_and_spacing() -> None:
    """Markers such as "[ 12 ]", "［9］", "【7】" or "[^8]" (Markdown footnotes; CJK brackets)
    reached the reader unchecked, however little evidence there was; valid ones went unlinked."""
    checker = CitationFilter(valid={1, 2, 3})
    pieces = ["Loss [ 2 ]", " and [", " 12 ]; ", "【", "1】 ", "［9］ [^", "3] 【1、"]
    pieces.append("7】 [1，2].")
    out = "".join(checker.feed(p) for p in pieces) + checker.flush()
    assert out == "Loss [2] and ; [1]  [3] [1] [1][2]."  # spaces: see SpacingTidier
    assert checker.removed == [12, 9, 7]
    assert checker.cited == {1, 2, 3}


def test_filter_checks_every_number_of_a_citation_list() -> None:
    """Models often write "[1, 2]" or "[1-3]" however they are told: each number is checked
    (an invalid one is dropped) and the list comes out as "[1][2]", the form the widget links."""
    checker = CitationFilter(valid={1, 2, 3})
    pieces = ["Loss of CD19 [1", ", 4", "2] and ", "exhaustion [2", "–3]; persistence [1; 3", "]."]
    out = "".join(checker.feed(p) for p in pieces) + checker.flush()
    assert out == "Loss of CD19 [1] and exhaustion [2][3]; persistence [1][3]."
    assert checker.removed == [42]
    assert checker.cited == {1, 2, 3}
    text, removed = check_citations("Only Mars [7, 8]. Doses [1,000 mg] and [2020].", {1})
    assert text == "Only Mars. Doses [1,000 mg] and."
    assert removed == [7, 8, 2020]


def test_check_citations_tidies_spacing() -> None:
    text, removed = check_citations("CRS is common [3]. It is treatable [1] [7].", {1})
    assert text == "CRS is common. It is treatable [1]."
    assert removed == [3, 7]


# -- configuration ---------------------------------------------------------------------------


def test_no_provider_means_no_llm() -> None:
    assert chat_model_from_settings(Settings.load(llm_provider="")) is None
    assert chat_model_from_settings(Settings.load(llm_provider="none")) is None


def test_unknown_provider_is_a_clear_error() -> None:
    with pytest.raises(LLMUnavailable) as error:
        chat_model_from_settings(Settings.load(llm_provider="skynet"))
    assert "openai" in (error.value.hint or "")


@pytest.mark.parametrize(
    ("flags", "says"),
    [
        ({"llm_provider": "openai"}, "needs CARQA_LLM_API_KEY"),
        ({"llm_provider": "ollama", "llm_base_url": "localhost:11434"}, "not an http"),
        (
            {"llm_provider": "openai", "llm_base_url": "ftp://x/v1", "llm_api_key": "k"},
            "not an http",
        ),
        ({"llm_provider": "openai", "llm_base_url": "http://", "llm_api_key": "k"}, "not an"),
    ],
)
def test_misconfiguration_is_a_clear_error_at_start(flags: dict[str, str], says: str) -> None:
    """OpenAI without a key (and without a server of one's own), or a server URL without its
    scheme, was accepted and failed at the first question with the provider's error."""
    with pytest.raises(LLMUnavailable, match=says) as error:
        chat_model_from_settings(Settings.load(**flags))
    assert "CARQA_LLM_" in (error.value.hint or "") or "http://" in (error.value.hint or "")


@pytest.mark.parametrize(
    ("provider", "module"), [("openai", "langchain_openai"), ("ollama", "langchain_ollama")]
)
def test_missing_extra_is_a_clear_error(
    provider: str, module: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, module, None)  # as if not installed (dev installs it)
    with pytest.raises(LLMUnavailable) as error:
        chat_model_from_settings(Settings.load(llm_provider=provider, llm_api_key="key"))
    assert ".[llm]" in (error.value.hint or "")


def test_prompt_numbers_the_evidence() -> None:
    evidence = [
        Citation(1, "11", "T1", 2019, "u1", "CONCLUSIONS", "CD19 loss causes relapse.", 1.0),
        Citation(2, "22", None, None, "u2", None, "Persistence matters.", 0.5),
    ]
    system, human = answer_messages("Why relapse?", evidence)
    assert "ONLY the numbered evidence" in system.content
    assert "[1] (PMID 11, 2019) CD19 loss causes relapse." in human.content
    assert "[2] (PMID 22) Persistence matters." in human.content
    assert human.content.endswith("Question: Why relapse?")


# -- the engine with a (fake) LLM ------------------------------------------------------------


def test_llm_answer_streams_and_invalid_citations_are_removed(index) -> None:
    engine = llm_engine(index, "Relapse follows CD19 loss [1]. It is rare on Mars [42].")
    events = list(engine.ask_stream(RELAPSE))
    kinds = [e.type for e in events]
    assert kinds[0] == "sources" and kinds[-1] == "done"
    assert kinds.count("delta") > 2  # token by token
    evidence = events[0].data["citations"]
    assert evidence and [c["n"] for c in evidence] == list(range(1, len(evidence) + 1))
    streamed = "".join(e.data["text"] for e in events if e.type == "delta")
    assert "[42]" not in streamed
    done = events[-1].data
    assert done["answer"] == "Relapse follows CD19 loss [1]. It is rare on Mars."
    assert FLAG_REMOVED in done["flags"]
    assert "[42]" in done["message"]
    assert done["citations"] == evidence


@pytest.mark.parametrize(
    "reply",
    [
        "Relapse follows CD19 loss [1]. It is rare on Mars [42] .",
        "Relapse follows CD19 loss [7] [1]; exhaustion [2] [9] , too.",
        "  \n Relapse  follows\tCD19 loss [1] .\n\n",
    ],
)
def test_the_streamed_text_is_the_final_answer(index, reply: str) -> None:
    """The final answer was tidied (spaces a removed marker left before "." collapsed, ends
    stripped) after the stream, so the text a client had shown ("Mars  .") differed from the
    ``done`` answer ("Mars.") whenever a citation was removed."""
    events = list(llm_engine(index, reply).ask_stream(RELAPSE))
    streamed = "".join(e.data["text"] for e in events if e.type == "delta")
    done = events[-1].data
    assert streamed == done["answer"]
    assert "  " not in streamed and " ." not in streamed and " ," not in streamed
    assert streamed == streamed.strip()


def test_an_endless_reply_is_cut_at_the_cap_and_the_model_stream_closed(index) -> None:
    """A server that ignores the token cap streamed on without end, and the whole reply was
    kept in the chat session."""
    from carqa.settings import Settings

    state = {"pieces": 0, "closed": False}

    class Endless:
        def stream(self, messages):  # type: ignore[no-untyped-def]
            try:
                while state["pieces"] < 5_000:  # "endless": ~150 kB, where the cap is 80 B
                    state["pieces"] += 1
                    yield AIMessage(content="Relapse follows CD19 loss [1]. ")
            finally:
                state["closed"] = True

    engine = Engine(index, settings=Settings(llm_max_tokens=10), llm=LLMWriter(Endless()))
    events = list(engine.ask_stream(RELAPSE))
    streamed = "".join(e.data["text"] for e in events if e.type == "delta")
    done = events[-1].data
    assert streamed == done["answer"] and 70 < len(streamed) <= 80  # 10 tokens × 8 characters
    assert "llm_truncated" in done["flags"]
    assert "cut at 80 characters" in done["message"]
    assert state["closed"] and state["pieces"] < 10


@pytest.mark.parametrize(
    ("sentence", "uncited"),
    [
        # The cut sentence lost its citation to the cut, not to the model: it was flagged
        # llm_uncited, "1 of the answer's 3 sentences cites no evidence".
        ("Relapse follows CD19 loss [1]. ", None),
        ("Relapse follows CD19 losses. ", "The answer cites none of the evidence"),
    ],
)
def test_the_sentence_cut_by_the_cap_is_not_counted_as_uncited(
    index, sentence: str, uncited: str | None
) -> None:
    from carqa.settings import Settings

    engine = Engine(index, settings=Settings(llm_max_tokens=10), llm=LLMWriter(fake(sentence * 20)))
    answer = engine.ask(RELAPSE)
    assert "llm_truncated" in answer.flags
    assert answer.answer.count(".") == 2  # two whole sentences, then a cut one
    assert (FLAG_UNCITED in answer.flags) is (uncited is not None)
    message = answer.message or ""
    assert message.startswith("The model's answer was cut at 80 characters.")
    assert (uncited in message) if uncited else ("evidence" not in message)


def test_llm_citation_lists_are_checked_and_count_as_citations(index) -> None:
    answer = llm_engine(index, "Relapse follows CD19 loss [1, 2]. It is rare on Mars [1, 42].").ask(
        RELAPSE
    )
    assert answer.answer == "Relapse follows CD19 loss [1][2]. It is rare on Mars [1]."
    assert FLAG_REMOVED in answer.flags and FLAG_UNCITED not in answer.flags
    assert "[42]" in (answer.message or "")


def test_llm_answer_without_citations_is_flagged(index) -> None:
    answer = llm_engine(index, "Relapse happens.").ask(RELAPSE)
    assert not answer.abstained
    assert answer.answer == "Relapse happens."
    assert FLAG_UNCITED in answer.flags
    assert answer.message == (
        "The answer cites none of the evidence: check it against the sources."
    )


@pytest.mark.parametrize(
    ("reply", "message"),
    [
        (
            "Relapse follows CD19 loss [1]. Exhaustion is another cause. Both matter [2].",
            "1 of the answer's 3 sentences cites no evidence: check it against the sources.",
        ),
        ("Relapse follows CD19 loss. [1] Exhaustion is another cause [2].", None),
    ],
)
def test_llm_sentences_without_a_citation_are_flagged(
    index, reply: str, message: str | None
) -> None:
    """Every sentence must cite; one uncited sentence among cited ones passed unflagged (only
    an answer citing nothing at all was), and the flag came with no message saying so."""
    answer = llm_engine(index, reply).ask(RELAPSE)
    assert (FLAG_UNCITED in answer.flags) is (message is not None)
    assert answer.message == message


@pytest.mark.parametrize("reply", ["[42]", "  \n "])
def test_llm_answer_with_no_text_says_so(index, reply: str) -> None:
    """A model that writes nothing (or only citations to missing evidence) left an answer that
    was empty yet not abstained, with no word why: an empty reply under the sources."""
    done = list(llm_engine(index, reply).ask_stream(RELAPSE))[-1].data
    assert done["answer"] == "" and not done["abstained"]
    assert FLAG_EMPTY in done["flags"]
    assert done["message"].startswith("The language model wrote no answer")
    assert done["citations"]  # the evidence it was given is still there to read


def test_llm_is_not_called_when_the_evidence_is_weak(index) -> None:
    engine = llm_engine(index)  # no replies: calling the model would fail
    answer = engine.ask("What is the best flour for sourdough bread?")
    assert answer.abstained
    assert answer.citations == []


def test_llm_is_not_called_when_no_paper_has_a_sentence_to_cite(index, monkeypatch) -> None:
    """Retrieval good enough, but the top papers are title-only (no abstract sentence to
    quote): the model used to be asked with an empty evidence list, and its answer from its
    own memory came back uncited and not abstained."""
    from carqa.qa import answer as extractive

    monkeypatch.setattr(extractive, "select_evidence", lambda *args, **kwargs: [])
    engine = llm_engine(index, "From what I know, relapse follows antigen loss.")
    events = list(engine.ask_stream(RELAPSE))
    assert [e.type for e in events] == ["sources", "done"]
    done = events[-1].data
    assert done["abstained"] and done["answer"] == "" and done["citations"] == []
    assert done["message"] == "The best matching papers have no abstract."


def test_llm_condenses_chat_follow_ups(index, tmp_path: Path) -> None:
    model = FakeListChatModel(
        responses=[
            "Relapse after CD19 CAR T is caused by antigen loss [1].",
            "Why do adults relapse after CD19 CAR T cell therapy?\n",
            "In adults too, antigen loss drives relapse [1].",
        ]
    )
    engine = Engine(index, llm=LLMWriter(model))
    chat = ChatService(engine, SessionStore.open(tmp_path))
    session, first = chat.reply(RELAPSE)
    assert first.answer.endswith("[1].")
    _, follow = chat.reply("and in adults?", session)
    assert follow.query == "Why do adults relapse after CD19 CAR T cell therapy?"
    assert follow.answer == "In adults too, antigen loss drives relapse [1]."


@pytest.mark.parametrize(
    ("reply", "searched"),
    [
        # Nothing usable: the rules condense ("and in adults?" refines the topic) instead.
        ("", "Why do patients relapse after CD19 CAR T cell therapy in adults?"),
        ("\u200b", "Why do patients relapse after CD19 CAR T cell therapy in adults?"),
        ("[1]\n", "Why do patients relapse after CD19 CAR T cell therapy in adults?"),
        # A label or quotes around the question are not part of it.
        ("Standalone question: Why do adults relapse?", "Why do adults relapse?"),
        ('\n"Why do adults relapse?"\n', "Why do adults relapse?"),
    ],
)
def test_llm_condensation_that_is_no_question_falls_back_to_the_rules(
    index, tmp_path: Path, reply: str, searched: str
) -> None:
    """A model replying with only an invisible character had the user's valid follow-up
    refused as an empty question (InputError, a 422 over HTTP); an empty reply searched
    "and in adults?" alone, and a "[1]" or a "Standalone question:" label was searched too."""
    model = FakeListChatModel(responses=["Antigen loss [1].", reply, "In adults too [1]."])
    chat = ChatService(Engine(index, llm=LLMWriter(model)), SessionStore.open(tmp_path))
    session, _ = chat.reply(RELAPSE)
    _, follow = chat.reply("and in adults?", session)
    assert follow.query == searched


def test_provider_failures_are_clear_errors(index) -> None:
    class Broken(GenericFakeChatModel):
        def _stream(self, *args, **kwargs):  # type: ignore[override]
            raise ConnectionError("connection refused")

    engine = Engine(index, llm=LLMWriter(Broken(messages=iter([]))))
    with pytest.raises(LLMUnavailable, match="connection refused") as error:
        engine.ask(RELAPSE)
    assert "CARQA_LLM_BASE_URL" in (error.value.hint or "")
