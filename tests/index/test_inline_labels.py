"""Flat abstracts with inline labels ("BACKGROUND: ... RESULTS: ...") become sections again."""

from __future__ import annotations

import pytest
from carqa.index.corpus.inline_labels import category_of, inline_sections
from carqa.index.corpus.models import Section
from carqa.index.corpus.sources import paper_from_record

FLAT = (
    "BACKGROUND: Invented cells were studied. PATIENTS AND METHODS: Forty invented patients "
    "were enrolled. RESULTS: Invented cells persisted in 30 of 40. CONCLUSIONS: Invented "
    "cells persist."
)


def test_a_flattened_structured_abstract_is_split_at_its_labels() -> None:
    assert inline_sections(FLAT) == [
        Section("Invented cells were studied.", "BACKGROUND", "BACKGROUND"),
        Section("Forty invented patients were enrolled.", "PATIENTS AND METHODS", "METHODS"),
        Section("Invented cells persisted in 30 of 40.", "RESULTS", "RESULTS"),
        Section("Invented cells persist.", "CONCLUSIONS", "CONCLUSIONS"),
    ]


def test_a_jsonl_abstract_with_labels_gets_sections() -> None:
    paper, _ = paper_from_record({"pmid": "7", "abstract": FLAT})
    assert [s.category for s in paper.sections] == [
        "BACKGROUND",
        "METHODS",
        "RESULTS",
        "CONCLUSIONS",
    ]
    assert not any(s.text.startswith(("RESULTS", "CONCLUSIONS")) for s in paper.sections)


def test_text_before_the_first_label_is_kept_unlabelled() -> None:
    sections = inline_sections("Thirty were enrolled. CONCLUSIONS: Invented cells persist.")
    assert sections == [
        Section("Thirty were enrolled."),
        Section("Invented cells persist.", "CONCLUSIONS", "CONCLUSIONS"),
    ]


@pytest.mark.parametrize(
    "text",
    [
        "HIV: an invented review of invented cases.",
        "BRCA1: invented carriers were studied.",
        "A ratio of 2:1 was seen. CD19: an invented antigen.",
        "Invented cells were studied: RESULTS followed.",
        "Plain invented text without any label.",
    ],
)
def test_capitals_before_a_colon_are_not_always_a_label(text: str) -> None:
    assert inline_sections(text) == [Section(text)]


@pytest.mark.parametrize(
    ("label", "category"),
    [
        ("BACKGROUND AND AIMS", "BACKGROUND"),
        ("PURPOSE OF REVIEW", "OBJECTIVE"),
        ("MATERIALS AND METHODS", "METHODS"),
        ("RECENT FINDINGS", "RESULTS"),
        ("INTERPRETATION", "CONCLUSIONS"),
        ("UNLABELLED", None),
    ],
)
def test_a_label_takes_the_category_of_its_first_known_word(
    label: str, category: str | None
) -> None:
    assert category_of(label) == category


def test_an_empty_abstract_has_no_sections() -> None:
    assert inline_sections("  ") == []
    paper, _ = paper_from_record({"pmid": "7", "abstract": ""})
    assert paper.sections == []
