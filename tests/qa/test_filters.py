"""``HybridRetriever.mask``: which papers each filter lets through, on a stand-in index whose
papers cover the awkward cases (no year, the seed, cited and uncited papers)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from carqa.index.search.reader import PaperMeta
from carqa.qa.retrieve import HybridRetriever
from carqa.qa.types import Filters

DIM = 4


def _paper(pmid: str, year: int | None, *, seed: bool = False, cited: bool = False) -> PaperMeta:
    title = f"Invented paper {pmid}"
    return PaperMeta(pmid, title, None, year, [], None, [], [], seed, cited, False)


@dataclass
class _Index:
    """Title-only papers: "1" the seed (2019), "2" cited (2015), "3" cited without a year,
    "4" uncited (2022)."""

    papers: dict[str, Any] = field(
        default_factory=lambda: {
            "1": _paper("1", 2019, seed=True),
            "2": _paper("2", 2015, cited=True),
            "3": _paper("3", None, cited=True),
            "4": _paper("4", 2022),
        }
    )
    sentences: list[Any] = field(default_factory=list)
    chunks: list[Any] = field(default_factory=list)
    sentence_matrix: np.ndarray = field(default_factory=lambda: np.zeros((0, DIM), np.float32))

    def encode_query(self, text: str) -> np.ndarray:
        return np.array([1, 0, 0, 0], dtype=np.float32)

    def chunk_vectors(self, ids: list[int]) -> np.ndarray:
        return np.zeros((len(ids), DIM), dtype=np.float32)

    def sections(self, pmid: str) -> list[Any]:
        return []  # title-only papers


def _passing(filters: Filters | None) -> list[str]:
    retriever = HybridRetriever(_Index())
    allowed = retriever.mask(filters).tolist()
    return [p for p, ok in zip(retriever.pmids, allowed, strict=True) if ok]


def test_a_paper_without_a_year_fails_every_year_bound() -> None:
    assert _passing(Filters(year_to=2030)) == ["1", "2", "4"]
    assert _passing(Filters(year_from=2000)) == ["1", "2", "4"]
    # Stored as -1 inside the mask: a bound below that must not let it through.
    assert _passing(Filters(year_from=-5)) == ["1", "2", "4"]
    assert _passing(Filters(year_from=-5, year_to=2030)) == ["1", "2", "4"]
    assert _passing(None) == ["1", "2", "3", "4"]


def test_cited_only_on_a_corpus_without_a_seed_says_why_nothing_matched() -> None:
    from carqa.qa.answer import NO_PAPERS_MESSAGE, NO_SEED_MESSAGE
    from carqa.qa.engine import Engine

    unseeded = _Index(papers={"1": _paper("1", 2019), "2": _paper("2", 2020)})
    answer = Engine(unseeded).ask("Invented question?", filters=Filters(cited_only=True))
    assert answer.abstained and answer.message == NO_SEED_MESSAGE
    # With a seed review the cited-only filter can match: the generic message stays.
    seeded = Engine(_Index())
    answer = seeded.ask("Invented question?", filters=Filters(cited_only=True, year_from=2030))
    assert answer.abstained and answer.message == NO_PAPERS_MESSAGE


def test_filter_values_of_the_wrong_type_are_refused_not_misread() -> None:
    import pytest

    from carqa.errors import InputError

    with pytest.raises(InputError, match=r"(?s)pmids must be a list of PMIDs.*\['2'\]"):
        Filters(pmids="2")  # type: ignore[arg-type]
    with pytest.raises(InputError, match="exclude_pmids must be a list"):
        Filters(exclude_pmids=2)  # type: ignore[arg-type]
    with pytest.raises(InputError, match="year_from must be a year"):
        Filters(year_from="2015")  # type: ignore[arg-type]
    with pytest.raises(InputError, match="year_to must be a year"):
        Filters(year_to=True)  # type: ignore[arg-type]
    # Any iterable of ids works, numbers included.
    assert _passing(Filters(pmids=("2", 4), exclude_pmids={"4"})) == ["2"]  # type: ignore[arg-type]
