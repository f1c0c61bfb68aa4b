"""``meta.sqlite``: the papers, sections, chunks and sentences of one build, and its writer.

The vectors are rows of these tables by position: chunk ``i`` of ``chunks.faiss`` is
``chunks.id = i``, row ``j`` of ``sentences.npy`` is ``sentences.id = j``. A chunk names the
range of sentences it holds (``sentence_start``/``sentence_end``), a sentence the chunk it
belongs to. :class:`Rows` collects them in id order while the build chunks the corpus;
:func:`write_meta` writes them in one transaction. The reader
(:mod:`carqa.index.search.reader`) reads them by key when a question needs them.
"""

from __future__ import annotations

import os
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from carqa.index.corpus.models import Paper
from carqa.index.corpus.store import paper_row, section_rows
from carqa.index.search.chunking import ChunkSettings
from carqa.index.search.embedding import normalise
from carqa.index.search.manifest import FORMAT_VERSION

SCHEMA = """
CREATE TABLE info (key TEXT PRIMARY KEY, value TEXT);
CREATE TABLE papers (
    pmid TEXT PRIMARY KEY, title TEXT, journal TEXT, year INTEGER, authors TEXT NOT NULL,
    doi TEXT, mesh TEXT NOT NULL, publication_types TEXT NOT NULL,
    is_seed INTEGER NOT NULL, cited_by_seed INTEGER NOT NULL, has_abstract INTEGER NOT NULL,
    relation TEXT NOT NULL
);
CREATE TABLE sections (
    pmid TEXT NOT NULL, position INTEGER NOT NULL, label TEXT, category TEXT,
    text TEXT NOT NULL, PRIMARY KEY (pmid, position)
);
CREATE TABLE chunks (
    id INTEGER PRIMARY KEY, pmid TEXT NOT NULL, section_position INTEGER NOT NULL,
    section_label TEXT, section_category TEXT, text TEXT NOT NULL,
    sentence_start INTEGER NOT NULL, sentence_end INTEGER NOT NULL
);
CREATE TABLE sentences (
    id INTEGER PRIMARY KEY, pmid TEXT NOT NULL, section_position INTEGER NOT NULL,
    section_label TEXT, section_category TEXT, position INTEGER NOT NULL,
    count INTEGER NOT NULL, text TEXT NOT NULL, char_start INTEGER NOT NULL,
    char_end INTEGER NOT NULL, chunk_id INTEGER NOT NULL
);
"""


@dataclass
class Rows:
    """Everything that goes into meta.sqlite, in id order."""

    papers: list[tuple[Any, ...]] = field(default_factory=list)
    sections: list[tuple[Any, ...]] = field(default_factory=list)
    chunks: list[tuple[Any, ...]] = field(default_factory=list)
    sentences: list[tuple[Any, ...]] = field(default_factory=list)
    chunk_texts: list[str] = field(default_factory=list)  # title + text, by chunk id
    chunk_titles: list[str | None] = field(default_factory=list)  # the paper's title
    sentence_texts: list[str] = field(default_factory=list)

    def add_paper(self, paper: Paper, *, is_seed: bool, cited_by_seed: bool) -> None:
        """The paper's row and its sections' rows."""
        flags = (int(is_seed), int(cited_by_seed), int(paper.has_abstract))
        relation = paper.relation or ("seed" if is_seed else "cited" if cited_by_seed else "file")
        self.papers.append((*paper_row(paper), *flags, relation))
        self.sections.extend(section_rows(paper))

    def texts_to_embed(self, settings: ChunkSettings) -> list[str]:
        """Sentences, then either the chunk texts or the (distinct) titles."""
        if settings.chunk_vectors == "embedded":
            return self.sentence_texts + self.chunk_texts
        titles = {
            title
            for chunk, title in zip(self.chunks, self.chunk_titles, strict=True)
            if title and (settings.title_prefix or chunk[6] == chunk[7])
        }
        return self.sentence_texts + sorted(titles)

    def chunk_vectors(
        self, settings: ChunkSettings, texts: list[str], vectors: np.ndarray
    ) -> np.ndarray:
        """One normalised vector per chunk from the vectors of :meth:`texts_to_embed`."""
        n_sentences = len(self.sentence_texts)
        if settings.chunk_vectors == "embedded":
            return vectors[n_sentences:]
        title_row = {text: n_sentences + i for i, text in enumerate(texts[n_sentences:])}
        out = np.zeros((len(self.chunks), vectors.shape[1]), dtype=np.float32)
        for i, chunk in enumerate(self.chunks):
            start, end = chunk[6], chunk[7]
            parts = vectors[start:end].sum(axis=0)
            count = end - start
            title = self.chunk_titles[i]
            if title and title in title_row and (settings.title_prefix or count == 0):
                parts = parts + vectors[title_row[title]]
                count += 1
            out[i] = parts / max(count, 1)
        return normalise(out)


def write_meta(path: Path, rows: Rows) -> None:
    """Write ``rows`` into a new SQLite file at ``path`` (one transaction, then fsync)."""
    conn = sqlite3.connect(path)
    try:
        with conn:
            conn.executescript(SCHEMA)
            conn.execute("INSERT INTO info VALUES ('format_version', ?)", (str(FORMAT_VERSION),))
            conn.executemany(f"INSERT INTO papers VALUES ({_marks(12)})", rows.papers)
            conn.executemany(f"INSERT INTO sections VALUES ({_marks(5)})", rows.sections)
            conn.executemany(f"INSERT INTO chunks VALUES ({_marks(8)})", rows.chunks)
            conn.executemany(f"INSERT INTO sentences VALUES ({_marks(11)})", rows.sentences)
    finally:
        conn.close()
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())


def _marks(n: int) -> str:
    return ",".join("?" * n)
