"""``carqa.qa.measures``: each topical-question measure on hand-made answers."""

from __future__ import annotations

import pytest
from carqa.qa import measures


def test_average_precision_divides_by_the_gold_papers_it_could_find() -> None:
    # Gold at ranks 1 and 3 of three gold papers: (1/1 + 2/3) / 3.
    assert measures.average_precision_at_10(["a", "x", "b"], ["a", "b", "c"]) == pytest.approx(
        (1 + 2 / 3) / 3
    )
    # More than ten gold papers: the divisor stops at ten, so a perfect top ten scores 1.
    gold = [str(i) for i in range(20)]
    assert measures.average_precision_at_10(gold[:10], gold) == pytest.approx(1.0)
    # Past rank ten nothing counts; a repeated pmid counts once.
    assert measures.average_precision_at_10(["x"] * 10 + ["a"], ["a"]) == 0.0
    assert measures.average_precision_at_10(["a", "a"], ["a", "b"]) == pytest.approx(0.5)


def test_success_at_1_looks_at_the_top_paper_only() -> None:
    assert measures.success_at_1(["a", "b"], ["a"]) == 1.0
    assert measures.success_at_1(["b", "a"], ["a"]) == 0.0
    assert measures.success_at_1([], ["a"]) == 0.0


def test_snippet_overlap_is_a_share_of_the_shorter_text() -> None:
    snippet = "Drug Z lowered relapse rates in adults with disease Q over two years."
    # A short cited sentence wholly inside the snippet overlaps fully.
    assert measures.token_overlap("Drug Z lowered relapse rates.", snippet) == 1.0
    cited = ["Unrelated words here.", "Drug Z lowered relapse rates."]
    assert measures.snippet_hit(cited, [snippet]) == 1.0
    # Only the first three cited sentences count.
    cited = ["one thing", "two things", "three things", "Drug Z lowered relapse rates."]
    assert measures.snippet_hit(cited, [snippet]) == 0.0
    # Half the words in common is below the 0.6 bar.
    assert measures.snippet_hit(["Drug Z raised costs sharply."], [snippet]) == 0.0


def test_exact_factoid_finds_a_synonym_as_whole_words_ignoring_case_and_punctuation() -> None:
    exact = [["PD-L1 status", "programmed death ligand 1"]]
    assert measures.exact_score("It assesses pd l1 status [1].", "factoid", exact) == 1.0
    assert measures.exact_score("It assesses PD-L12 levels [1].", "factoid", exact) == 0.0


def test_exact_list_is_the_share_of_items_found() -> None:
    exact = [["alpha"], ["beta", "b"], ["gamma"], ["delta"]]
    assert measures.exact_score("Alpha and beta were seen.", "list", exact) == 0.5


def test_exact_does_not_apply_to_yes_no_or_summary_questions() -> None:
    assert measures.exact_score("yes", "yesno", "yes") is None
    assert measures.exact_score("text", "summary", None) is None


def test_rouge2_is_clipped_bigram_recall_without_citation_markers() -> None:
    reference = "the drug works the drug works"
    # Reference bigrams: (the drug) x2, (drug works) x2, (works the) x1 = 5.
    assert measures.rouge2("The drug works [1].", reference) == pytest.approx(2 / 5)
    assert measures.rouge2("", reference) == 0.0
    # The marker's number is not a word of the answer: "works 1" is no bigram.
    assert measures.rouge2("works [1] the", "works the") == 1.0


def test_cite_precision_counts_cited_sentences_from_gold_papers() -> None:
    assert measures.cite_precision(["a", "a", "x"], ["a"]) == pytest.approx(2 / 3)
    assert measures.cite_precision([], ["a"]) is None
