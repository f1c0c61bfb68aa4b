"""The HTTP API over the real engine on the fixture index (``small_index_dir``).

The fake-engine tests pin the HTTP contract; these check that the real answering layer fits
it: shapes, citations that resolve to indexed papers, abstentions, streaming, sessions,
missing-index handling and concurrent queries off the event loop.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from carqa.api.app import create_app
from fastapi.testclient import TestClient

from carqa.settings import Settings
from tests.api.sse import parse_sse

INJECTED = "<img src=x onerror=alert(1)>"
XSS_QUESTION = "Which markup must appear as plain text: img src onerror?"


@pytest.fixture(scope="module")
def real_client(
    small_index: Any, small_index_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[TestClient]:
    from carqa.qa.engine import Engine

    settings = Settings(index_dir=small_index_dir)
    engine = Engine(small_index, settings=settings)  # shares the session's loaded index
    # Sessions go to a private directory: the shared fixture index is read-only for tests.
    from carqa.api.services import open_chat

    chat = open_chat(engine, Settings(index_dir=tmp_path_factory.mktemp("sessions")))
    with TestClient(create_app(settings, engine=engine, chat=chat)) as client:
        yield client


def test_query_answer_cites_indexed_papers(real_client: TestClient) -> None:
    response = real_client.post(
        "/api/query", json={"question": "Why do patients relapse after CD19 CAR T cell therapy?"}
    )
    assert response.status_code == 200
    body = response.json()
    assert body["abstained"] is False
    assert body["citations"]
    markers = {int(n) for n in re.findall(r"\[(\d+)\]", body["answer"])}
    assert markers and markers <= {c["n"] for c in body["citations"]}
    for citation in body["citations"]:
        assert citation["url"] == f"https://pubmed.ncbi.nlm.nih.gov/{citation['pmid']}/"
        paper = real_client.get(f"/api/papers/{citation['pmid']}")
        assert paper.status_code == 200
        abstract = " ".join(section["text"] for section in paper.json()["sections"])
        assert citation["text"] in abstract  # cited sentences are quoted, not rewritten


def test_off_topic_question_abstains(real_client: TestClient) -> None:
    body = real_client.post(
        "/api/query", json={"question": "What is the capital of France?"}
    ).json()
    assert body["abstained"] is True
    assert body["answer"] == ""
    assert body["message"]


def test_filters_reach_the_engine(real_client: TestClient) -> None:
    body = real_client.post(
        "/api/query",
        json={
            "question": "Why do patients relapse after CD19 CAR T cell therapy?",
            "filters": {"pmids": ["90000002"]},
        },
    ).json()
    assert {c["pmid"] for c in body["citations"]} <= {"90000002"}


def test_papers_and_stats(real_client: TestClient) -> None:
    paper = real_client.get("/api/papers/90000012").json()
    assert INJECTED in " ".join(section["text"] for section in paper["sections"])
    assert paper["cited_by_seed"] is True
    seed = real_client.get("/api/papers/90000001").json()
    assert seed["is_seed"] is True
    assert real_client.get("/api/papers/99999999").status_code == 404
    stats = real_client.get("/api/stats").json()
    assert stats["papers"] == 22
    assert stats["sentences"] > stats["papers"]


def test_stream_then_follow_up_in_the_same_session(real_client: TestClient) -> None:
    def turn(body: dict[str, Any]) -> list[tuple[str, Any]]:
        with real_client.stream(
            "POST", "/api/chat", json=body, headers={"accept": "text/event-stream"}
        ) as response:
            assert response.status_code == 200
            return parse_sse(response.iter_lines())

    first = turn({"message": "What causes relapse after CD19 CAR T cells?"})
    names = [name for name, _ in first]
    assert names[0] == "sources" and names[-1] == "done"
    assert set(names[1:-1]) == {"delta"}
    done = first[-1][1]
    assert done["abstained"] is False
    streamed = "".join(data["text"] for name, data in first if name == "delta")
    assert " ".join(streamed.split()) == " ".join(done["answer"].split())
    session_id = done["session_id"]

    follow = turn({"message": "How could it be prevented?", "session_id": session_id})
    assert follow[-1][0] == "done"
    assert follow[-1][1]["session_id"] == session_id

    as_json = real_client.post(
        "/api/chat", json={"message": "And in solid tumours?", "session_id": session_id}
    ).json()
    assert as_json["session_id"] == session_id


def test_a_long_chat_is_never_rejected_for_a_question_nobody_typed(
    small_index: Any, small_index_dir: Path, tmp_path: Path
) -> None:
    """Follow-ups are condensed with the conversation's topic and the result is bounded, so a
    conversation never reaches a 422 (or a stream ``error``) about a merged query."""
    from carqa.api.services import open_chat
    from carqa.qa.engine import Engine

    limit = 150
    settings = Settings(index_dir=small_index_dir, max_question_chars=limit)
    chat = open_chat(Engine(small_index, settings=settings), Settings(index_dir=tmp_path))
    with TestClient(create_app(settings, engine=chat.engine, chat=chat)) as client:
        first = client.post("/api/chat", json={"message": "Why do patients relapse after CD19?"})
        session_id = first.json()["session_id"]
        follow_ups = ["what about toxicity?", "and neurotoxicity?", "how is it treated?"]
        for i in range(12):
            body = {"message": follow_ups[i % 3], "session_id": session_id}
            reply = client.post("/api/chat", json=body)
            assert reply.status_code == 200, reply.text
            assert len(reply.json()["query"]) <= limit
            with client.stream("POST", "/api/chat", json={**body, "stream": True}) as response:
                assert response.status_code == 200
                events = parse_sse(response.iter_lines())
            assert events[-1][0] == "done", events[-1]
        assert reply.json()["query"] == "Why do patients relapse after CD19: how is it treated?"
        too_long = client.post(
            "/api/chat", json={"message": "x" * (limit + 1), "session_id": session_id}
        )
        assert too_long.status_code == 422  # the limit still holds for what the user types


def test_an_unknown_session_is_flagged_and_explained(real_client: TestClient) -> None:
    body = {"message": "and in adults?", "session_id": "no-such-session"}
    reply = real_client.post("/api/chat", json=body).json()
    assert reply["session_id"] != "no-such-session"
    assert "session_expired" in reply["flags"]
    assert "not found or has expired" in reply["message"]
    with real_client.stream("POST", "/api/chat", json={**body, "stream": True}) as response:
        done = parse_sse(response.iter_lines())[-1]
    assert done[0] == "done"
    assert "session_expired" in done[1]["flags"]
    assert "not found or has expired" in done[1]["message"]


def test_injected_markup_is_returned_as_data(real_client: TestClient) -> None:
    body = real_client.post("/api/query", json={"question": XSS_QUESTION}).json()
    assert any(INJECTED in c["text"] for c in body["citations"]), body


def test_concurrent_queries(real_client: TestClient) -> None:
    questions = [
        "Why do patients relapse after CD19 CAR T cell therapy?",
        "How is cytokine release syndrome treated?",
        "What limits CAR T cells in solid tumours?",
        "What is the capital of France?",
    ] * 2

    def ask(question: str) -> int:
        return real_client.post("/api/query", json={"question": question}).status_code

    with ThreadPoolExecutor(max_workers=4) as pool:
        assert list(pool.map(ask, questions)) == [200] * len(questions)


def test_empty_index_dir_is_not_ready_with_a_build_hint(tmp_path: Path) -> None:
    with TestClient(create_app(Settings(index_dir=tmp_path))) as client:
        ready = client.get("/readyz")
        assert ready.status_code == 503
        assert "carqa build" in ready.json()["hint"]
        response = client.post("/api/query", json={"question": "cd19"})
        assert response.status_code == 503
        assert response.json()["error"]["code"] == "index_not_found"


def test_a_running_server_keeps_its_build_when_the_folder_is_replaced(
    small_index_dir: Path, tmp_path: Path
) -> None:
    """As the README says: a rebuild is not picked up without a restart, and cannot disturb a
    running server either, even when its build folder is pruned (two rebuilds later)."""
    import shutil

    index_dir = tmp_path / "index"
    shutil.copytree(small_index_dir, index_dir, symlinks=True)
    with TestClient(create_app(Settings(index_dir=index_dir))) as client:
        build_id = client.get("/api/stats").json()["build_id"]
        shutil.rmtree((index_dir / "current").resolve())
        (index_dir / "current").unlink()
        response = client.post("/api/query", json={"question": "CD19 CAR T relapse"})
        assert response.status_code == 200
        assert response.json()["citations"]
        pmid = response.json()["citations"][0]["pmid"]
        assert client.get(f"/api/papers/{pmid}").status_code == 200
        assert client.get("/api/stats").json()["build_id"] == build_id
        assert client.get("/readyz").status_code == 200
