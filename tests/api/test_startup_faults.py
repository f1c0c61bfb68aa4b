"""A damaged or mismatched index at start-up: a clear refusal, never a traceback or a crash loop.

Real processes, real index files (a copy of the session's ``small_index_dir``, then damaged):

- ``carqa serve`` opens the index before it binds the port, so it refuses at once — one
  message with a hint on how to rebuild, a non-zero exit, no traceback;
- a server started without the CLI (``uvicorn --factory carqa.api.app:app_from_env``) stays up but
  not ready: ``/healthz`` 200, ``/readyz`` and ``/api/*`` 503 with the reason and the hint, and
  it keeps running (no crash loop) without printing a traceback;
- ``carqa ask`` refuses with the same message and a non-zero exit.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from bench._common import REPO_ROOT, free_port

pytestmark = pytest.mark.slow

START_TIMEOUT = 180  # seconds; imports alone take a while on a busy 2-core machine


def _copy(small_index_dir: Path, target: Path) -> Path:
    shutil.copytree(small_index_dir, target, symlinks=True)
    return target


def _build(index_dir: Path) -> Path:
    return (index_dir / "current").resolve()


def _flip_bytes(path: Path) -> None:
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 16] = bytes(b ^ 0xFF for b in data[middle : middle + 16])
    path.write_bytes(bytes(data))


def _edit_manifest(index_dir: Path, edit: Callable[[dict], None]) -> None:
    path = _build(index_dir) / "manifest.json"
    manifest = json.loads(path.read_text())
    edit(manifest)
    path.write_text(json.dumps(manifest))


def damaged_vectors(index_dir: Path) -> str:
    _flip_bytes(_build(index_dir) / "sentences.npy")
    return "does not match its checksum"


def damaged_metadata(index_dir: Path) -> str:
    meta = _build(index_dir) / "meta.sqlite"
    with meta.open("r+b") as handle:
        handle.truncate(meta.stat().st_size // 2)
    return "damaged or was changed"


def other_format_version(index_dir: Path) -> str:
    _edit_manifest(index_dir, lambda m: m.update(format_version=999))
    return "format version 999"


def other_dimension(index_dir: Path) -> str:
    _edit_manifest(index_dir, lambda m: m["model"].update(dim=768))
    return "768"


def garbled_manifest(index_dir: Path) -> str:
    (_build(index_dir) / "manifest.json").write_text('{"format_version": 1, "model": ')
    return "manifest.json is unreadable"


FAULTS = {
    "damaged-vectors": damaged_vectors,
    "damaged-metadata": damaged_metadata,
    "manifest-format-version": other_format_version,
    "manifest-dimension": other_dimension,
    "manifest-garbled": garbled_manifest,
}


@pytest.fixture(params=sorted(FAULTS))
def faulty_index(request: pytest.FixtureRequest, small_index_dir: Path, tmp_path: Path):
    """(index dir, text the refusal must contain) for each kind of damage."""
    index_dir = _copy(small_index_dir, tmp_path / "index")
    expected = FAULTS[request.param](index_dir)
    return index_dir, expected


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONUNBUFFERED": "1", "HF_HUB_OFFLINE": "1", "COLUMNS": "250"}


def _carqa(*args: str, timeout: float = START_TIMEOUT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "carqa.cli", *args],
        cwd=REPO_ROOT,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _assert_clear_refusal(output: str, expected: str) -> None:
    flat = " ".join(output.split())  # rich wraps long messages
    assert "Error:" in flat, output
    assert expected in flat, output
    assert "Hint:" in flat and "carqa build" in flat, output
    assert "Traceback" not in output, output


def test_serve_refuses_at_start_up(faulty_index: tuple[Path, str]) -> None:
    index_dir, expected = faulty_index
    port = free_port()
    started = time.monotonic()
    done = _carqa("serve", "--index-dir", str(index_dir), "--port", str(port))
    assert done.returncode != 0
    _assert_clear_refusal(done.stdout + done.stderr, expected)
    # It stopped before binding the port, and did not try again and again.
    assert "Uvicorn running" not in done.stderr
    assert time.monotonic() - started < START_TIMEOUT
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2)


def test_ask_refuses(faulty_index: tuple[Path, str]) -> None:
    index_dir, expected = faulty_index
    done = _carqa("ask", "Why do patients relapse after CD19 CAR T?", "--index-dir", str(index_dir))
    assert done.returncode != 0
    _assert_clear_refusal(done.stdout + done.stderr, expected)


def test_server_without_the_cli_starts_not_ready_and_stays_up(
    small_index_dir: Path, tmp_path: Path
) -> None:
    index_dir = _copy(small_index_dir, tmp_path / "index")
    damaged_vectors(index_dir)
    port = free_port()
    log = (tmp_path / "server.log").open("w+")
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "--factory",
            "carqa.api.app:app_from_env",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        cwd=REPO_ROOT,
        env={**_env(), "CARQA_INDEX_DIR": str(index_dir)},
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            assert process.poll() is None, "the server exited"
            try:
                if httpx.get(f"{base}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "the server never came up"
            time.sleep(0.25)
        for _ in range(5):  # asked again and again: same answer, same process
            ready = httpx.get(f"{base}/readyz", timeout=10)
            assert ready.status_code == 503
            body = ready.json()
            assert body["ready"] is False
            assert body["reason"] == "The index is damaged or incomplete."
            assert str(index_dir) not in ready.text  # the details are in the server's log
            assert "carqa build" in body["hint"]
            query = httpx.post(f"{base}/api/query", json={"question": "What is CRS?"}, timeout=10)
            assert query.status_code == 503
            error = query.json()["error"]
            assert error["code"] == "index_corrupt" and "carqa build" in error["hint"]
            time.sleep(0.2)
        assert process.poll() is None  # still the one process: no crash loop
    finally:
        process.terminate()
        process.wait(timeout=30)
        log.seek(0)
        output = log.read()
        log.close()
    assert "Traceback" not in output, output
    assert "does not match its checksum" in output
