"""``carqa.qa.abbreviations``: abbreviation definitions found in the corpus text."""

from __future__ import annotations

from carqa.qa.abbreviations import abbreviation_groups, find_definitions, with_abbreviations
from carqa.qa.lexicon import Lexicon

TEXTS = [
    "Patients with amyotrophic lateral sclerosis (ALS) lose motor neurons.",
    "We studied amyotrophic lateral sclerosis (ALS) in mice.",
    "Serum levels of interleukin-6 (IL-6) rose early.",
    "Children with atopic dermatitis (AD) and adults with Alzheimer disease (AD) were seen.",
    "Results (n = 12) were similar (P < 0.05) in both arms (Table 2).",
]


def test_definitions_pair_the_short_form_with_the_words_it_abbreviates() -> None:
    found = find_definitions(TEXTS)
    assert found[("ALS", "amyotrophic lateral sclerosis")] == 2
    assert found[("IL-6", "interleukin-6")] == 1
    # Parentheses that define nothing are not abbreviations.
    assert not any(short in ("n = 12", "P < 0.05", "Table 2") for short, _ in found)


def test_an_abbreviation_with_two_meanings_is_left_out() -> None:
    groups = dict((short, long_form) for long_form, short in abbreviation_groups(TEXTS))
    assert groups["ALS"] == "amyotrophic lateral sclerosis"
    assert "AD" not in groups


def test_the_lexicon_gains_the_pairs_and_expands_a_question_both_ways() -> None:
    lexicon = with_abbreviations(Lexicon(groups=(), concepts=()), TEXTS)
    assert "amyotrophic lateral sclerosis" in lexicon.expansions("Which genes cause ALS?")
    assert "ALS" in lexicon.expansions("Which genes cause amyotrophic lateral sclerosis?")
    # An acronym of capitals only matches in capitals: the word "als" expands nothing.
    assert lexicon.expansions("als") == []
