"""Abstention ignores sentence fragments: a design label or place name ("Melbourne, Australia.")
can sit close to an unrelated question, but it cannot support an answer."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from carqa.index.search.reader import ChunkRow, PaperMeta, SentenceRow
from carqa.qa.retrieve import MIN_EVIDENCE_WORDS, HybridRetriever

DIM = 8


def _unit(vector: list[float]) -> np.ndarray:
    array = np.array(vector, dtype=np.float32)
    return array / np.linalg.norm(array)


@dataclass
class _Index:
    """The smallest IndexLike: one paper, two sentences, one chunk per sentence."""

    setting_text: str
    papers: dict[str, Any] = field(default_factory=dict)
    sentences: list[SentenceRow] = field(default_factory=list)
    chunks: list[ChunkRow] = field(default_factory=list)
    sentence_matrix: np.ndarray = field(default_factory=lambda: np.zeros((0, DIM)))
    query: np.ndarray = field(default_factory=lambda: _unit([1, 0, 0, 0, 0, 0, 0, 0]))

    def __post_init__(self) -> None:
        self.papers = {
            "1": PaperMeta(
                "1", "An invented cohort", None, 2020, [], None, [], [], False, True, True
            )
        }
        texts = [
            ("SETTING", self.setting_text),
            ("RESULTS", "Invented finding number one was seen in most of the patients."),
        ]
        self.sentences = [
            SentenceRow(i, "1", label, label, i, len(texts), text, i)
            for i, (label, text) in enumerate(texts)
        ]
        self.chunks = [
            ChunkRow(i, "1", label, label, text, i, i + 1) for i, (label, text) in enumerate(texts)
        ]
        # The setting is close to the question; the finding is not.
        self.sentence_matrix = np.stack(
            [_unit([0.9, 0.44, 0, 0, 0, 0, 0, 0]), _unit([0.2, 0, 0.98, 0, 0, 0, 0, 0])]
        )
        self.chunk_matrix = self.sentence_matrix.copy()

    def encode_query(self, text: str) -> np.ndarray:
        return self.query

    def chunk_vectors(self, ids: list[int]) -> np.ndarray:
        return self.chunk_matrix[ids]


def test_a_fragment_does_not_make_retrieval_confident() -> None:
    index = _Index(setting_text="Melbourne, Australia.")
    assert len(index.setting_text.split()) < MIN_EVIDENCE_WORDS
    retrieval = HybridRetriever(index).retrieve("What is the capital of Australia?", k=1)
    assert retrieval.pmids == ["1"]  # the fragment still ranks its paper
    assert retrieval.papers[0].dense > 0.85
    assert retrieval.best_similarity < 0.25  # but only the real sentence counts


def test_a_real_sentence_does() -> None:
    index = _Index(setting_text="The study took place in Melbourne, Australia.")
    retrieval = HybridRetriever(index).retrieve("What is the capital of Australia?", k=1)
    assert retrieval.best_similarity > 0.85
