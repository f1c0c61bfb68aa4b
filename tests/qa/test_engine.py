from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from carqa.qa.answer import EMPTY_INDEX_MESSAGE, NO_PAPERS_MESSAGE
from carqa.qa.engine import Engine
from carqa.qa.types import Filters

from carqa.errors import InputError
from tests.conftest import FIXTURE_CORPUS

RELAPSE = "Why do patients relapse after CD19 CAR T cell therapy?"


def fixture_records() -> dict[str, dict]:
    with open(FIXTURE_CORPUS, encoding="utf-8") as handle:
        return {record["pmid"]: record for record in map(json.loads, handle)}


def test_answer_cites_real_pmids_and_quotes_them(engine: Engine) -> None:
    answer = engine.ask(RELAPSE)
    assert not answer.abstained
    assert answer.citations, "an answer needs evidence"
    assert answer.citations[0].pmid == "90000004"  # "Loss of CD19 as a mechanism of relapse"
    for citation in answer.citations:
        assert citation.pmid in engine.index.papers
        assert citation.url == f"https://pubmed.ncbi.nlm.nih.gov/{citation.pmid}/"
        assert f"[{citation.n}]" in answer.answer
        # extractive: the cited sentence is quoted verbatim (before its marker)
        assert citation.text.rstrip(".") in answer.answer
    assert [c.n for c in answer.citations] == list(range(1, len(answer.citations) + 1))
    assert answer.query == RELAPSE
    assert answer.took_ms > 0


def test_answer_leads_with_a_conclusion(engine: Engine) -> None:
    answer = engine.ask(RELAPSE)
    assert answer.citations[0].section == "CONCLUSIONS"


@pytest.mark.parametrize(
    "question",
    [
        "How long should I boil an egg for a runny yolk?",
        "Who won the FIFA World Cup in 2014?",
        "How do I reverse a linked list in Python?",
        "What is the GDP of Germany?",
        "What is machine learning?",
    ],
)
def test_off_topic_questions_abstain(engine: Engine, question: str) -> None:
    answer = engine.ask(question)
    assert answer.abstained
    assert answer.citations == []
    assert answer.answer == ""
    assert "does not seem to answer" in (answer.message or "")


@pytest.mark.parametrize(
    "question",
    [
        "Can you tell me about CAR T toxicity?",
        "What is known about CAR T cell neurotoxicity?",
        "What is BCMA?",
        "Explain ICANS",
    ],
)
def test_chat_style_and_short_questions_are_answered(engine: Engine, question: str) -> None:
    answer = engine.ask(question)
    assert not answer.abstained, answer.message
    assert answer.citations


def test_brand_name_finds_the_abstract_that_uses_the_generic_name(engine: Engine) -> None:
    record = fixture_records()["90000003"]
    assert "kymriah" not in json.dumps(record).lower()  # only "tisagenlecleucel" there
    retrieval = engine.retrieve("Does Kymriah produce lasting remissions?", k=3)
    assert retrieval.pmids[0] == "90000003"
    answer = engine.ask("Does Kymriah produce lasting remissions?")
    assert not answer.abstained
    assert answer.citations[0].pmid == "90000003"


def test_code_name_expands_too(engine: Engine) -> None:
    assert engine.retrieve("Outcomes of KTE-C19 in large B cell lymphoma", k=1).pmids == [
        "90000005"  # "Axicabtagene ciloleucel in refractory large B cell lymphoma"
    ]


def test_retrieval_ranks_each_paper_once(engine: Engine) -> None:
    pmids = engine.retrieve("CAR T cells", k=10).pmids
    assert len(pmids) == 10
    assert len(set(pmids)) == 10


def test_retrieval_times_encoding_apart_and_a_repeated_question_skips_it(engine: Engine) -> None:
    question = "Which invented timing question is this, asked twice?"
    first = engine.retrieve(question, k=3).timings
    again = engine.retrieve(question, k=3).timings
    assert set(first) == {"encode", "rank"} and first["encode"] > 0 and first["rank"] > 0
    assert again["encode"] < first["encode"] / 2  # the vector came from the cache


def test_year_filter(engine: Engine) -> None:
    answer = engine.ask(RELAPSE, filters=Filters(year_from=2019, year_to=2020))
    assert not answer.abstained
    years = {engine.index.papers[c.pmid].year for c in answer.citations}
    assert years and all(2019 <= year <= 2020 for year in years)
    retrieval = engine.retrieve(RELAPSE, k=50, filters=Filters(year_to=2015))
    assert retrieval.pmids
    assert all(engine.index.papers[p].year <= 2015 for p in retrieval.pmids)


def test_pmid_filter(engine: Engine) -> None:
    retrieval = engine.retrieve(RELAPSE, k=10, filters=Filters(pmids=["90000006", "90000019"]))
    assert sorted(retrieval.pmids) == ["90000006", "90000019"]


def test_exclude_pmids_filter(engine: Engine) -> None:
    assert engine.retrieve(RELAPSE, k=1).pmids == ["90000004"]
    without = engine.retrieve(RELAPSE, k=50, filters=Filters(exclude_pmids=["90000004"])).pmids
    assert without and "90000004" not in without
    assert len(without) == len(engine.retrieve(RELAPSE, k=50).pmids) - 1
    answer = engine.ask(RELAPSE, filters=Filters(exclude_pmids=["90000004"]))
    assert "90000004" not in {c.pmid for c in answer.citations}
    # Leaving a paper out wins over asking for it; unknown pmids are ignored.
    both = Filters(pmids=["90000004", "90000006"], exclude_pmids=["90000004", "123"])
    assert engine.retrieve(RELAPSE, k=10, filters=both).pmids == ["90000006"]


def test_seed_filters(engine: Engine) -> None:
    seed = next(p for p, meta in engine.index.papers.items() if meta.is_seed)
    everything = engine.retrieve("lessons from CAR T cell therapy review", k=50).pmids
    assert seed in everything
    without_seed = engine.retrieve(
        "lessons from CAR T cell therapy review", k=50, filters=Filters(include_seed=False)
    ).pmids
    assert seed not in without_seed
    assert len(without_seed) == len(everything) - 1
    cited = engine.retrieve("CAR T", k=50, filters=Filters(cited_only=True)).pmids
    assert cited
    for pmid in cited:
        meta = engine.index.papers[pmid]
        assert meta.cited_by_seed or meta.is_seed
    assert "90000022" not in cited  # not in the seed's reference list


def test_filters_that_match_nothing_abstain_with_a_reason(engine: Engine) -> None:
    answer = engine.ask(RELAPSE, filters=Filters(year_from=2030))
    assert answer.abstained
    assert answer.message == NO_PAPERS_MESSAGE


def test_an_empty_pmid_list_matches_nothing_and_says_it_is_the_filters(engine: Engine) -> None:
    # POST /api/query accepts {"filters": {"pmids": []}}: the mask lets no paper through, so
    # the abstention must blame the filters, not claim the index is empty.
    answer = engine.ask(RELAPSE, filters=Filters(pmids=[]))
    assert answer.abstained
    assert answer.message == NO_PAPERS_MESSAGE
    assert not Filters(pmids=[]).is_empty()


def test_an_empty_index_says_it_is_empty(small_index_dir: Path, tmp_path: Path) -> None:
    from carqa.index.corpus.store import CorpusStore
    from carqa.index.search.build import build_index
    from carqa.index.search.reader import Index

    shutil.copytree(small_index_dir / "cache", tmp_path / "cache")  # no model export
    with CorpusStore.open(tmp_path) as store:
        build_index(store, tmp_path)
    empty = Engine(Index.open(tmp_path))
    for filters in (None, Filters(), Filters(year_from=2030)):
        answer = empty.ask(RELAPSE, filters=filters)
        assert answer.abstained
        assert answer.message == EMPTY_INDEX_MESSAGE


def test_stream_events_in_order(engine: Engine) -> None:
    events = list(engine.ask_stream(RELAPSE))
    kinds = [event.type for event in events]
    assert kinds[0] == "sources"
    assert kinds[-1] == "done"
    assert set(kinds[1:-1]) == {"delta"}
    done = events[-1].data
    assert "".join(e.data["text"] for e in events[1:-1]) == done["answer"]
    assert events[0].data["citations"] == done["citations"]
    assert done["abstained"] is False


def test_stream_of_an_abstention(engine: Engine) -> None:
    events = list(engine.ask_stream("What wine pairs well with grilled salmon?"))
    assert [e.type for e in events] == ["sources", "done"]
    assert events[-1].data["abstained"] is True


def test_bad_questions_are_input_errors(engine: Engine) -> None:
    with pytest.raises(InputError):
        engine.ask("   ")
    with pytest.raises(InputError, match="limit"):
        engine.ask("why " * 1000)
    with pytest.raises(InputError):
        engine.ask(RELAPSE, k=0)


@pytest.mark.parametrize("question", ["\u200b", "\u2060\u00ad", "\u200e \u200f\x00", "\u3164"])
def test_an_invisible_question_is_refused_like_a_blank_one(engine: Engine, question: str) -> None:
    """Zero-width spaces, word joiners, soft hyphens, bidi marks, controls: nothing to read,
    like spaces. They were searched, and abstained."""
    with pytest.raises(InputError) as blank:
        engine.ask("   ")
    with pytest.raises(InputError) as invisible:
        engine.ask(question)
    assert invisible.value.message == blank.value.message
    assert invisible.value.hint == blank.value.hint
    with pytest.raises(InputError, match="empty"):
        list(engine.ask_stream(question))


def test_a_question_with_invisible_characters_in_it_is_answered(engine: Engine) -> None:
    question = "\u200bWhy do patients relapse after CD19\u200b CAR T cell therapy?\u2060"
    answer = engine.ask(question)
    assert not answer.abstained
    assert answer.citations[0].pmid == "90000004"  # as for RELAPSE itself


def test_invisible_characters_inside_words_do_not_change_the_answer(engine: Engine) -> None:
    """A soft hyphen or a zero-width space pasted inside a word made it another word to BM25
    (the same paper ranked first, but with a lower score and other papers after it)."""
    pasted = "Why do patients re\u00adlapse after CD\u200b19 CAR\u2060 T cell therapy?"
    clean, dirty = engine.ask(RELAPSE), engine.ask(pasted)
    assert dirty.query == clean.query == RELAPSE
    assert [c.pmid for c in dirty.citations] == [c.pmid for c in clean.citations]
    ranked = engine.retrieve(pasted).papers
    assert [(p.pmid, p.score) for p in ranked] == [
        (p.pmid, p.score) for p in engine.retrieve(RELAPSE).papers
    ]


def test_html_in_abstracts_is_returned_as_text(engine: Engine) -> None:
    # The API/widget must escape it; the engine hands the text through unchanged.
    paper = engine.paper("90000012")
    assert paper is not None
    assert any("<" in section["text"] for section in paper["sections"])


def test_paper_and_stats(engine: Engine) -> None:
    paper = engine.paper("90000004")
    assert paper is not None
    assert paper["url"] == "https://pubmed.ncbi.nlm.nih.gov/90000004/"
    assert paper["sections"][-1]["category"] == "CONCLUSIONS"
    assert paper["cited_by_seed"] is True
    assert engine.paper("12345") is None
    stats = engine.stats()
    assert stats["papers"] == 22
    assert stats["seed"] == 1
    assert stats["sentences"] == len(engine.index.sentences)
    assert stats["llm"] is None
    assert stats["query_encoder"] == "onnx-int8"  # the small index's build passed the check


def test_answer_to_dict_is_json(engine: Engine) -> None:
    data = engine.ask(RELAPSE).to_dict()
    assert json.loads(json.dumps(data)) == data
    assert set(data) == {
        "answer",
        "segments",
        "abstained",
        "citations",
        "took_ms",
        "query",
        "message",
        "flags",
    }
