from __future__ import annotations

import json
from pathlib import Path

import pytest
from carqa.qa.lexicon import Lexicon, default_lexicon

from carqa.errors import InputError


def test_brand_name_expands_to_generic_and_code_names() -> None:
    extra = default_lexicon().expansions("Does Kymriah work in adults?")
    assert "tisagenlecleucel" in extra
    assert "CTL019" in extra
    assert "Kymriah" not in extra  # already in the question


def test_matching_ignores_case_hyphens_and_spacing() -> None:
    lexicon = default_lexicon()
    assert "axicabtagene ciloleucel" in lexicon.expansions("toxicity of AXI CEL")
    assert "chimeric antigen receptor" in lexicon.expansions("car-t cells in myeloma")


def test_short_acronyms_only_match_in_capitals() -> None:
    lexicon = default_lexicon()
    assert lexicon.expansions("were all patients treated?") == []
    assert "acute lymphoblastic leukemia" in lexicon.expansions("relapse in ALL")
    assert "cytokine release syndrome" in lexicon.expansions("grade 3 CRS")


def test_terms_are_whole_words() -> None:
    # "CD19" must not fire inside "CD190", nor "tumor" inside "tumorigenesis".
    assert default_lexicon().expansions("CD190 and tumorigenesis") == []


def test_every_shipped_group_has_distinct_terms() -> None:
    lexicon = default_lexicon()
    assert len(lexicon.groups) >= 30
    for terms in lexicon.groups:
        assert len(set(terms)) == len(terms) >= 2


def test_custom_lexicon_file(tmp_path: Path) -> None:
    path = tmp_path / "lexicon.json"
    path.write_text(json.dumps({"groups": [{"concept": "x", "terms": ["foo", "bar baz"]}]}))
    assert Lexicon.load(path).expansions("about Bar-Baz") == ["foo"]


def test_bad_lexicon_is_a_clear_input_error(tmp_path: Path) -> None:
    path = tmp_path / "lexicon.json"
    path.write_text(json.dumps({"groups": [{"concept": "lonely", "terms": ["one"]}]}))
    with pytest.raises(InputError, match="at least two terms"):
        Lexicon.load(path)
    path.write_text("{not json")
    with pytest.raises(InputError, match="cannot read the lexicon"):
        Lexicon.load(path)


def test_dense_query_swaps_names_the_corpus_never_uses() -> None:
    from carqa.qa.lexical import LexicalIndex

    index = LexicalIndex(
        [
            "Tisagenlecleucel induced remissions in an invented trial.",
            "Cytokine release syndrome was common and managed well.",
        ],
        lexicon=default_lexicon(),
    )
    assert index.dense_query("Does Kymriah work?") == "Does tisagenlecleucel work?"
    assert index.dense_query("Is CRS common?") == "Is cytokine release syndrome common?"
    # names the corpus knows, and words outside the lexicon, are left alone
    assert index.dense_query("Does tisagenlecleucel work?") == "Does tisagenlecleucel work?"
    assert index.dense_query("Is aspirin safe?") == "Is aspirin safe?"


def test_matching_a_question_does_not_slow_down_with_thousands_of_terms() -> None:
    """A corpus's abbreviations add thousands of groups; a question is matched by looking its
    words up, not by trying every term at every position."""
    import time

    from carqa.qa.lexicon import Lexicon

    groups = tuple((f"invented compound {n} kinase", f"IC{n}K") for n in range(6000))
    lexicon = Lexicon(groups=groups, concepts=tuple(g[0] for g in groups))
    question = (
        "Does invented compound 4711 kinase, called IC4711K in the trial, change the outcome of "
        "patients treated in the invented study of compound 12 with a kinase inhibitor?"
    )
    assert lexicon.matched_groups(question) == (4711,)
    started = time.perf_counter()
    for n in range(200):
        lexicon._matched_groups(f"{question} {n}")
    per_question_ms = (time.perf_counter() - started) * 1000 / 200
    assert per_question_ms < 1.0, per_question_ms


def test_the_longest_term_wins_and_matches_never_overlap() -> None:
    from carqa.qa.lexicon import Lexicon

    lexicon = Lexicon(
        groups=(("CAR T", "chimeric antigen receptor T"), ("CAR T cells", "CAR-T lymphocytes")),
        concepts=("CAR T", "CAR T cells"),
    )
    assert lexicon.matched_groups("Do CAR-T cells persist?") == (1,)
    assert lexicon.matched_groups("CAR T therapy; later CAR T cells") == (0, 1)
    assert lexicon.matched_groups("scar tissue and CART") == ()
