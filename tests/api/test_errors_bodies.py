"""Request bodies the server must refuse before reading them whole: too large (declared or
streamed), compressed; and the ones it must still accept (small chunked, identity)."""

from __future__ import annotations

import gzip
import json
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.api.assertions import JSON, assert_error
from tests.api.conftest import MakeClient


def test_body_too_large_by_content_length(make_client: MakeClient) -> None:
    client = make_client(max_body_bytes=1000)
    body = json.dumps({"question": "cd19", "pad": "x" * 2000})
    assert_error(client.post("/api/query", content=body, headers=JSON), 413, "body_too_large")


def test_body_too_large_when_streamed_without_content_length(make_client: MakeClient) -> None:
    client = make_client(max_body_bytes=1000)

    def chunks() -> Any:
        yield b'{"question": "'
        for _ in range(20):
            yield b"x" * 100
        yield b'"}'

    response = client.post("/api/query", content=chunks(), headers=JSON)
    assert "content-length" not in response.request.headers
    assert_error(response, 413, "body_too_large")


def test_small_chunked_body_is_accepted(make_client: MakeClient) -> None:
    client = make_client(max_body_bytes=1000)

    def chunks() -> Any:
        yield b'{"question": '
        yield b'"cd19 relapse"}'

    assert client.post("/api/query", content=chunks(), headers=JSON).status_code == 200


@pytest.mark.parametrize("encoding", ["gzip", "deflate", "br", "GZIP"])
def test_compressed_body_is_415_not_called_bad_json(client: TestClient, encoding: str) -> None:
    # The body is never decompressed: calling it "not valid JSON (invalid UTF-8)" sent the
    # client hunting for an encoding bug in its JSON instead of turning compression off.
    body = gzip.compress(json.dumps({"question": "cd19"}).encode())
    headers = {**JSON, "Content-Encoding": encoding}
    error = assert_error(
        client.post("/api/query", content=body, headers=headers), 415, "unsupported_encoding"
    )
    assert encoding in error["message"]
    response = client.post("/api/chat", content=body, headers=headers)
    assert response.status_code == 415
    assert response.headers["accept-encoding"] == "identity"


def test_identity_encoding_is_accepted(client: TestClient) -> None:
    headers = {**JSON, "Content-Encoding": "identity"}
    response = client.post("/api/query", content=json.dumps({"question": "cd19"}), headers=headers)
    assert response.status_code == 200


def test_huge_body_with_default_limit(client: TestClient) -> None:
    body = json.dumps({"question": "x" * 200_000})
    assert_error(client.post("/api/query", content=body, headers=JSON), 413)
