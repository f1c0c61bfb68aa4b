"""Slow and idle clients against a real server (a subprocess with ``carqa serve``'s uvicorn
options over the fake engine): they are timed out and capped, so ``/healthz`` keeps answering
even when there are more of them than the server may open files, and the log stays short."""

from __future__ import annotations

import contextlib
import logging
import os
import resource
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from bench._common import REPO_ROOT, free_port
from tests.api.inprocess import in_process_server

HALF_HEAD = b"GET /healthz HTTP/1.1\r\nHost: x\r\n"  # the blank line that ends it never comes
START_TIMEOUT = 60.0


@contextmanager
def guarded_server(
    tmp_path: Path, *, file_limit: int | None = None, **env: str
) -> Iterator[tuple[str, Path]]:
    """The server's base URL and its log file."""
    port = free_port()
    log_path = tmp_path / "server.log"

    def lower_file_limit() -> None:
        if file_limit is not None:
            resource.setrlimit(resource.RLIMIT_NOFILE, (file_limit, file_limit))

    with log_path.open("w") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "tests.api.guarded_server", "--port", str(port)],
            cwd=REPO_ROOT,
            env={**os.environ, "HF_HUB_OFFLINE": "1", **env},
            stdout=log,
            stderr=subprocess.STDOUT,
            preexec_fn=lower_file_limit,
        )
        base = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + START_TIMEOUT
            while True:
                assert process.poll() is None, log_path.read_text()
                try:
                    if httpx.get(f"{base}/healthz", timeout=2).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                assert time.monotonic() < deadline, "the server never came up"
                time.sleep(0.2)
            yield base, log_path
        finally:
            process.terminate()
            process.wait(timeout=30)


def _half_sent(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    sock.sendall(HALF_HEAD)
    return sock


def _closed_by_server(sock: socket.socket, within: float) -> bool:
    sock.settimeout(within)
    try:
        return sock.recv(1024) == b""
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


@pytest.mark.slow
def test_more_half_sent_requests_than_open_files_do_not_stop_health_checks(
    tmp_path: Path,
) -> None:
    """280 connections that never finish their request head, with 256 files allowed: the
    server keeps its connections under the limit (the oldest idle ones are closed) and a
    health check still answers at once. The head timeout is long here, so it is the cap at
    work, not the timeout."""
    with guarded_server(tmp_path, file_limit=256, CARQA_HEADER_TIMEOUT_SECONDS="300") as (
        base,
        log_path,
    ):
        port = int(base.rsplit(":", 1)[1])
        sockets = []
        try:
            for _ in range(280):
                with contextlib.suppress(OSError):  # refused at once by the cap: also fine
                    sockets.append(_half_sent(port))
            time.sleep(1.0)
            started = time.monotonic()
            for _ in range(3):
                assert httpx.get(f"{base}/healthz", timeout=3).status_code == 200
            assert time.monotonic() - started < 9
        finally:
            for sock in sockets:
                sock.close()
        time.sleep(0.5)
        log = log_path.read_text()
    assert "out of system resource" not in log
    assert len(log) < 20_000, log[:2000]


def test_a_connection_that_never_finishes_its_request_head_is_closed() -> None:
    with in_process_server(header_timeout_seconds=0.5) as port:
        silent = socket.create_connection(("127.0.0.1", port), timeout=5)
        half = _half_sent(port)
        with silent, half:
            assert _closed_by_server(silent, within=5)
            assert _closed_by_server(half, within=5)
        # After a response the next request's head is bounded the same way.
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            sock.sendall(HALF_HEAD + b"\r\n")
            response = b""
            while not response.endswith(b'{"status":"ok"}'):
                response += sock.recv(4096)
            assert response.startswith(b"HTTP/1.1 200 OK")
            sock.sendall(HALF_HEAD)
            assert _closed_by_server(sock, within=5)


def test_at_the_cap_the_oldest_idle_connection_makes_room() -> None:
    with in_process_server(max_connections=3, header_timeout_seconds=300) as port:
        first = _half_sent(port)
        others = [_half_sent(port) for _ in range(3)]
        with first:
            assert _closed_by_server(first, within=5)
            with httpx.Client(base_url=f"http://127.0.0.1:{port}") as client:
                assert client.get("/healthz", timeout=5).status_code == 200
        for sock in others:
            sock.close()


def test_the_accept_error_is_logged_once_a_minute_in_one_line() -> None:
    from carqa.api.connections import ACCEPT_ERROR, AcceptErrorFilter

    log_filter = AcceptErrorFilter()

    def record(message: str) -> logging.LogRecord:
        return logging.LogRecord("asyncio", logging.ERROR, __file__, 1, message, (), None)

    passed = [log_filter.filter(record(f"{ACCEPT_ERROR}\nexception: ...")) for _ in range(2048)]
    assert passed.count(True) == 1
    assert log_filter.filter(record("another asyncio error"))
