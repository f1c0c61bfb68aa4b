"""The engine's seam to the index: the real index and the tests' stand-ins offer the same calls.

:class:`carqa.qa.engine.Engine` and :class:`carqa.qa.retrieve.HybridRetriever` take any object
with the members of :class:`EngineIndex` / :class:`IndexLike`. Tests of filters, abstention and
title-only papers pass small hand-made indexes; these checks keep them honest, so a member the
real :class:`carqa.index.search.reader.Index` gains or renames is noticed here, not as a stand-in
that quietly tests something the product no longer does.
"""

from __future__ import annotations

import inspect
from typing import Any, Protocol, runtime_checkable

import pytest
from carqa.qa.engine import EngineIndex
from carqa.qa.retrieve import IndexLike


@runtime_checkable
class _CheckedIndexLike(IndexLike, Protocol):
    """IndexLike, checkable with isinstance."""


def _stand_ins() -> dict[str, Any]:
    from tests.qa import test_abstention_fragments, test_filters, test_title_only_papers

    return {
        "filters": test_filters._Index(),
        "abstention": test_abstention_fragments._Index("An invented setting sentence."),
        "title-only": test_title_only_papers._Index(),
    }


@pytest.mark.parametrize("name", ["filters", "abstention", "title-only"])
def test_retrieval_stand_ins_are_index_like(name: str) -> None:
    assert isinstance(_stand_ins()[name], _CheckedIndexLike)


def test_the_engine_stand_in_is_an_engine_index() -> None:
    assert isinstance(_stand_ins()["filters"], EngineIndex)
    # The check can fail: a retrieval-only stand-in has no sections for Engine.paper.
    assert not isinstance(_stand_ins()["abstention"], EngineIndex)


def test_the_real_index_is_an_engine_index(small_index: Any) -> None:
    assert isinstance(small_index, EngineIndex)
    assert isinstance(small_index, _CheckedIndexLike)
    for name in ("encode_query", "chunk_vectors", "sections"):
        real = [p.name for p in inspect.signature(getattr(small_index, name)).parameters.values()]
        declared = list(inspect.signature(getattr(EngineIndex, name)).parameters)[1:]
        assert real == declared, name
