"""The biomedical sentence splitter: abbreviations, decimals, initials, parentheses, offsets."""

from __future__ import annotations

import itertools

import pytest
from carqa.index.search.sentences import split_sentences
from hypothesis import given
from hypothesis import strategies as st


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


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # Abbreviations that also end sentences: before a capitalised word they do.
        (
            "Swabs grew Lactobacillus spp. The pH was low. Other spp. were rare.",
            ["Swabs grew Lactobacillus spp.", "The pH was low.", "Other spp. were rare."],
        ),
        (
            "Clamping lasted 30 min. From 2004 on, the limit was min. 20 s.",
            ["Clamping lasted 30 min.", "From 2004 on, the limit was min. 20 s."],
        ),
        (
            "The pump was made by Acme Inc. He has no conflicts. Bolt Co. Ltd was not involved.",
            [
                "The pump was made by Acme Inc.",
                "He has no conflicts.",
                "Bolt Co. Ltd was not involved.",
            ],
        ),
        # A closed-class sentence opener ends a sentence even after an initial or "U.S.".
        (
            "Relapse was rare in group B. The other arm fared worse. J. B. Smith agreed.",
            ["Relapse was rare in group B.", "The other arm fared worse.", "J. B. Smith agreed."],
        ),
        (
            "Costs were higher in the U.S. This was expected. The U.S. Army paid.",
            ["Costs were higher in the U.S.", "This was expected.", "The U.S. Army paid."],
        ),
        # An upper-case acronym is not the abbreviation it spells ("MS" is not "Ms.").
        (
            "Fatigue is common in MS. Sleep helps. Ms. Doe and Dr. Roe wrote it.",
            ["Fatigue is common in MS.", "Sleep helps.", "Ms. Doe and Dr. Roe wrote it."],
        ),
        # Units and names joined by "/" or "&" end with a letter, not an initial.
        (
            "Flow was 180 mL/min. Urea fell below 7 mmol/L. It was stored at R&D. Nobody objected.",
            [
                "Flow was 180 mL/min.",
                "Urea fell below 7 mmol/L.",
                "It was stored at R&D.",
                "Nobody objected.",
            ],
        ),
        # Lower-case dotted abbreviations ("s.c.", "i.v.", "s.l.") continue the sentence.
        (
            "Mice got s.c. IFN-gamma or i.v. PBS daily. Weights were stable.",
            ["Mice got s.c. IFN-gamma or i.v. PBS daily.", "Weights were stable."],
        ),
        (
            "Most were Culex pipiens s.l. The rest were Aedes.",
            ["Most were Culex pipiens s.l.", "The rest were Aedes."],
        ),
        # A genus initial before a bracketed subgenus is not a sentence end.
        (
            "It differs from all other T. (Tyrannus) species. Its wings are pale.",
            ["It differs from all other T. (Tyrannus) species.", "Its wings are pale."],
        ),
        # Enumeration labels stay with their item.
        (
            "Aims: 1. To test safety. 2. To test dosing; iv. Not tested.",
            ["Aims: 1. To test safety.", "2. To test dosing; iv. Not tested."],
        ),
        (
            "The ratio was 3:1. Grade was 2. Dose was 10 mg; 1. Patients consented.",
            ["The ratio was 3:1.", "Grade was 2.", "Dose was 10 mg; 1. Patients consented."],
        ),
        # Bullets, Greek-initial words and a stripped label's ":" start sentences.
        (
            "We did two things. • We dosed mice. • We weighed them.",
            ["We did two things.", "• We dosed mice.", "• We weighed them."],
        ),
        (
            "Beta blockers were used. β-blockers lower pulse. μ was fixed.",
            ["Beta blockers were used.", "β-blockers lower pulse.", "μ was fixed."],
        ),
        (
            "Mice were followed to day 90. : Weights rose.",
            ["Mice were followed to day 90.", ": Weights rose."],
        ),
        # A full stop without a space before a capitalised word (a typo or lost markup).
        (
            "Rates were 5% and 9%, respectively.Mean age was 60. See Epi.Lens and e.g.Foo.",
            [
                "Rates were 5% and 9%, respectively.",
                "Mean age was 60.",
                "See Epi.Lens and e.g.Foo.",
            ],
        ),
        (
            "Its value is unclear.AIM: To test it. Gels were poor.STUDY DESIGN/ Mice were used. "
            "We gave lip.PZQ+HBO daily.",
            [
                "Its value is unclear.",
                "AIM: To test it.",
                "Gels were poor.",
                "STUDY DESIGN/ Mice were used.",
                "We gave lip.PZQ+HBO daily.",
            ],
        ),
        # Unchanged behaviour around these rules.
        (
            "Isolates of E. coli and S. aureus grew. We cultured S. aureus. It grew.",
            ["Isolates of E. coli and S. aureus grew.", "We cultured S. aureus.", "It grew."],
        ),
        (
            "Doses were approx. 5 mg (ca. 0.1 mg/kg), i.e. low. See vol. 3, no. 12. Done.",
            ["Doses were approx. 5 mg (ca. 0.1 mg/kg), i.e. low.", "See vol. 3, no. 12.", "Done."],
        ),
        (
            "Two aims: (i) safety, (ii) efficacy. Both were met, p<0.05. Sizes were n = 12.",
            [
                "Two aims: (i) safety, (ii) efficacy.",
                "Both were met, p<0.05.",
                "Sizes were n = 12.",
            ],
        ),
        (
            "RESULTS: Ten mice responded. CONCLUSIONS: It works [12]. More work is needed [13].",
            [
                "RESULTS: Ten mice responded.",
                "CONCLUSIONS: It works [12].",
                "More work is needed [13].",
            ],
        ),
    ],
)
def test_splits_rules_from_corpus_review(text: str, expected: list[str]) -> None:
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


@given(st.text(alphabet=st.sampled_from(list("Ab. ?!()e.g1\n•:β/T")), max_size=200))
def test_sentences_cover_all_non_space_text_in_order(text: str) -> None:
    sentences = split_sentences(text)
    assert "".join(s.text for s in sentences).replace(" ", "").replace("\n", "") == "".join(
        text.split()
    )
    assert all(s.text == s.text.strip() and s.text for s in sentences)
    assert all(a.end <= b.start for a, b in itertools.pairwise(sentences))
    for sentence in sentences:
        assert text[sentence.start : sentence.end] == sentence.text
