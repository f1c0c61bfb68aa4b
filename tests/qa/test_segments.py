"""Citations are structure: an answer carries ``segments`` (text, then the evidence numbers it
cites), built where the answer is assembled, so no reader has to find ``[n]`` in the text, and
a bracket inside a quoted sentence stays text."""

from __future__ import annotations

from carqa.qa.answer import marked_segments
from carqa.qa.engine import Engine
from carqa.qa.llm import LLMWriter, marker_segments
from carqa.qa.types import Segment, joined
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage

RELAPSE = "Why do patients relapse after CD19 CAR T cell therapy?"
QUOTE = "An invented trial cites [1] and [999] in its own text."


def test_a_quoted_sentence_keeps_its_brackets_as_text() -> None:
    segments = marked_segments(QUOTE, 2, lead=" ")
    assert [s.citations for s in segments] == [[2], []]
    assert joined(segments) == " An invented trial cites [1] and [999] in its own text [2]."
    assert "[1] and [999]" in segments[0].text


def test_extractive_answers_carry_one_citation_per_sentence(small_index) -> None:
    answer = Engine(small_index).ask(RELAPSE)
    assert not answer.abstained
    assert joined(answer.segments) == answer.answer
    cited = [n for s in answer.segments for n in s.citations]
    assert cited == [c.n for c in answer.citations]
    data = answer.to_dict()
    assert data["segments"][0] == answer.segments[0].to_dict()


def test_llm_markers_are_parsed_once_after_they_are_checked(small_index) -> None:
    model = GenericFakeChatModel(
        messages=iter([AIMessage(content="Relapse follows CD19 loss [1][42]. Rarely [2].")])
    )
    done = list(Engine(small_index, llm=LLMWriter(model)).ask_stream(RELAPSE))[-1].data
    assert done["answer"] == "Relapse follows CD19 loss [1]. Rarely [2]."
    assert done["segments"] == [
        {"text": "Relapse follows CD19 loss ", "citations": [1]},
        {"text": ". Rarely ", "citations": [2]},
        {"text": ".", "citations": []},
    ]


def test_marker_segments_join_back_to_the_text() -> None:
    for text in ("", "no markers", "[1] first", "a [1][2] b [3]", "end [4]"):
        assert joined(marker_segments(text)) == text
    assert marker_segments("a [1][2] b") == [Segment("a ", [1, 2]), Segment(" b")]
