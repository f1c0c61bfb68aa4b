"""The biomedical sentence splitter: abbreviations, decimals, initials, parentheses, offsets."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from index.sentences import split_sentences


def texts(text: str) -> list[str]:
    return [s.text for s in split_sentences(text)]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "As shown by Smith et al. (2019), CAR T cells persist. They expand in vivo.",
            ["As shown by Smith et al. (2019), CAR T cells persist.", "They expand in vivo."],
        ),
        (
            "Several antigens, e.g. CD19 and CD22, were tested. Results varied.",
            ["Several antigens, e.g. CD19 and CD22, were tested.", "Results varied."],
        ),
        (
            "Two products, i.e. Kymriah and Yescarta, are approved. Both target CD19.",
            ["Two products, i.e. Kymriah and Yescarta, are approved.", "Both target CD19."],
        ),
        (
            "Responses were 90% vs. 60% in controls. Fig. 2 shows the curves.",
            ["Responses were 90% vs. 60% in controls.", "Fig. 2 shows the curves."],
        ),
        (
            "Remission was more frequent (P < .001). Relapse was rare (p = 0.05).",
            ["Remission was more frequent (P < .001).", "Relapse was rare (p = 0.05)."],
        ),
        (
            "We enrolled patients from trial No. 5 in 2015. Follow-up was 2.5 years.",
            ["We enrolled patients from trial No. 5 in 2015.", "Follow-up was 2.5 years."],
        ),
        (
            "Samples were sent to Dr. J. Smith at the U.S. Food and Drug Administration. "
            "None were lost.",
            [
                "Samples were sent to Dr. J. Smith at the U.S. Food and Drug Administration.",
                "None were lost.",
            ],
        ),
        (
            "Patients (n = 30; median age 12 y. Range 3-24) were enrolled. Outcomes were good.",
            [
                "Patients (n = 30; median age 12 y. Range 3-24) were enrolled.",
                "Outcomes were good.",
            ],
        ),
        (
            "Levels of vitamin D. Patients with low levels relapsed.",
            ["Levels of vitamin D.", "Patients with low levels relapsed."],
        ),
        (
            "Expression fell. mRNA levels rose. p53 was mutated in 3 cases.",
            ["Expression fell.", "mRNA levels rose.", "p53 was mutated in 3 cases."],
        ),
        (
            "Did CAR T cells persist? Yes! They did.",
            ["Did CAR T cells persist?", "Yes!", "They did."],
        ),
        (
            'The authors wrote "no toxicity was seen." Others disagreed.',
            ['The authors wrote "no toxicity was seen."', "Others disagreed."],
        ),
        (
            "A line without a full stop\nA second line.",
            ["A line without a full stop", "A second line."],
        ),
        (
            "Lower-case continuation. and this is not a new sentence.",
            ["Lower-case continuation. and this is not a new sentence."],
        ),
        ("", []),
        ("   \n  ", []),
    ],
)
def test_splits(text: str, expected: list[str]) -> None:
    assert texts(text) == expected


def test_offsets_point_into_the_text() -> None:
    text = "  First sentence here.   Second one (see Fig. 3).\nThird."
    sentences = split_sentences(text)
    assert [s.text for s in sentences] == [
        "First sentence here.",
        "Second one (see Fig. 3).",
        "Third.",
    ]
    for sentence in sentences:
        assert text[sentence.start : sentence.end] == sentence.text


@given(st.text(alphabet=st.sampled_from(list("Ab. ?!()e.g1\n")), max_size=200))
def test_sentences_cover_all_non_space_text_in_order(text: str) -> None:
    sentences = split_sentences(text)
    assert "".join(s.text for s in sentences).replace(" ", "").replace("\n", "") == "".join(
        text.split()
    )
    assert all(s.text == s.text.strip() and s.text for s in sentences)
    assert all(a.end <= b.start for a, b in itertools.pairwise(sentences))
    for sentence in sentences:
        assert text[sentence.start : sentence.end] == sentence.text
