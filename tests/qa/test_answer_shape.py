"""No padding, and short topical questions answered when the top paper holds their topic."""

from __future__ import annotations

from carqa.qa.answer import Evidence, joins_answer
from carqa.qa.engine import Engine


def _evidence(similarity: float, prior: float, text: str, pmid: str = "1") -> Evidence:
    return Evidence(0, pmid, 0, text, None, similarity, prior)


def test_a_sentence_joins_only_when_it_answers_the_question_too() -> None:
    lead = _evidence(0.70, 1.0, "Drug Z lowered relapse in disease Q.")
    terms = frozenset({"relaps", "drug"})
    assert joins_answer(_evidence(0.62, 0.9, "Relapse fell with drug Z."), lead, terms)
    # Close in meaning but far below the lead.
    assert not joins_answer(_evidence(0.42, 0.9, "Relapse fell with drug Z."), lead, terms)
    # Close, but a methods sentence: its score is far below the lead's.
    assert not joins_answer(_evidence(0.66, 0.0, "Relapse was recorded weekly."), lead, terms)
    # Close and a finding, but about something else: none of the question's words.
    assert not joins_answer(_evidence(0.66, 0.9, "Surgery failed in many cases."), lead, terms)


def test_a_short_question_whose_topic_the_top_paper_holds_is_answered(engine: Engine) -> None:
    # Its terms are "indication" and "kymriah"; the paper says what Kymriah treats without
    # the word "indication", which names the kind of answer, not the topic.
    answer = engine.ask("What is the indication for Kymriah?")
    assert not answer.abstained, answer.message
    assert answer.citations[0].pmid == "90000003"
    # Two topic words of which the top paper holds one still abstain.
    assert engine.ask("What is the GDP of Germany?").abstained


def test_a_clearly_answered_question_skips_the_word_checks(engine: Engine, monkeypatch) -> None:
    """The checks that can turn a refusal into an answer (top paper holds the topic, names
    found) cost time on every question; a question answered without them never reads them."""
    from carqa.qa import answer

    def refuse(*_: object) -> bool:
        raise AssertionError("read for a question that is answered anyway")

    monkeypatch.setattr(answer, "names_found", refuse)
    monkeypatch.setattr(answer, "short_question_covered", refuse)
    result = engine.ask("Why do patients relapse after CD19 CAR T cell therapy?")
    assert not result.abstained and result.citations[0].pmid == "90000004"
