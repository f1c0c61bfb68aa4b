"""``CARQA_BACKEND=milvus`` (Milvus Lite here) answers as the embedded backend does.

Skipped when the Milvus client or Milvus Lite is not installed (they are the optional ``[scale]``
extra; CI installs it). The corpus is the invented fixture index every answering test uses.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("pymilvus", reason='the Milvus client is not installed ("carqa[scale]")')
pytest.importorskip("milvus_lite", reason='Milvus Lite is not installed ("carqa[scale]")')

from carqa.index.search import milvus
from carqa.index.search.backends import MilvusBackend, open_backend
from carqa.qa.chat import ChatService
from carqa.qa.engine import Engine
from carqa.qa.retrieve import HybridRetriever
from carqa.qa.sessions import SessionStore
from carqa.qa.types import Filters

from carqa.errors import InputError
from carqa.settings import Settings

QUESTIONS = [
    "Does tisagenlecleucel cause cytokine release syndrome in children?",
    "How is cytokine release syndrome treated?",
    "What is the role of IL-6 in CRS?",
    "Which costimulatory domain do CD19 CAR T cells use?",
    "Do CAR T cells work in solid tumours?",
    "What causes relapse after CD19-directed therapy?",
    "neurotoxicity",
    "What is the capital of Australia?",  # abstains on both
    "Does Kymriah cause CRS?",  # a lexicon name the corpus spells otherwise
]
FILTERS = [
    None,
    Filters(year_from=2017),
    Filters(year_to=2016),
    Filters(cited_only=True, include_seed=False),
    Filters(pmids=["90000002", "90000003", "90000011"]),
    Filters(exclude_pmids=["90000003"]),
    Filters(pmids=[]),
]


@pytest.fixture(scope="module")
def backend(small_index: Any, tmp_path_factory: pytest.TempPathFactory) -> MilvusBackend:
    uri = str(tmp_path_factory.mktemp("milvus") / "milvus.db")
    return MilvusBackend(uri=uri, collection=milvus.collection_name(small_index.manifest))


@pytest.fixture(scope="module")
def milvus_engine(small_index: Any, backend: MilvusBackend) -> Engine:
    return Engine(small_index, backend=backend)


def _comparable(answer: Any) -> dict[str, Any]:
    data = answer.to_dict()
    data.pop("took_ms")
    for citation in data.get("citations", []):
        citation["score"] = round(citation["score"], 4)
    return data


@pytest.mark.parametrize("filters", FILTERS, ids=str)
def test_answers_and_citations_are_the_embedded_backends(
    engine: Engine, milvus_engine: Engine, filters: Filters | None
) -> None:
    for question in QUESTIONS:
        embedded = engine.ask(question, k=5, filters=filters)
        served = milvus_engine.ask(question, k=5, filters=filters)
        assert _comparable(served) == _comparable(embedded), question


def test_abstention_is_the_same(engine: Engine, milvus_engine: Engine) -> None:
    embedded = engine.ask("What is the capital of Australia?")
    served = milvus_engine.ask("What is the capital of Australia?")
    assert embedded.abstained and served.abstained
    assert served.message == embedded.message


def test_chat_follow_ups_are_answered_the_same(
    engine: Engine, milvus_engine: Engine, tmp_path: Path
) -> None:
    turns = ["Does tisagenlecleucel cause cytokine release syndrome?", "and in adults?"]
    answers = []
    for which, service in (("e", engine), ("m", milvus_engine)):
        chat = ChatService(service, SessionStore.open(tmp_path / which))
        session = None
        replies = []
        for message in turns:
            session, answer = chat.reply(message, session)
            replies.append(_comparable(answer))
        answers.append(replies)
    assert answers[0] == answers[1]


@pytest.mark.parametrize("k", [2, 4, 8])
@pytest.mark.parametrize("filters", FILTERS[:4], ids=str)
def test_the_milvus_candidates_are_the_exact_sources(
    engine: Engine, milvus_engine: Engine, k: int, filters: Filters | None
) -> None:
    """With k small against the 22 papers the candidate step really chooses: the same papers,
    centroid cosines and BM25 scores as the exact in-process source."""
    exact, served = engine.retriever, milvus_engine.retriever
    assert served.source.name == "milvus"
    for question in QUESTIONS:
        query = exact.lexical.parse(question)
        vector = exact.encode(query.dense_text)
        allowed = exact.allowed(filters)
        want = exact.source.candidates(query, vector, k, allowed, filters)
        got = served.source.candidates(query, vector, k, allowed, filters)
        np.testing.assert_array_equal(got.papers, want.papers, err_msg=question)
        np.testing.assert_allclose(got.centroid, want.centroid, atol=1e-5)
        np.testing.assert_allclose(got.lexical, want.lexical, rtol=1e-5, atol=1e-5)
        assert got.lexical_max == pytest.approx(want.lexical_max, rel=1e-5, abs=1e-6)


def test_the_collection_is_written_once_per_build(
    small_index: Any, backend: MilvusBackend, milvus_engine: Engine
) -> None:
    """A second open finds the collection whole and does not write it again; a collection
    left half-written (a killed write) is written again."""
    client = milvus.connect(backend.uri)
    docs = HybridRetriever(small_index)._paper_docs()
    assert not milvus.ensure_collection(client, backend.collection, docs)
    client.delete(backend.collection, filter='pmid in ["90000002"]')
    assert milvus.ensure_collection(client, backend.collection, docs)
    assert milvus._count(client, backend.collection) == len(docs.pmids)


def test_the_filters_become_a_milvus_expression() -> None:
    assert milvus.filter_expr(None) is None
    assert milvus.filter_expr(Filters()) is None
    assert milvus.filter_expr(Filters(year_from=2015, year_to=2018)) == (
        "year >= 0 and year >= 2015 and year <= 2018"
    )
    assert milvus.filter_expr(Filters(pmids=["2", " 1"], exclude_pmids=["3"])) == (
        'pmid in ["1","2"] and not (pmid in ["3"])'
    )
    assert milvus.filter_expr(Filters(cited_only=True, include_seed=False)) == (
        "(cited_by_seed or is_seed) and not is_seed"
    )


def test_the_backend_comes_from_the_settings(small_index: Any, tmp_path: Path) -> None:
    manifest = small_index.manifest
    assert open_backend(Settings(), manifest, tmp_path) is None
    chosen = open_backend(Settings(backend="milvus"), manifest, tmp_path)
    assert isinstance(chosen, MilvusBackend)
    assert chosen.uri == str(tmp_path / "milvus.db")
    assert chosen.collection == milvus.collection_name(manifest)
    other = open_backend(
        Settings(backend="milvus", milvus_uri="http://milvus:19530", milvus_index="hnsw"),
        manifest,
        tmp_path,
    )
    assert other.uri == "http://milvus:19530"
    assert other.collection.endswith("_hnsw")


def test_without_the_client_installed_milvus_is_refused_with_a_hint(
    small_index: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "pymilvus", None)
    with pytest.raises(InputError) as raised:
        open_backend(Settings(backend="milvus"), small_index.manifest, tmp_path)
    assert "carqa[scale]" in (raised.value.hint or "")


def test_a_build_without_a_build_id_has_no_collection() -> None:
    from carqa.errors import CarqaError

    with pytest.raises(CarqaError):
        milvus.collection_name({"build_id": ""})
    assert milvus.collection_name({"build_id": "20261206T221558Z-445de9"}) == (
        "carqa_20261206T221558Z_445de9"
    )


class _Counting:
    """A Milvus client that counts the BM25 scorings it is asked for."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self.bm25 = 0

    def search(self, *args: Any, **kwargs: Any) -> Any:
        self.bm25 += kwargs.get("anns_field") == "sparse"
        return self.client.search(*args, **kwargs)

    def hybrid_search(self, *args: Any, **kwargs: Any) -> Any:
        self.bm25 += sum(request.anns_field == "sparse" for request in kwargs["reqs"])
        return self.client.hybrid_search(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.client, name)


def test_a_question_costs_two_bm25_scorings(
    engine: Engine, milvus_engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Milvus Lite scores BM25 in Python over the whole collection, so each BM25 search is
    most of a question's time: the hybrid search's and one over the candidates, no more."""
    source = milvus_engine.retriever.source
    counting = _Counting(source.client)
    monkeypatch.setattr(source, "client", counting)
    exact = engine.retriever
    for question in QUESTIONS:
        query = exact.lexical.parse(question)
        vector = exact.encode(query.dense_text)
        counting.bm25 = 0
        source.candidates(query, vector, 2, None, None)
        assert counting.bm25 <= 2, question
