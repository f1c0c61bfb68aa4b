"""``carqa serve``: the HTTP API and the web chat widget.

The engine (model + index) is opened here, before uvicorn starts, so a missing index is a
clear message and a non-zero exit instead of a server that answers 503 — and so the model is
loaded exactly once. With ``--workers N`` each worker process opens it again (uvicorn imports
the app by name); the index's vector files are memory-mapped, so the workers share them.
``--build-if-missing`` builds the corpus and index first (from PubMed, or
from ``--from`` files), which makes "clone, set up, serve" one command.
"""

from __future__ import annotations

import os
from enum import StrEnum
from pathlib import Path
from typing import Any

import typer
from rich.markup import escape

from carqa.api.connections import uvicorn_options
from carqa.api.services import open_engine
from carqa.cli.common import app, err_console, friendly_errors
from carqa.errors import IndexNotFound
from carqa.settings import Settings

BUILD_HINT = (
    "Build it first with `carqa build` (from PubMed) or `carqa build --from corpus.jsonl`, "
    "or run `carqa serve --build-if-missing [--from PATH]`."
)


class LogLevel(StrEnum):
    """uvicorn's log levels (``uvicorn.config.LOG_LEVELS``, which a test keeps in step): a
    choice here, so ``--log-level foo`` is a usage error, not uvicorn's ``KeyError``."""

    critical = "critical"
    error = "error"
    warning = "warning"
    info = "info"
    debug = "debug"
    trace = "trace"


@app.command()
@friendly_errors
def serve(
    # Help texts are rich markup (typer's rich mode): "[default: ...]" would vanish.
    host: str | None = typer.Option(None, "--host", help="Interface to bind (default: 127.0.0.1)."),
    port: int | None = typer.Option(
        None, "--port", min=1, max=65535, help="Port to listen on (default: 8000)."
    ),
    index_dir: Path | None = typer.Option(None, "--index-dir", help="The index directory."),
    model: str | None = typer.Option(None, "--model", help="Embedding model of the index."),
    sessions_path: Path | None = typer.Option(
        None,
        "--sessions-path",
        help="Chat sessions database, for a read-only index directory "
        "(default: <index dir>/sessions.sqlite).",
        dir_okay=False,
    ),
    build_if_missing: bool = typer.Option(
        False, "--build-if-missing", help="Build the corpus and index first if none exists."
    ),
    sources: list[Path] | None = typer.Option(
        None,
        "--from",
        help="With --build-if-missing: build from these files (PubMed XML, JSONL, a snapshot, "
        "or a directory of them), not PubMed. Repeatable.",
        # Directories too: the same build as `carqa build --from`, which reads them.
        exists=True,
        readable=True,
    ),
    max_connections: int | None = typer.Option(
        None,
        "--max-connections",
        min=1,
        help="Open connections at most; at the cap the oldest idle one is closed "
        "(default: half the open-file limit, at most 1000).",
    ),
    header_timeout: float | None = typer.Option(
        None,
        "--header-timeout",
        min=0.1,
        help="Seconds a client may take to send a request's headers (default: 10).",
    ),
    forwarded_allow_ips: str | None = typer.Option(
        None,
        "--forwarded-allow-ips",
        help="Reverse proxies whose X-Forwarded-For is believed: comma-separated IPs or "
        "networks (default: none, each client is its peer address).",
    ),
    reload: bool = typer.Option(False, "--reload", help="Restart on code changes (development)."),
    workers: int = typer.Option(
        1,
        "--workers",
        min=1,
        max=64,
        help="Server processes. Each opens the index itself; the vector files are "
        "memory-mapped, so the processes share their pages.",
    ),
    log_level: LogLevel = typer.Option(
        LogLevel.info, "--log-level", case_sensitive=False, help="uvicorn log level."
    ),
) -> None:
    """Serve the HTTP API and the web chat widget."""
    import uvicorn

    settings = Settings.load(
        host=host,
        port=port,
        index_dir=index_dir,
        model=model,
        sessions_path=sessions_path,
        max_connections=max_connections,
        header_timeout_seconds=header_timeout,
        forwarded_allow_ips=forwarded_allow_ips,
    )
    if sources and not build_if_missing:
        err_console.print("[yellow]Note:[/] --from is only used with --build-if-missing.")
    engine = _open_or_build(settings, build_if_missing=build_if_missing, sources=sources or [])
    _print_banner(settings, engine)

    options: dict[str, Any] = {
        "host": settings.host,
        "port": settings.port,
        "log_level": log_level.value,
        **uvicorn_options(settings),  # slow clients, the connection cap, trusted proxies
    }
    if workers > 1 and not reload:
        # Each worker process imports the app and opens the engine itself (the one opened
        # above only proved, with a clear message, that the index opens).
        _settings_to_env(settings)
        del engine
        import gc

        gc.collect()
        uvicorn.run("carqa.api.app:app_from_env", factory=True, workers=workers, **options)
        return
    if reload:
        # The reloader imports the app in a fresh process: pass the settings through the env.
        _settings_to_env(settings)
        del engine
        import carqa.api
        import carqa.index
        import carqa.qa

        packages = (carqa, carqa.index, carqa.qa, carqa.api)
        uvicorn.run(
            "carqa.api.app:app_from_env",
            factory=True,
            reload=True,
            reload_dirs=[str(Path(package.__file__).parent) for package in packages],
            **options,
        )
        return

    from carqa.api.app import create_app

    uvicorn.run(create_app(settings, engine=engine), **options)


def _settings_to_env(settings: Settings) -> None:
    """Settings for an app imported in another process (reloader, workers)."""
    os.environ["CARQA_INDEX_DIR"] = str(settings.index_dir)
    if settings.sessions_path is not None:
        os.environ["CARQA_SESSIONS_PATH"] = str(settings.sessions_path)
    if settings.requested_model is not None:  # unset stays unset: the index's own model
        os.environ["CARQA_MODEL"] = settings.requested_model
    _export_connection_settings(settings)


def _export_connection_settings(settings: Settings) -> None:
    """The connection limits for a process that reads them from the environment (the
    reloader's): its protocol class configures itself from ``CARQA_*``."""
    given = settings.model_fields_set
    if "header_timeout_seconds" in given:
        os.environ["CARQA_HEADER_TIMEOUT_SECONDS"] = str(settings.header_timeout_seconds)
    if settings.max_connections is not None:
        os.environ["CARQA_MAX_CONNECTIONS"] = str(settings.max_connections)
    if settings.forwarded_allow_ips:
        os.environ["CARQA_FORWARDED_ALLOW_IPS"] = ",".join(settings.forwarded_allow_ips)


def _open_or_build(settings: Settings, *, build_if_missing: bool, sources: list[Path]) -> Any:
    """Open the engine; on a missing index build one (when asked) or explain how to."""
    try:
        return open_engine(settings)
    except IndexNotFound as error:
        if not build_if_missing:
            raise IndexNotFound(error.message, hint=BUILD_HINT) from None
    where = ", ".join(str(path) for path in sources) if sources else "PubMed"
    err_console.print(
        f"No index in {escape(str(settings.index_dir))}: building one from {escape(where)}."
    )
    from carqa.cli.progress import progress_bars
    from carqa.index.corpus.pipeline import (
        build,  # the ingest + index pipeline (heavy imports)
    )

    with progress_bars() as on_progress:
        report = build(settings, sources=sources or None, on_progress=on_progress)
    if report is not None:
        from carqa.cli.build import print_build_summary  # the same summary `carqa build` prints

        print_build_summary(report)
    return open_engine(settings)


def _print_banner(settings: Settings, engine: Any) -> None:
    try:
        stats = engine.stats()
    except Exception:  # the banner is cosmetic; never let it stop the server
        stats = {}
    papers = stats.get("papers")
    counted = f" ({papers} papers)" if papers is not None else ""
    url = escape(f"http://{settings.host}:{settings.port}")  # --host is the user's text
    err_console.print(f"Index: {escape(str(settings.index_dir))}{counted}")
    err_console.print(
        f"Serving carqa on [bold]{url}[/] — chat demo at {url}/, API docs at {url}/docs",
        highlight=False,
    )
