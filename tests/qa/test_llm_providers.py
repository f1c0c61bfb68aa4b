"""The real provider clients (langchain-openai, langchain-ollama) against fake local servers.

Each test starts a tiny HTTP server on 127.0.0.1 that speaks just enough of the OpenAI
``chat.completions`` streaming protocol (SSE) or Ollama's ``/api/chat`` (NDJSON): no real LLM
is called, and the whole client stack (request, streaming, timeouts, retries) is exercised.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from carqa.qa.engine import Engine
from carqa.qa.llm import (
    FLAG_REMOVED,
    LLM_MAX_RETRIES,
    LLMUnavailable,
    LLMWriter,
    chat_model_from_settings,
)

from carqa.settings import Settings

pytest.importorskip("langchain_openai")
pytest.importorskip("langchain_ollama")

RELAPSE = "Why do patients relapse after CD19 CAR T cell therapy?"
REPLY = ["Relapse follows ", "CD19 loss [", "1]. It is rare ", "on Mars [42", "]."]
ANSWER = "Relapse follows CD19 loss [1]. It is rare on Mars."


class FakeLLMServer:
    """An OpenAI-compatible (``flavour="openai"``) or Ollama server on a free local port that
    streams ``pieces`` as its reply, or (``hang=True``) reads the request and never answers.
    ``requests`` records each request's path and JSON body."""

    def __init__(self, flavour: str, pieces: Sequence[str] = (), *, hang: bool = False) -> None:
        self.flavour = flavour
        self.pieces = list(pieces)
        self.hang = hang
        self.requests: list[tuple[str, dict[str, Any]]] = []
        self.release = threading.Event()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}")
                server.requests.append((self.path, body))
                if server.hang:
                    server.release.wait(timeout=30)
                    return
                if server.flavour == "openai":
                    self._stream("text/event-stream", server.openai_frames())
                else:
                    self._stream("application/x-ndjson", server.ollama_lines())

            def _stream(self, content_type: str, chunks: Iterator[bytes]) -> None:
                self.send_response(200)
                self.send_header("Content-Type", content_type)
                self.send_header("Connection", "close")
                self.end_headers()
                for chunk in chunks:
                    self.wfile.write(chunk)
                    self.wfile.flush()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        host = f"http://127.0.0.1:{self.port}"
        return f"{host}/v1" if self.flavour == "openai" else host

    def openai_frames(self) -> Iterator[bytes]:
        def frame(delta: dict[str, Any], finish: str | None = None) -> bytes:
            chunk = {
                "id": "chatcmpl-fake",
                "object": "chat.completion.chunk",
                "created": 0,
                "model": "fake-model",
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
            }
            return f"data: {json.dumps(chunk)}\n\n".encode()

        yield frame({"role": "assistant", "content": ""})
        for piece in self.pieces:
            yield frame({"content": piece})
        yield frame({}, "stop")
        yield b"data: [DONE]\n\n"

    def ollama_lines(self) -> Iterator[bytes]:
        def line(content: str, **extra: Any) -> bytes:
            message = {"role": "assistant", "content": content}
            chunk = {"model": "fake-model", "created_at": "2025-01-01T00:00:00Z"}
            return (json.dumps({**chunk, "message": message, **extra}) + "\n").encode()

        for piece in self.pieces:
            yield line(piece, done=False)
        yield line("", done=True, done_reason="stop", eval_count=len(self.pieces))

    def __enter__(self) -> FakeLLMServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release.set()
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)


def settings_for(server: FakeLLMServer, tmp_path: Path, **flags: Any) -> Settings:
    return Settings.load(
        index_dir=tmp_path / "index",
        llm_provider=server.flavour,
        llm_model="fake-model",
        llm_base_url=server.base_url,
        **flags,
    )


def llm_engine(index, settings: Settings) -> Engine:
    model = chat_model_from_settings(settings)
    return Engine(index, settings=settings, llm=LLMWriter(model))


# -- the models are built with the bounds from the settings ------------------------------------


def test_openai_model_carries_timeout_retries_and_max_tokens() -> None:
    settings = Settings.load(
        llm_provider="openai",
        llm_base_url="http://127.0.0.1:9/v1",
        llm_timeout_seconds=7,
        llm_max_tokens=300,
    )
    model = chat_model_from_settings(settings)
    assert type(model).__name__ == "ChatOpenAI"
    assert model.request_timeout == 7
    assert model.max_retries == LLM_MAX_RETRIES == 1
    assert model.max_tokens == 300
    assert model.root_client.timeout == 7  # what the openai client actually uses
    assert model.root_client.max_retries == LLM_MAX_RETRIES
    assert model.extra_body == {"max_tokens": 300}


@pytest.mark.parametrize("url", [None, "https://api.openai.com/v1", "https://API.openai.com/v1/"])
def test_openai_itself_gets_only_the_current_max_tokens_name(url: str | None) -> None:
    """OpenAI's reasoning models refuse the older ``max_tokens``; only servers of one's own
    are sent it too."""
    settings = Settings.load(llm_provider="openai", llm_api_key="k", llm_base_url=url)
    model = chat_model_from_settings(settings)
    assert model.extra_body is None
    payload = model._get_request_payload("hi", stream=True)
    assert payload["max_completion_tokens"] == 1024 and "max_tokens" not in payload


def test_ollama_model_carries_timeout_and_max_tokens() -> None:
    settings = Settings.load(llm_provider="ollama", llm_timeout_seconds=7, llm_max_tokens=300)
    model = chat_model_from_settings(settings)
    assert type(model).__name__ == "ChatOllama"
    assert model.num_predict == 300
    # The ollama client's own default is no timeout at all.
    assert model._client._client.timeout.read == 7
    assert model._client._client.timeout.connect == 7


def test_defaults_bound_every_llm_call() -> None:
    settings = Settings.load()
    assert settings.llm_timeout_seconds == 60
    assert settings.llm_max_tokens == 1024


@pytest.mark.parametrize(
    ("flags", "name"),
    [
        ({"llm_timeout_seconds": 0}, "CARQA_LLM_TIMEOUT_SECONDS"),
        ({"llm_timeout_seconds": "soon"}, "CARQA_LLM_TIMEOUT_SECONDS"),
        ({"llm_max_tokens": 0}, "CARQA_LLM_MAX_TOKENS"),
        ({"llm_max_tokens": -5}, "CARQA_LLM_MAX_TOKENS"),
    ],
)
def test_nonsense_bounds_are_refused_by_name(flags: dict[str, Any], name: str) -> None:
    from carqa.errors import InputError

    with pytest.raises(InputError, match=name):
        Settings.load(**flags)


def test_bounds_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CARQA_LLM_TIMEOUT_SECONDS", "2.5")
    monkeypatch.setenv("CARQA_LLM_MAX_TOKENS", "64")
    settings = Settings.load()
    assert settings.llm_timeout_seconds == 2.5
    assert settings.llm_max_tokens == 64


# -- end to end against a fake server -----------------------------------------------------------


@pytest.mark.parametrize("flavour", ["openai", "ollama"])
def test_engine_streams_a_checked_answer_from_a_provider_server(
    small_index, tmp_path: Path, flavour: str
) -> None:
    with FakeLLMServer(flavour, REPLY) as server:
        settings = settings_for(server, tmp_path, llm_max_tokens=200)
        events = list(llm_engine(small_index, settings).ask_stream(RELAPSE))
    kinds = [e.type for e in events]
    assert kinds[0] == "sources" and kinds[-1] == "done"
    assert kinds.count("delta") > 2  # streamed piece by piece, not in one block
    evidence = events[0].data["citations"]
    assert evidence
    streamed = "".join(e.data["text"] for e in events if e.type == "delta")
    done = events[-1].data
    assert streamed == done["answer"] == ANSWER
    assert FLAG_REMOVED in done["flags"] and "[42]" in done["message"]
    assert done["citations"] == evidence

    # The request carried the evidence, the model name and the reply cap.
    (path, body), *_ = server.requests
    assert len(server.requests) == 1
    assert body["model"] == "fake-model" and body["stream"] is True
    prompt = body["messages"][-1]["content"]
    assert "[1] (PMID " in prompt and prompt.endswith(f"Question: {RELAPSE}")
    if flavour == "openai":
        assert path == "/v1/chat/completions"
        # Both names: servers that know only the older one would not cap the reply.
        assert body["max_completion_tokens"] == body["max_tokens"] == 200
    else:
        assert path == "/api/chat"
        assert body["options"]["num_predict"] == 200


@pytest.mark.parametrize("flavour", ["openai", "ollama"])
def test_a_server_that_never_answers_fails_within_the_timeout(
    small_index, tmp_path: Path, flavour: str
) -> None:
    """A hung LLM server held the worker thread for the client's default: 600 s per attempt,
    three attempts (openai), or forever (ollama)."""
    with FakeLLMServer(flavour, hang=True) as server:
        engine = llm_engine(small_index, settings_for(server, tmp_path, llm_timeout_seconds=1))
        started = time.monotonic()
        with pytest.raises(LLMUnavailable, match="failed") as error:
            engine.ask(RELAPSE)
        took = time.monotonic() - started
        attempts = len(server.requests)
    assert took < 6, f"took {took:.1f} s"
    assert attempts == (1 + LLM_MAX_RETRIES if flavour == "openai" else 1)
    assert "timed out" in error.value.message.lower() or "timeout" in error.value.message.lower()


def test_a_hung_llm_server_is_a_503_over_http(small_index, tmp_path: Path) -> None:
    from carqa.api.app import create_app
    from carqa.qa.chat import ChatService
    from carqa.qa.sessions import SessionStore
    from fastapi.testclient import TestClient

    with FakeLLMServer("ollama", hang=True) as server:
        settings = settings_for(server, tmp_path, llm_timeout_seconds=1)
        engine = llm_engine(small_index, settings)
        chat = ChatService(engine, SessionStore.open(tmp_path))
        with TestClient(create_app(settings, engine=engine, chat=chat)) as client:
            started = time.monotonic()
            response = client.post("/api/query", json={"question": RELAPSE})
            took = time.monotonic() - started
    assert response.status_code == 503, response.text
    assert response.json()["error"]["code"] == "llm_unavailable"
    assert took < 6, f"took {took:.1f} s"
