from __future__ import annotations

import pytest
from carqa.qa.engine import Engine
from carqa.qa.retriever import CarqaRetriever
from carqa.qa.types import Filters
from langchain_core.documents import Document
from langchain_tests.integration_tests import RetrieversIntegrationTests
from pydantic import ValidationError

from carqa.errors import InputError


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.mark.anyio  # runs the suite's async test (ainvoke) with anyio's pytest plugin
class TestCarqaRetrieverStandard(RetrieversIntegrationTests):
    """LangChain's standard retriever tests (langchain-tests), run against the fixture index."""

    _engine: Engine | None = None

    @pytest.fixture(autouse=True)
    def _use_engine(self, engine: Engine) -> None:
        type(self)._engine = engine

    @property
    def retriever_constructor(self) -> type[CarqaRetriever]:
        return CarqaRetriever

    @property
    def retriever_constructor_params(self) -> dict:
        return {"engine": self._engine, "k": 4}

    @property
    def retriever_query_example(self) -> str:
        return "Why do patients relapse after CD19 CAR T cell therapy?"


def test_documents_carry_citation_metadata(engine: Engine) -> None:
    docs = CarqaRetriever(engine=engine, k=3).invoke("How is cytokine release syndrome managed?")
    assert len(docs) == 3
    assert all(isinstance(doc, Document) for doc in docs)
    first = docs[0]
    assert first.id == first.metadata["pmid"]
    assert first.metadata["url"] == f"https://pubmed.ncbi.nlm.nih.gov/{first.metadata['pmid']}/"
    assert first.metadata["rank"] == 0
    assert first.metadata["best_sentence"] in first.page_content
    assert [d.metadata["rank"] for d in docs] == [0, 1, 2]


def test_filters_and_abstention(engine: Engine) -> None:
    docs = CarqaRetriever(engine=engine, filters=Filters(year_from=2021)).invoke("CAR T cells")
    assert docs and all(d.metadata["year"] >= 2021 for d in docs)
    off_topic = "How do I center a div with CSS flexbox?"
    assert CarqaRetriever(engine=engine).invoke(off_topic)  # plain retrieval: least bad papers
    assert CarqaRetriever(engine=engine, abstain=True).invoke(off_topic) == []


@pytest.mark.anyio
async def test_per_call_k_and_filters_work_on_the_async_path(engine: Engine) -> None:
    retriever = CarqaRetriever(engine=engine, k=4)
    question = "Why do patients relapse after CD19 CAR T cell therapy?"
    docs = await retriever.ainvoke(question, k=2)
    assert [d.metadata["pmid"] for d in docs] == [
        d.metadata["pmid"] for d in retriever.invoke(question, k=2)
    ]
    filtered = await retriever.ainvoke(question, filters=Filters(year_from=2021))
    assert filtered and all(d.metadata["year"] >= 2021 for d in filtered)


def test_filters_may_be_a_dict_and_a_typo_is_an_error(engine: Engine) -> None:
    question = "Why do patients relapse after CD19 CAR T cell therapy?"
    per_call = CarqaRetriever(engine=engine).invoke(question, filters={"year_from": 2021})
    assert per_call and all(d.metadata["year"] >= 2021 for d in per_call)
    on_retriever = CarqaRetriever(engine=engine, filters={"exclude_pmids": ["90000004"]})
    assert "90000004" not in {d.metadata["pmid"] for d in on_retriever.invoke(question)}
    with pytest.raises(InputError, match="year"):
        CarqaRetriever(engine=engine).invoke(question, filters={"year": 2021})
    with pytest.raises(ValidationError, match="year"):
        CarqaRetriever(engine=engine, filters={"year": 2021})
    # k=None (an unset option passed through) means the retriever's own k.
    assert len(CarqaRetriever(engine=engine, k=2).invoke(question, k=None)) == 2
