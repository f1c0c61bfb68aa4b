"""The advice after an abstention fits the question asked and the corpus loaded."""

from __future__ import annotations

from carqa.qa.answer import abstain_hint


def _corpus(*words: str):
    have = {w.casefold() for w in words}
    return lambda term: all(word.casefold() in have for word in term.split())


CAR_T = _corpus("tisagenlecleucel", "CD19", "cytokine", "release", "syndrome")


def test_never_suggests_a_term_the_question_already_names() -> None:
    hint = abstain_hint("How is cytokine release syndrome treated?", CAR_T)
    assert "cytokine release syndrome" not in hint
    assert '"tisagenlecleucel"' in hint and '"CD19"' in hint
    hint = abstain_hint("What is Tisagenlecleucel?", CAR_T)
    assert "tisagenlecleucel" not in hint.casefold()


def test_suggests_only_terms_the_corpus_has() -> None:
    pubmedqa_like = _corpus("mitochondria", "release")  # no CAR T terms
    hint = abstain_hint("What is the GDP of Germany?", pubmedqa_like)
    assert "tisagenlecleucel" not in hint and "CD19" not in hint and "cytokine" not in hint
    assert hint.startswith("Try naming what you mean")
    partly = _corpus("CD19")
    assert '(for example "CD19")' in abstain_hint("Why relapse?", partly)


def test_filters_are_mentioned_only_when_set() -> None:
    assert "filters" not in abstain_hint("Why relapse?", CAR_T)
    assert abstain_hint("Why relapse?", CAR_T, filtered=True).endswith(", or widen the filters.")


def test_engine_hint_offers_terms_its_corpus_has(engine) -> None:
    """Over the invented CAR T corpus: its terms are found (any case), a phrase it lacks is
    not, and an off-topic question's hint names the corpus's terms and no filters (none set)."""
    assert engine._in_corpus("cytokine release syndrome")
    assert engine._in_corpus("cd19")
    assert not engine._in_corpus("gross domestic product")
    answer = engine.ask("What is the GDP of Germany?")
    assert answer.abstained
    assert '(for example "tisagenlecleucel", "CD19", "cytokine release syndrome").' in (
        answer.message or ""
    )
