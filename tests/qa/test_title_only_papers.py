"""A paper without abstract (title only) has no sentences, but dense retrieval still finds it:
its title vector stands in for the centroid of its sentence vectors."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from carqa.index.corpus.models import Paper
from carqa.index.search.reader import ChunkRow, Index, PaperMeta, SentenceRow
from carqa.index.search.vectors import VectorSettings
from carqa.qa.retrieve import HybridRetriever

from tests.index.index_helpers import add_papers, build, new_index_dir

DIM = 8


def _unit(vector: list[float]) -> np.ndarray:
    array = np.array(vector, dtype=np.float32)
    return array / np.linalg.norm(array)


def _paper(pmid: str, title: str, has_abstract: bool) -> PaperMeta:
    return PaperMeta(pmid, title, None, 2020, [], None, [], [], False, True, has_abstract)


@dataclass
class _Index:
    """Paper "1" has an abstract of one sentence; papers "2" and "3" are title-only, "2" with a
    title vector close to the question, "3" with one far from it. No word of the question is in
    any text, so only the vectors can tell them apart."""

    papers: dict[str, Any] = field(default_factory=dict)
    sentences: list[SentenceRow] = field(default_factory=list)
    chunks: list[ChunkRow] = field(default_factory=list)
    sentence_matrix: np.ndarray = field(default_factory=lambda: np.zeros((0, DIM)))
    chunk_ids_read: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.papers = {
            "1": _paper("1", "An invented cohort", True),
            "2": _paper("2", "An invented letter", False),
            "3": _paper("3", "An invented comment", False),
        }
        text = "Invented finding number one was seen in most of the patients."
        self.sentences = [SentenceRow(0, "1", "RESULTS", "RESULTS", 0, 1, text, 0)]
        self.chunks = [
            ChunkRow(0, "1", "RESULTS", "RESULTS", text, 0, 1),
            ChunkRow(1, "2", None, "TITLE", "An invented letter", 1, 1),
            ChunkRow(2, "3", None, "TITLE", "An invented comment", 1, 1),
        ]
        self.sentence_matrix = np.stack([_unit([0.1, 1, 0, 0, 0, 0, 0, 0])])
        self.chunk_matrix = np.stack(
            [
                _unit([0.1, 1, 0, 0, 0, 0, 0, 0]),
                _unit([1, 0.2, 0, 0, 0, 0, 0, 0]),
                _unit([0, 0, 1, 0, 0, 0, 0, 0]),
            ]
        )

    def encode_query(self, text: str) -> np.ndarray:
        return _unit([1, 0, 0, 0, 0, 0, 0, 0])

    def chunk_vectors(self, ids: list[int]) -> np.ndarray:
        self.chunk_ids_read.extend(ids)
        return self.chunk_matrix[ids]


def test_a_title_only_paper_is_found_by_its_title_vector() -> None:
    index = _Index()
    retriever = HybridRetriever(index)
    assert index.chunk_ids_read == [1, 2]  # the title-only papers' chunks, read once, up front
    retrieval = retriever.retrieve("Which zebra?", k=3)
    hits = {hit.pmid: hit for hit in retrieval.papers}
    assert hits["2"].centroid > 0.95  # its title vector: cosine 0.98 to the question
    assert hits["3"].centroid == 0.0
    assert hits["2"].dense == hits["3"].dense == -1.0  # no sentence to quote
    assert retrieval.pmids.index("2") < retrieval.pmids.index("3")
    assert index.chunk_ids_read == [1, 2]  # answering reads no chunk vectors


def test_papers_with_an_abstract_keep_the_centroid_of_their_sentences() -> None:
    index = _Index()
    retrieval = HybridRetriever(index).retrieve("Which zebra?", k=3)
    with_abstract = next(hit for hit in retrieval.papers if hit.pmid == "1")
    expected = float(index.sentence_matrix[0] @ index.encode_query(""))
    assert with_abstract.centroid == pytest.approx(expected, abs=1e-6)
    assert with_abstract.dense == pytest.approx(expected, abs=1e-6)


def test_a_built_index_with_approximate_vector_indexes_finds_a_title_only_paper(
    small_index_dir: Path, tmp_path: Path
) -> None:
    """End to end, with IVF chunk and sentence indexes: the title vector comes back from the
    approximate chunk index (float16 codes) and gives the title-only paper, whose title the
    question paraphrases, the best centroid score of the corpus."""
    index_dir = new_index_dir(small_index_dir, tmp_path / "ivf")
    letter = Paper(pmid="90900001", title="Invented zebrafish model of tumour lysis", year=2024)
    add_papers(index_dir, [letter])
    build(index_dir, vector_settings=VectorSettings(ann_threshold=10, train_size=1000))
    index = Index.open(index_dir)
    assert index.manifest["vectors"]["chunks"]["kind"] == "ivf"
    assert index.chunk_matrix is None  # nothing flat to read: the id map path is used
    retrieval = HybridRetriever(index).retrieve("zebrafish tumour lysis model", k=len(index.papers))
    hits = {hit.pmid: hit for hit in retrieval.papers}
    assert hits["90900001"].centroid > 0.8  # 0.91: its title vector, decoded from float16
    assert hits["90900001"].centroid > max(
        h.centroid for h in hits.values() if h.pmid != "90900001"
    )
    assert hits["90900001"].dense == -1.0  # still no sentence to quote
