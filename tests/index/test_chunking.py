"""Structure-aware chunking: sections are never mixed, chunks are whole sentences."""

from __future__ import annotations

import itertools

from carqa.index.corpus.models import Paper, Section
from carqa.index.search.chunking import TITLE_CATEGORY, ChunkSettings, chunk_paper
from hypothesis import given, settings
from hypothesis import strategies as st

PAPER = Paper(
    pmid="1",
    title="An invented trial of CD19 CAR T cells",
    sections=[
        Section(
            "Relapse is common. Few options exist. New therapies are needed.",
            "BACKGROUND",
            "BACKGROUND",
        ),
        Section(
            "We treated 30 patients (median age 12 y.) with CAR T cells.", "METHODS", "METHODS"
        ),
        Section(
            "Remission was reached in 27 of 30 patients (90%). Cytokine release syndrome was "
            "mild in most, e.g. grade 1 or 2. Two patients relapsed with CD19-negative disease.",
            "RESULTS",
            "RESULTS",
        ),
    ],
)


def test_chunks_never_span_sections_and_keep_labels() -> None:
    pieces = chunk_paper(PAPER, ChunkSettings(chunk_size=60, chunk_overlap=0))
    for chunk in pieces.chunks:
        section = PAPER.sections[chunk.section_position]
        assert chunk.text in " ".join(section.text.split())
        assert chunk.section_label == section.label
        assert chunk.section_category == section.category
    # a huge chunk size still gives one chunk per section, not one per paper
    big = chunk_paper(PAPER, ChunkSettings(chunk_size=100_000))
    assert [c.section_label for c in big.chunks] == ["BACKGROUND", "METHODS", "RESULTS"]


def test_chunks_are_runs_of_whole_sentences() -> None:
    pieces = chunk_paper(PAPER, ChunkSettings(chunk_size=80, chunk_overlap=0))
    texts = [s.text for s in pieces.sentences]
    for chunk in pieces.chunks:
        assert chunk.text == " ".join(texts[chunk.sentence_start : chunk.sentence_end])
    covered = [i for c in pieces.chunks for i in range(c.sentence_start, c.sentence_end)]
    assert covered == list(range(len(texts)))  # no overlap asked: each sentence once, in order


def test_overlap_repeats_trailing_sentences() -> None:
    paper = Paper(
        pmid="6",
        sections=[Section("One short. Two short. Three short. Four short. Five short.", "R")],
    )
    pieces = chunk_paper(paper, ChunkSettings(chunk_size=35, chunk_overlap=12))
    results = pieces.chunks
    assert [(c.sentence_start, c.sentence_end) for c in results] == [(0, 3), (2, 4), (3, 5)]
    assert any(b.sentence_start < a.sentence_end for a, b in itertools.pairwise(results))
    for sentence in pieces.sentences:
        chunk = pieces.chunks[sentence.chunk]
        assert chunk.sentence_start <= sentence.position < chunk.sentence_end


def test_title_is_embedded_with_each_chunk_but_not_part_of_the_text() -> None:
    pieces = chunk_paper(PAPER)
    for chunk in pieces.chunks:
        assert chunk.embed_text == f"{PAPER.title}\n{chunk.text}"
        assert PAPER.title not in chunk.text
    untitled = Paper(pmid="2", sections=[Section("Only text.")])
    (chunk,) = chunk_paper(untitled).chunks
    assert chunk.embed_text == chunk.text == "Only text."


def test_sentence_positions_and_offsets() -> None:
    pieces = chunk_paper(PAPER)
    assert [s.position for s in pieces.sentences] == list(range(len(pieces.sentences)))
    assert {s.count for s in pieces.sentences} == {len(pieces.sentences)}
    for sentence in pieces.sentences:
        section = PAPER.sections[sentence.section_position]
        assert section.text[sentence.char_start : sentence.char_end] == sentence.text
    assert pieces.sentences[3].text == "We treated 30 patients (median age 12 y.) with CAR T cells."


def test_title_only_paper_gets_one_title_chunk_and_no_sentences() -> None:
    pieces = chunk_paper(Paper(pmid="3", title="A title without an abstract"))
    assert pieces.sentences == []
    (chunk,) = pieces.chunks
    assert chunk.section_category == TITLE_CATEGORY
    assert (chunk.sentence_start, chunk.sentence_end) == (0, 0)
    assert chunk_paper(Paper(pmid="4")).chunks == []


def test_repeated_sentences_map_to_the_right_ranges() -> None:
    paper = Paper(pmid="5", sections=[Section("Same. Same. Same. Different one here. Same.")])
    pieces = chunk_paper(paper, ChunkSettings(chunk_size=12, chunk_overlap=6))
    texts = [s.text for s in pieces.sentences]
    for chunk in pieces.chunks:
        assert chunk.text == " ".join(texts[chunk.sentence_start : chunk.sentence_end])


words = st.sampled_from(["CAR", "T", "cells", "e.g.", "relapse", "(n = 3)", "0.05", "Fig.", "2"])
sentence = st.lists(words, min_size=1, max_size=12).map(lambda w: " ".join(w).capitalize() + ".")
section_text = st.lists(sentence, min_size=1, max_size=8).map(" ".join)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(section_text, min_size=1, max_size=4),
    st.integers(20, 400),
    st.integers(0, 100),
)
def test_chunking_invariants(sections: list[str], size: int, overlap: int) -> None:
    paper = Paper(
        pmid="9", title="T", sections=[Section(t, f"L{i}") for i, t in enumerate(sections)]
    )
    pieces = chunk_paper(
        paper, ChunkSettings(chunk_size=size, chunk_overlap=min(overlap, size - 1))
    )
    texts = [s.text for s in pieces.sentences]
    starts = [c.sentence_start for c in pieces.chunks]
    assert starts == sorted(starts)
    for chunk in pieces.chunks:
        run = pieces.sentences[chunk.sentence_start : chunk.sentence_end]
        assert run and {s.section_position for s in run} == {chunk.section_position}
        assert chunk.text == " ".join(texts[chunk.sentence_start : chunk.sentence_end])
    # every sentence is in at least one chunk
    covered = {i for c in pieces.chunks for i in range(c.sentence_start, c.sentence_end)}
    assert covered == set(range(len(texts)))
