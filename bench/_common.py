"""What the benchmark scripts share: where the data is, the index they measure, the machine.

Benchmarks are scripts, not tests: each prints one JSON object (``--json``) or a readable
summary, so a number in ``docs/benchmarks.md`` can be reproduced with one command. They are
meant to be run from the repository root with the project's virtualenv
(``.venv/bin/python bench/query.py``); this module puts the repository on ``sys.path`` so that
works without an install.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import platform
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

# The model comes from an installed package; never reach for a hub.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

SHARED_DATA = Path(os.environ.get("CARQA_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))
DEFAULT_CORPUS = SHARED_DATA / "pubmedqa" / "corpus.jsonl"
DEFAULT_QUESTIONS = SHARED_DATA / "pubmedqa" / "dev_questions.jsonl"


def default_index_dir() -> Path:
    """Where the benchmark index of the PubMedQA corpus lives between runs (a cache, outside
    the repository: rebuilding it costs minutes, reusing it is free when nothing changed)."""
    import platformdirs

    return Path(platformdirs.user_cache_dir("carqa", appauthor=False)) / "bench" / "pubmedqa"


def ensure_index(corpus: Path, index_dir: Path, *, progress: bool = True) -> dict[str, Any]:
    """Build (or reuse) a carqa index of ``corpus`` in ``index_dir`` with the project's own
    pipeline (``carqa build --from``). An unchanged corpus makes this an up-to-date check."""
    from carqa.index.corpus.pipeline import build

    from carqa.cli.progress import progress_bars
    from carqa.settings import Settings

    settings = Settings.load(index_dir=index_dir)
    with progress_bars(progress) as on_progress:
        report = build(settings, sources=[corpus], on_progress=on_progress)
    index = report.index or {}
    return {
        "index_dir": str(index_dir),
        "build_id": index.get("build_id"),
        "up_to_date": index.get("up_to_date"),
        "papers": index.get("papers"),
        "chunks": index.get("chunks"),
        "sentences": index.get("sentences"),
        "build_seconds": index.get("seconds"),
    }


def load_dev_questions(path: Path) -> list[tuple[str, str]]:
    """``(question, source pmid)`` for each line of a PubMedQA-shaped question file; an
    ``InputError`` naming the line for one that is not (``--questions corpus.jsonl`` is an easy
    slip, and was a ``KeyError`` traceback)."""
    from carqa.errors import InputError

    questions = []
    with Path(path).open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
                questions.append((str(record["question"]), str(record["pmid"])))
            except (ValueError, KeyError, TypeError):
                raise InputError(
                    f"{path}, line {number}: not a question line.",
                    hint='Question files hold one {"question": ..., "pmid": ...} per line '
                    "(PubMedQA's dev_questions.jsonl).",
                ) from None
    return questions


# -- arguments: a bad flag is one line from argparse before any work, never a traceback ------


def _number(text: str, kind: Callable[[str], float], *, minimum: float, above: bool) -> Any:
    noun = "an integer" if kind is int else "a number"
    try:
        value = kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not {noun}") from None
    if not math.isfinite(value) or value < minimum or (above and value == minimum):
        relation = "greater than" if above else "at least"
        raise argparse.ArgumentTypeError(f"{text!r}: must be {noun} {relation} {minimum:g}")
    return value


def positive_int(text: str) -> int:
    """argparse ``type``: an integer ≥ 1 (counts, threads, clients)."""
    return int(_number(text, int, minimum=1, above=False))


def non_negative_int(text: str) -> int:
    return int(_number(text, int, minimum=0, above=False))


def positive_float(text: str) -> float:
    """argparse ``type``: a finite number > 0 (durations)."""
    return float(_number(text, float, minimum=0, above=True))


def non_negative_float(text: str) -> float:
    return float(_number(text, float, minimum=0, above=False))


def require_files(parser: argparse.ArgumentParser, *files: tuple[str, Path]) -> None:
    """``parser.error`` for the first of ``files`` (option, path) that is not a file.

    Checked right after parsing: the scripts build or load an index first (minutes, for
    PubMedQA) and only then read the question file."""
    for option, path in files:
        if Path(path).is_file():
            continue
        shared = Path(path).resolve().is_relative_to(SHARED_DATA.resolve())
        where = f" (set CARQA_SHARED_DATA, or pass {option})" if shared else ""
        parser.error(f"{option}: {path} is not a file{where}")


def run_script(main: Callable[[], None]) -> None:
    """Run a benchmark's ``main``; a ``CarqaError`` (an index dir that is a file, a corpus that
    does not parse) ends it with its message and hint, as ``carqa`` does, not a traceback."""
    from carqa.errors import CarqaError

    try:
        main()
    except CarqaError as error:
        raise SystemExit(f"{Path(sys.argv[0]).name}: error: {error}") from None


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (linear interpolation, like numpy's default), rounded to µs."""
    import numpy as np

    if not values:
        return float("nan")
    return round(float(np.percentile(np.asarray(values, dtype=np.float64), q)), 3)


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def memory_gib() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 1024 / 1024, 1)
    except OSError:
        pass
    return None


def load_average() -> list[float] | None:
    try:
        return [round(value, 2) for value in os.getloadavg()]
    except OSError:
        return None


def machine_info() -> dict[str, Any]:
    """The facts a reader needs to compare numbers across machines."""
    return {
        "cpu_count": os.cpu_count(),
        "cpu_model": cpu_model(),
        "memory_gib": memory_gib(),
        "python": platform.python_version(),
        "platform": platform.platform(terse=True),
        "load_average": load_average(),
    }


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ServerFailed(RuntimeError):
    """``carqa serve`` exited or never became ready; ``output`` is what it printed."""

    def __init__(self, message: str, output: str) -> None:
        super().__init__(f"{message}\n--- server output ---\n{output[-4000:]}")
        self.output = output


class LiveServer:
    """``carqa serve`` as a child process on ``127.0.0.1:<free port>`` (loopback only).

    A context manager: starts the server, waits until ``/readyz`` answers 200, and on exit
    stops it (SIGINT, like Ctrl-C; SIGKILL if it has not stopped after ``stop_timeout``).
    Its output goes to a temporary file, read back when start-up fails. Only the process this
    object started is ever signalled.
    """

    def __init__(
        self,
        index_dir: Path,
        *,
        env: dict[str, str] | None = None,
        ready_timeout: float = 180.0,
        stop_timeout: float = 15.0,
        extra_args: Sequence[str] = (),
    ) -> None:
        self.index_dir = Path(index_dir)
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.ready_timeout = ready_timeout
        self.stop_timeout = stop_timeout
        self.extra_args = list(extra_args)
        self.env = {
            **os.environ,
            "PYTHONUNBUFFERED": "1",
            "CARQA_RATE_LIMIT_PER_MINUTE": "0",
            "CARQA_API_KEYS": "",
            **(env or {}),
        }
        self.process: subprocess.Popen[bytes] | None = None
        self._log = tempfile.TemporaryFile()  # noqa: SIM115  (closed in __exit__)

    def command(self) -> list[str]:
        return [
            sys.executable,
            "-m",
            "carqa.cli",
            "serve",
            "--index-dir",
            str(self.index_dir),
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--log-level",
            "warning",
            *self.extra_args,
        ]

    def output(self) -> str:
        self._log.seek(0)
        return self._log.read().decode("utf-8", "replace")

    def start(self) -> LiveServer:
        import httpx

        self.process = subprocess.Popen(
            self.command(),
            cwd=REPO_ROOT,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + self.ready_timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise ServerFailed(
                    f"carqa serve exited with code {self.process.returncode}", self.output()
                )
            try:
                if httpx.get(f"{self.base_url}/readyz", timeout=2.0).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.25)
        self.stop()
        raise ServerFailed(f"carqa serve not ready after {self.ready_timeout:.0f} s", self.output())

    def stop(self) -> int | None:
        """Stop the server; its exit code (None if it had to be killed)."""
        process = self.process
        if process is None or process.poll() is not None:
            return None if process is None else process.returncode
        process.send_signal(signal.SIGINT)
        try:
            return process.wait(timeout=self.stop_timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=self.stop_timeout)
            return None

    def __enter__(self) -> LiveServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
        self._log.close()


# -- a closed-loop load generator (bench/http_load.py and tests/api/test_load.py) --------------


def question_text(question: str, n: int, *, repeat: bool) -> str:
    return question if repeat else f"{question} (#{n})"


async def drive_httpx(
    base_url: str,
    questions: list[str],
    *,
    clients: int,
    seconds: float,
    max_requests: int,
    repeat: bool,
    start_at: int = 0,
) -> tuple[list[float], Counter[str], float]:
    """Closed-loop load: ``clients`` workers, each posting its next question when the last one
    is answered. Returns (latencies in ms of successful requests, error kinds, wall seconds)."""
    import httpx

    latencies: list[float] = []
    errors: Counter[str] = Counter()
    issued = 0
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=base_url, timeout=30.0, limits=limits) as client:
        started = time.perf_counter()
        deadline = started + seconds

        async def worker() -> None:
            nonlocal issued
            while time.perf_counter() < deadline and issued < max_requests:
                n = start_at + issued
                issued += 1
                body = {"question": question_text(questions[n % len(questions)], n, repeat=repeat)}
                t = time.perf_counter()
                try:
                    response = await client.post("/api/query", json=body)
                except httpx.HTTPError as error:
                    errors[type(error).__name__] += 1
                    continue
                elapsed = (time.perf_counter() - t) * 1000
                if response.status_code != 200:
                    errors[f"HTTP {response.status_code}"] += 1
                else:
                    latencies.append(elapsed)

        await asyncio.gather(*(worker() for _ in range(clients)))
        wall = time.perf_counter() - started
    return latencies, errors, wall


def print_result(result: dict[str, Any], summary: str, *, as_json: bool) -> None:
    """``--json``: the JSON object on stdout and the summary on stderr (pipes stay clean);
    otherwise the JSON, indented, then the summary line."""
    if as_json:
        print(json.dumps(result, sort_keys=False))
        print(summary, file=sys.stderr)
    else:
        print(json.dumps(result, indent=2))
        print(summary)
