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


def test_an_expansion_never_outweighs_the_abbreviation_typed() -> None:
    """Both papers write "OSCE"; the second also spells out its expansion in its title. The
    expansion's three words must not lift it over the paper about what was asked."""
    from carqa.qa.lexical import LexicalIndex

    definitions = [
        "Students rated peers in an objective structured clinical examination (OSCE).",
        "The objective structured clinical examination (OSCE) was run twice.",
    ]
    lexicon = with_abbreviations(Lexicon(groups=(), concepts=()), definitions)
    papers = [
        "Student examiners and faculty examiners scored an OSCE.",
        "An objective structured clinical OSCE for students and faculty: objective, structured "
        "and clinical.",
        "Faculty development in a surgical residency.",
        "Wound healing after hernia repair.",
        "Sleep and shift work in nurses.",
    ]
    index = LexicalIndex(papers, lexicon=lexicon)
    question = "Can students replace faculty as examiners in an OSCE?"
    plain = index.scores(question)
    assert plain[1] > plain[0]  # the expansion's words, added on top of "OSCE"
    scores = plain - index.double_counted(question, list(range(len(papers))))
    assert scores[0] > scores[1] > scores[2] > 0
    # Nothing is taken off a paper that names the thing one way only.
    assert index.double_counted(question, [0, 2]).tolist() == [0.0, 0.0]


def test_an_expansion_of_a_term_the_corpus_never_uses_still_finds_papers() -> None:
    from carqa.qa.lexical import LexicalIndex

    lexicon = Lexicon(groups=(("tisagenlecleucel", "Kymriah"),), concepts=("tisagenlecleucel",))
    index = LexicalIndex(
        ["Tisagenlecleucel in relapsed leukemia.", "Other products in lymphoma."], lexicon=lexicon
    )
    question = "Does Kymriah work in leukemia?"
    scores = index.scores(question) - index.double_counted(question, [0, 1])
    assert scores[0] > scores[1]


def test_a_paper_sharing_only_a_common_word_of_the_typed_term_keeps_its_expansion() -> None:
    """ "CAR T cells" typed: a paper that writes "chimeric antigen receptor" and "cells" but
    never "CAR" does not hold the typed term, so nothing of its expansion is taken off."""
    from carqa.qa.lexical import LexicalIndex

    lexicon = Lexicon(
        groups=(("CAR T cells", "chimeric antigen receptor"),), concepts=("CAR T cells",)
    )
    papers = [
        "Chimeric antigen receptor T cells expanded; the cells persisted for months.",
        "CAR T cells persisted; chimeric antigen receptor expression was stable.",
        "Stem cells in marrow.",
    ]
    index = LexicalIndex(papers, lexicon=lexicon)
    taken = index.double_counted("How long do CAR T cells persist?", [0, 1, 2]).tolist()
    assert taken[0] == 0.0 and taken[1] > 0.0 and taken[2] == 0.0
