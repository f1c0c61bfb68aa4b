"""``POST /api/query`` under 1, 8 and 16 concurrent clients against a live ``carqa serve``.

Usage (from the repository root)::

    .venv/bin/python bench/http_load.py --json                       # 10 s per level
    .venv/bin/python bench/http_load.py --clients 1,8 --seconds 3    # a quick look

Starts ``carqa serve`` on ``127.0.0.1`` at a free port as a child process (loopback only) on the
benchmark index (built from PubMedQA's corpus first if missing, as ``bench/query.py`` does),
waits for ``/readyz``, warms it up, then drives ``/api/query`` with PubMedQA dev questions at
each concurrency level — each client sends its next request as soon as the previous answer
arrived (closed loop) — for ``--seconds`` or ``--max-requests``, whichever comes first. Reports
p50/p95 latency, requests/s and errors (transport errors and non-200 answers) per level, and the
server's resident memory; writes a plot of latency and throughput against concurrency
(``docs/bench-http.png`` by default); stops the server.

Load generators: Debian's ``wrk`` when installed (``apt-get install wrk``; C, so the load
generator takes little of the CPU the server needs), otherwise an asyncio loop over
``httpx.AsyncClient`` (``--driver httpx`` forces it). Every request's question is made unique
by a counter suffix (``" (#<n>)"``) so the server's query-vector cache cannot answer it: the
numbers are for questions it has not seen (``--repeat`` sends the questions verbatim instead).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # for bench._common

from bench._common import (
    DEFAULT_CORPUS,
    DEFAULT_QUESTIONS,
    REPO_ROOT,
    LiveServer,
    default_index_dir,
    drive_httpx,
    ensure_index,
    load_average,
    load_dev_questions,
    machine_info,
    non_negative_float,
    percentile,
    positive_float,
    positive_int,
    print_result,
    require_files,
    run_script,
)

GOAL_P50_MS_AT_8 = 15.0
GOAL_RPS = 200.0
DEFAULT_PLOT = REPO_ROOT / "docs" / "bench-http.png"


@dataclass
class Level:
    """One concurrency level's outcome."""

    clients: int
    requests: int
    seconds: float
    rps: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    mean_ms: float
    errors: int
    error_kinds: dict[str, int] = field(default_factory=dict)
    server_rss_mib: float | None = None


def client_levels(text: str) -> list[int]:
    """argparse ``type`` of ``--clients``: comma-separated client counts, each ≥ 1."""
    levels = [positive_int(part.strip()) for part in text.split(",") if part.strip()]
    if not levels:
        raise argparse.ArgumentTypeError("give at least one client count, e.g. 1,8,16")
    return levels


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    parser.add_argument(
        "--clients",
        type=client_levels,
        default=[1, 8, 16],
        help="concurrency levels (comma-separated; default 1,8,16)",
    )
    parser.add_argument(
        "--seconds", type=positive_float, default=10.0, help="duration of each level"
    )
    parser.add_argument(
        "--max-requests",
        type=positive_int,
        default=50_000,
        help="cap on requests per level (httpx)",
    )
    parser.add_argument("--warmup-seconds", type=non_negative_float, default=3.0)
    parser.add_argument("--index-dir", type=Path, default=None, help="index to serve")
    parser.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS, help="built if missing")
    parser.add_argument("--questions", type=Path, default=DEFAULT_QUESTIONS)
    parser.add_argument("--driver", choices=("auto", "wrk", "httpx"), default="auto")
    parser.add_argument("--repeat", action="store_true", help="send questions verbatim")
    parser.add_argument("--plot", type=Path, default=DEFAULT_PLOT, help="PNG to write")
    parser.add_argument("--no-plot", action="store_true")
    parser.add_argument(
        "--workers", type=positive_int, default=1, help="server processes (carqa serve --workers)"
    )
    parser.add_argument(
        "--threads",
        type=positive_int,
        default=None,
        help="CARQA_THREADS for the server's query encoder",
    )
    args = parser.parse_args(argv)
    require_files(parser, ("--corpus", args.corpus), ("--questions", args.questions))
    if args.driver == "wrk" and shutil.which("wrk") is None:
        parser.error("--driver wrk: wrk is not installed (apt-get install wrk, or --driver httpx)")
    if not args.no_plot and (args.plot.is_dir() or not args.plot.parent.is_dir()):
        # Checked now: the plot is written last, after minutes of load.
        problem = "is a directory" if args.plot.is_dir() else "is in no existing folder"
        parser.error(f"--plot: {args.plot} {problem} (give a .png file name, or --no-plot)")
    return args


# -- the httpx driver ----------------------------------------------------------------------


def run_httpx_level(
    base_url: str, questions: list[str], clients: int, args: argparse.Namespace, start_at: int
) -> Level:
    latencies, errors, wall = asyncio.run(
        drive_httpx(
            base_url,
            questions,
            clients=clients,
            seconds=args.seconds,
            max_requests=args.max_requests,
            repeat=args.repeat,
            start_at=start_at,
        )
    )
    total = len(latencies) + sum(errors.values())
    return Level(
        clients=clients,
        requests=total,
        seconds=round(wall, 2),
        rps=round(len(latencies) / wall, 1) if wall else 0.0,
        p50_ms=percentile(latencies, 50),
        p95_ms=percentile(latencies, 95),
        p99_ms=percentile(latencies, 99),
        mean_ms=round(sum(latencies) / len(latencies), 3) if latencies else float("nan"),
        errors=sum(errors.values()),
        error_kinds=dict(errors),
    )


# -- the wrk driver ------------------------------------------------------------------------

WRK_SCRIPT = """
-- Generated by bench/http_load.py: POST /api/query with PubMedQA dev questions.
local questions = {
%(questions)s
}
local repeat_verbatim = %(repeat)s
local counter = 0
local threads = {}
local next_id = 0

function setup(thread)
  thread:set("thread_id", next_id)
  next_id = next_id + 1
  table.insert(threads, thread)
end

function init(args)
  -- thread_id is set by setup(); args[1] offsets the counter so runs never repeat a question.
  counter = (tonumber(args[1]) or 0) + (thread_id or 0) * 1000003
end

function request()
  counter = counter + 1
  local q = questions[(counter %% #questions) + 1]
  if not repeat_verbatim then
    q = q .. " (#" .. thread_id .. "-" .. counter .. ")"
  end
  return wrk.format("POST", "/api/query", {["Content-Type"] = "application/json"},
                    '{"question": "' .. q .. '"}')
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write("CARQA-WRK-JSON ", string.format(
    '{"requests": %%d, "duration_us": %%d, "p50_us": %%d, "p95_us": %%d, "p99_us": %%d, '
    .. '"mean_us": %%f, "connect": %%d, "read": %%d, "write": %%d, "status": %%d, '
    .. '"timeout": %%d}\\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(95),
    latency:percentile(99), latency.mean, e.connect, e.read, e.write, e.status, e.timeout))
end
"""


def _lua_string(text: str) -> str:
    """A Lua long-bracket string holding ``text`` JSON-escaped (without the quotes)."""
    escaped = json.dumps(text, ensure_ascii=True)[1:-1]
    return "[==[" + escaped + "]==]"


def write_wrk_script(questions: list[str], *, repeat: bool, folder: Path) -> Path:
    path = folder / "carqa_query.lua"
    path.write_text(
        WRK_SCRIPT
        % {
            "questions": ",\n".join("  " + _lua_string(q) for q in questions),
            "repeat": "true" if repeat else "false",
        }
    )
    return path


def run_wrk_level(base_url: str, script: Path, clients: int, seconds: float, offset: int) -> Level:
    threads = min(clients, 2)
    command = [
        "wrk",
        f"-t{threads}",
        f"-c{clients}",
        f"-d{max(1, round(seconds))}s",
        "--timeout",
        "30s",
        "-s",
        str(script),
        f"{base_url}/api/query",
        "--",
        str(offset),
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 60)
    line = next((ln for ln in done.stdout.splitlines() if ln.startswith("CARQA-WRK-JSON ")), None)
    if done.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed ({done.returncode}): {done.stdout}\n{done.stderr}")
    data = json.loads(line.split(" ", 1)[1])
    kinds = {k: data[k] for k in ("connect", "read", "write", "status", "timeout") if data[k]}
    wall = data["duration_us"] / 1e6
    errors = sum(kinds.values())
    ok = data["requests"] - kinds.get("status", 0)
    return Level(
        clients=clients,
        requests=data["requests"],
        seconds=round(wall, 2),
        rps=round(ok / wall, 1) if wall else 0.0,
        p50_ms=round(data["p50_us"] / 1000, 3),
        p95_ms=round(data["p95_us"] / 1000, 3),
        p99_ms=round(data["p99_us"] / 1000, 3),
        mean_ms=round(data["mean_us"] / 1000, 3),
        errors=errors,
        error_kinds={f"wrk {k}": v for k, v in kinds.items()},
    )


# -- the run --------------------------------------------------------------------------------


def _workers(args: argparse.Namespace) -> list[str]:
    return ["--workers", str(args.workers)] if args.workers > 1 else []


def _rss_mib(pid: int, *, proportional: bool = False) -> float | None:
    """Resident memory of the server and its worker processes, summed. ``proportional``: PSS,
    where pages the processes share (the memory-mapped index) count once in the sum."""
    try:
        import psutil

        root = psutil.Process(pid)
        processes = [root, *root.children(recursive=True)]
        if proportional:
            total = sum(p.memory_full_info().pss for p in processes)
        else:
            total = sum(p.memory_info().rss for p in processes)
        return round(total / 2**20, 1)
    except Exception:  # psutil missing or the process gone: memory is a nice-to-have
        return None


def run(args: argparse.Namespace) -> dict[str, Any]:
    levels = list(args.clients)
    driver = args.driver
    if driver == "auto":
        driver = "wrk" if shutil.which("wrk") else "httpx"
    load_before = load_average()
    questions = [q for q, _ in load_dev_questions(args.questions)]  # before the index build
    if not questions:
        raise SystemExit(f"{args.questions} holds no questions.")
    index_dir = args.index_dir or default_index_dir()
    built = ensure_index(args.corpus, index_dir, progress=not args.json)

    server_env = {"CARQA_THREADS": str(args.threads)} if args.threads else {}
    results: list[Level] = []
    with (
        tempfile.TemporaryDirectory(prefix="carqa-bench-") as tmp,
        LiveServer(
            index_dir, env=server_env, extra_args=_workers(args), ready_timeout=900.0
        ) as server,
    ):
        assert server.process is not None
        pid = server.process.pid
        script = write_wrk_script(questions, repeat=args.repeat, folder=Path(tmp))
        # Warm-up: thread pool, encoder sessions, caches of the serving stack (not the answers).
        warm = run_httpx_level(
            server.base_url,
            questions[::-1],
            max(levels),
            argparse.Namespace(**{**vars(args), "seconds": args.warmup_seconds}),
            start_at=10**7,
        )
        rss_after_warmup = _rss_mib(pid)
        sent = 0
        for clients in levels:
            if driver == "wrk":
                offset = (len(results) + 1) * 10**8
                level = run_wrk_level(server.base_url, script, clients, args.seconds, offset)
            else:
                level = run_httpx_level(server.base_url, questions, clients, args, sent)
            sent += level.requests
            level.server_rss_mib = _rss_mib(pid)
            results.append(level)
        pss_end = _rss_mib(pid, proportional=True)
        exit_code = server.stop()

    by_clients = {level.clients: level for level in results}
    at8 = by_clients.get(8)
    best_rps = max((level.rps for level in results), default=0.0)
    result: dict[str, Any] = {
        "driver": driver,
        "unique_questions": not args.repeat,
        "seconds_per_level": args.seconds,
        "levels": [asdict(level) for level in results],
        "errors": sum(level.errors for level in results),
        "max_rps": best_rps,
        "goals": {
            f"p50_ms_at_8<={GOAL_P50_MS_AT_8:g}": None
            if at8 is None
            else at8.p50_ms <= GOAL_P50_MS_AT_8,
            f"rps>={GOAL_RPS:g}": best_rps >= GOAL_RPS,
            "zero_errors": all(level.errors == 0 for level in results),
        },
        "warmup": {"requests": warm.requests, "errors": warm.errors},
        "server": {
            "rss_mib_after_warmup": rss_after_warmup,
            "rss_mib_end": results[-1].server_rss_mib if results else None,
            "pss_mib_end": pss_end,
            "workers": args.workers,
            "exit_code": exit_code,
            "carqa_threads": args.threads or "auto (from the load average at start-up)",
            **built,
        },
        "machine": {**machine_info(), "load_average_before": load_before},
    }
    if not args.no_plot and results:
        load = result["machine"]["load_average_before"]
        note = f", {os.cpu_count()} CPUs, load before {load[0]:.1f}" if load else ""
        result["plot"] = str(plot(results, args.plot, driver=driver, note=note))
    return result


def plot(levels: list[Level], path: Path, *, driver: str, note: str = "") -> Path:
    """Latency (p50, p95) and throughput against concurrency, as a small PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    clients = [level.clients for level in levels]
    fig, latency_axis = plt.subplots(figsize=(6.4, 3.6), dpi=100)
    latency_axis.plot(clients, [lv.p50_ms for lv in levels], "o-", label="p50 latency")
    latency_axis.plot(clients, [lv.p95_ms for lv in levels], "s--", label="p95 latency")
    latency_axis.axhline(
        GOAL_P50_MS_AT_8, color="grey", linewidth=0.8, linestyle=":", label="p50 goal (8 clients)"
    )
    latency_axis.set_xlabel("concurrent clients")
    latency_axis.set_ylabel("latency (ms)")
    latency_axis.set_xticks(clients)
    latency_axis.set_ylim(bottom=0)
    throughput_axis = latency_axis.twinx()
    throughput_axis.plot(
        clients, [lv.rps for lv in levels], "^-", color="tab:green", label="requests/s"
    )
    throughput_axis.set_ylabel("requests/s")
    throughput_axis.set_ylim(bottom=0)
    lines = latency_axis.get_lines()[:3] + throughput_axis.get_lines()
    latency_axis.legend(lines, [ln.get_label() for ln in lines], loc="upper left", fontsize=8)
    latency_axis.set_title(f"carqa POST /api/query on 127.0.0.1 ({driver}){note}", fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def summary(result: dict[str, Any]) -> str:
    parts = [
        f"{lv['clients']} clients: p50 {lv['p50_ms']:.1f} ms, p95 {lv['p95_ms']:.1f} ms, "
        f"{lv['rps']:.0f} req/s, {lv['errors']} errors"
        for lv in result["levels"]
    ]
    load = result["machine"].get("load_average")
    return " | ".join(parts) + f" ({result['driver']}, load {load[0] if load else '?'})"


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    result = run(args)
    print_result(result, summary(result), as_json=args.json)


if __name__ == "__main__":
    run_script(main)
