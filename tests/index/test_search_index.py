"""Opening a built index and searching it: the contract retrieval and the API rely on."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from carqa.index.search.reader import ChunkRow, Index, PaperMeta, SentenceRow

from carqa.errors import IndexNotFound


def test_open_loads_papers_chunks_sentences(small_index: Index) -> None:
    assert len(small_index.papers) == 22
    assert all(isinstance(p, PaperMeta) for p in small_index.papers.values())
    seeds = [p for p in small_index.papers.values() if p.is_seed]
    assert [p.pmid for p in seeds] == ["90000001"]
    assert sum(p.cited_by_seed for p in small_index.papers.values()) == 20
    assert all(isinstance(c, ChunkRow) for c in small_index.chunks)
    assert [c.id for c in small_index.chunks] == list(range(len(small_index.chunks)))
    assert [s.id for s in small_index.sentences] == list(range(len(small_index.sentences)))
    assert all(isinstance(s, SentenceRow) for s in small_index.sentences)


def test_sentence_matrix_is_normalised_float32(small_index: Index) -> None:
    matrix = small_index.sentence_matrix
    assert matrix.dtype == np.float32
    assert matrix.shape == (len(small_index.sentences), 384)
    np.testing.assert_allclose(np.linalg.norm(matrix, axis=1), 1.0, atol=1e-5)


def test_chunk_sentence_ranges_point_at_its_sentences(small_index: Index) -> None:
    for chunk in small_index.chunks:
        sentences = small_index.sentences[chunk.sentence_start : chunk.sentence_end]
        assert (
            " ".join(s.text for s in sentences) == chunk.text or chunk.section_category == "TITLE"
        )
        assert all(s.pmid == chunk.pmid for s in sentences)
        assert all(s.section_label == chunk.section_label for s in sentences)


def test_sentence_positions_count_within_paper(small_index: Index) -> None:
    by_paper: dict[str, list[SentenceRow]] = {}
    for sentence in small_index.sentences:
        by_paper.setdefault(sentence.pmid, []).append(sentence)
    for rows in by_paper.values():
        assert [s.position for s in rows] == list(range(len(rows)))
        assert {s.count for s in rows} == {len(rows)}


def test_sections_round_trip(small_index: Index) -> None:
    sections = small_index.sections("90000002")
    assert [s.label for s in sections][:2] == ["BACKGROUND", "METHODS"]
    assert small_index.sections("does-not-exist") == []


def test_query_finds_the_relapse_paper(small_index: Index) -> None:
    vector = small_index.encode_query("Why do patients relapse after CD19 CAR T cells?")
    assert vector.shape == (384,) and vector.dtype == np.float32
    assert abs(float(np.linalg.norm(vector)) - 1.0) < 1e-5
    top_chunk, _score = small_index.search_chunks(vector, 1)[0]
    assert "relapse" in small_index.chunks[top_chunk].text.lower()
    hits = small_index.search_sentences(vector, 5)
    assert len(hits) == 5 and hits[0][1] >= hits[-1][1]
    # search_sentences agrees with the in-memory matrix
    best = int(np.argmax(small_index.sentence_matrix @ vector))
    assert hits[0][0] == best


def test_encode_matches_encode_query(small_index: Index) -> None:
    texts = ["CAR T cells", "cytokine release syndrome after infusion"]
    batch = small_index.encode(texts)
    assert batch.shape == (2, 384)
    np.testing.assert_allclose(batch[1], small_index.encode_query(texts[1]), atol=1e-5)


def test_missing_index_is_not_found_with_hint(tmp_path: Path) -> None:
    with pytest.raises(IndexNotFound) as error:
        Index.open(tmp_path / "nowhere")
    assert "carqa build" in (error.value.hint or "")
    with pytest.raises(IndexNotFound):
        Index.open(tmp_path)


def test_open_a_file_says_it_is_not_a_directory(tmp_path: Path) -> None:
    """`carqa ask --index-dir corpus.jsonl` said the file "holds no built index" and hinted
    `carqa build --index-dir corpus.jsonl`, which cannot work either."""
    not_a_dir = tmp_path / "corpus.jsonl"
    not_a_dir.write_text("{}\n")
    with pytest.raises(IndexNotFound) as error:
        Index.open(not_a_dir)
    assert error.value.message == f"{not_a_dir} is a file, not a directory."
    assert f"--index-dir {not_a_dir}" not in (error.value.hint or "")
    assert "--index-dir" in (error.value.hint or "")


def test_chunk_matrix_matches_chunk_search(small_index: Index) -> None:
    matrix = small_index.chunk_matrix
    assert matrix is not None and matrix.shape == (len(small_index.chunks), 384)
    assert not matrix.flags.writeable  # a view of FAISS's storage, not a copy to mutate
    vector = small_index.encode_query("cytokine release syndrome grading")
    best = int(np.argmax(matrix @ vector))
    assert small_index.search_chunks(vector, 1)[0][0] == best
    ids = [best, 0]
    np.testing.assert_array_equal(small_index.chunk_vectors(ids), matrix[ids])
