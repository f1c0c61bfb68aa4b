"""/api/corpus (what is indexed, example questions), /docs from local assets, the site icon."""

from __future__ import annotations

import json
import types
from pathlib import Path
from typing import Any

from carqa.qa import examples
from carqa.qa.types import Answer

from tests.api.fakes import FakeEngine


def _paper(pmid: str, **fields: Any) -> Any:
    base = {
        "pmid": pmid,
        "title": None,
        "journal": None,
        "year": 2010,
        "doi": None,
        "mesh": [],
        "is_seed": False,
        "has_abstract": True,
    }
    return types.SimpleNamespace(**{**base, **fields})


class CorpusEngine(FakeEngine):
    """The fake engine with an index of invented papers; answers only what ``answers`` holds."""

    def __init__(self, papers: list[Any], folder: Path, answers: set[str]) -> None:
        super().__init__()
        self.asked: list[str] = []
        self.answers = answers
        self.index = types.SimpleNamespace(
            papers={p.pmid: p for p in papers},
            index_dir=folder,
            manifest={
                "build_id": "b1",
                "corpus": {"source": f"files:{folder}/secret/dir/mine.jsonl,/data/more.xml.gz"},
            },
        )

    def ask(self, question: str, **kw: Any) -> Answer:
        self.asked.append(question)
        abstained = question not in self.answers
        return Answer(answer="x", abstained=abstained, citations=[], took_ms=1.0, query=question)


MESH_PAPERS = [
    _paper("1", year=1999, mesh=["Humans", "Asthma/drug therapy", "Neoplasms, Germ Cell"]),
    _paper("2", year=2004, mesh=["Humans", "Asthma", "Neoplasms, Germ Cell", "HIV Infections"]),
    _paper("3", year=2011, mesh=["Asthma", "HIV Infections"], title="Is asthma rarer in cities?"),
]


def test_corpus_says_what_is_indexed_without_paths(make_client, tmp_path: Path) -> None:
    answers = {"What is known about asthma?", "Is asthma rarer in cities?"}
    engine = CorpusEngine(MESH_PAPERS, tmp_path, answers)
    body = make_client(engine=engine).get("/api/corpus").json()
    assert body["papers"] == 3 and (body["year_from"], body["year_to"]) == (1999, 2011)
    assert body["source"] == "files" and body["files"] == ["mine.jsonl", "more.xml.gz"]
    assert str(tmp_path) not in json.dumps(body) and "/data" not in json.dumps(body)
    assert body["seed"] is None
    # Only questions the engine answered; "Humans" (a check tag) is never a topic.
    assert sorted(body["examples"]) == sorted(answers)
    assert not [q for q in engine.asked if "humans" in q.lower()]
    assert "What is known about germ cell neoplasms?" in engine.asked


def test_examples_are_cached_per_build(tmp_path: Path) -> None:
    engine = CorpusEngine(MESH_PAPERS, tmp_path, {"What is known about asthma?"})
    assert examples.examples(engine) == ["What is known about asthma?"]
    saved = json.loads((tmp_path / examples.EXAMPLES_FILE).read_text())
    assert saved == {"build_id": "b1", "examples": ["What is known about asthma?"]}
    engine.asked.clear()
    assert examples.examples(engine) == ["What is known about asthma?"]
    assert engine.asked == []  # read back, not drawn again
    engine.index.manifest["build_id"] = "b2"  # a new build draws again
    examples.examples(engine)
    assert engine.asked


def test_a_car_t_review_keeps_its_written_examples(tmp_path: Path) -> None:
    seed = _paper(
        "9", is_seed=True, title="A review", mesh=["Receptors, Chimeric Antigen/immunology"]
    )
    engine = CorpusEngine([seed, *MESH_PAPERS], tmp_path, set())
    assert examples.draw(engine) == list(examples.CAR_T_EXAMPLES)
    info = examples.describe(engine)
    assert info["seed"]["url"] == "https://pubmed.ncbi.nlm.nih.gov/9/"


class _StreamedPapers(dict):
    """Papers made as they are read, like the index's table at a million papers: whoever keeps
    them all in a list holds them all in memory at once."""

    def __init__(self, n: int) -> None:
        super().__init__()
        self.n = n

    def values(self) -> Any:
        for i in range(self.n):
            yield _paper(
                f"{i:07d}",
                year=1990 + i % 30,
                title=f"Does treatment {i} help?" if i % 1000 == 0 else "A study",
                mesh=["Asthma", f"Topic {i % 50}"],
                is_seed=i == 7,
                abstract="x" * 1000,
            )


def test_corpus_summary_and_examples_read_the_papers_in_one_streaming_pass(
    tmp_path: Path,
) -> None:
    import tracemalloc

    engine = CorpusEngine([], tmp_path, {"What is known about asthma?"})
    engine.index.papers = _StreamedPapers(20_000)
    tracemalloc.start()
    try:
        info = examples.describe(engine)
        drawn = examples.draw(engine)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert info["papers"] == 20_000 and info["with_abstract"] == 20_000
    assert (info["year_from"], info["year_to"]) == (1990, 2019)
    assert info["seed"]["pmid"] == "0000007"
    assert drawn == ["What is known about asthma?"]
    assert engine.asked[0].startswith("Does treatment 0 help?")  # titles first, lowest pmid
    assert peak < 2_000_000  # 20,000 papers held at once take ~11 MB


def test_corpus_of_an_engine_without_index_still_answers(client) -> None:
    body = client.get("/api/corpus").json()
    assert body["papers"] > 0 and body["examples"] == []


def test_docs_page_and_its_assets_are_served_locally(client) -> None:
    page = client.get("/docs")
    assert page.status_code == 200
    assert "cdn.jsdelivr.net" not in page.text and "fastapi.tiangolo.com" not in page.text
    assert "/docs/assets/swagger-ui-bundle.js" in page.text
    script = client.get("/docs/assets/swagger-ui-bundle.js")
    assert script.status_code == 200 and "javascript" in script.headers["content-type"]
    assert len(script.content) > 100_000
    assert client.get("/docs/assets/swagger-ui.css").headers["content-type"].startswith("text/css")
    assert client.get("/docs/assets/../app.py").status_code == 404


def test_favicon_is_served(client) -> None:
    icon = client.get("/favicon.ico")
    assert icon.status_code == 200 and icon.headers["content-type"] == "image/x-icon"
    assert icon.content[:4] == b"\x00\x00\x01\x00"  # an ICO header
    assert client.get("/favicon.svg").headers["content-type"] == "image/svg+xml"


def test_demo_page_loads_its_script_from_the_server(client) -> None:
    page = client.get("/").text
    assert '<script src="/demo.js"></script>' in page
    assert "<script>" not in page  # nothing inline: a script-src 'self' policy may apply
    script = client.get("/demo.js")
    assert script.status_code == 200 and "javascript" in script.headers["content-type"]
    assert "/api/corpus" in script.text


def test_mesh_headings_read_as_topics() -> None:
    assert examples._topic("Neoplasms, Germ Cell") == "germ cell neoplasms"
    assert examples._topic("Tomography, X-Ray Computed") == "x-ray computed tomography"
    assert examples._topic("Antigens, CD19") == "CD19 antigens"
    assert examples._topic("HIV Infections") == "HIV infections"
    assert examples._topic("RNA, Messenger") == "messenger RNA"


def test_corpus_takes_the_api_key_like_the_rest_of_api(make_client) -> None:
    client = make_client(api_keys=["secret"])
    assert client.get("/api/corpus").status_code == 401
    assert client.get("/api/corpus", headers={"X-API-Key": "secret"}).status_code == 200
