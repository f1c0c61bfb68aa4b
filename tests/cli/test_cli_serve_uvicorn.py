"""``carqa serve``: what uvicorn gets (the app or its factory, workers, reload, limits,
proxies), and the flags it would have crashed on, refused first with a message."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import carqa.cli.serve as cli_serve
from carqa.cli import app
from tests.cli.helpers import Recorder, no_traceback, other_model, runner


def test_reload_serves_the_factory_with_settings_in_the_environment(
    tmp_path: Path,
    uvicorn_run: Recorder,
    index_state: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("CARQA_INDEX_DIR", raising=False)
    index_state["built"] = True
    result = runner.invoke(app, ["serve", "--index-dir", str(tmp_path), "--reload"])
    assert result.exit_code == 0, result.output
    [(args, kwargs)] = uvicorn_run.calls
    assert args == ("carqa.api.app:app_from_env",)
    assert kwargs["factory"] is True and kwargs["reload"] is True
    import os

    assert os.environ["CARQA_INDEX_DIR"] == str(tmp_path)
    monkeypatch.delenv("CARQA_INDEX_DIR")


def test_workers_each_open_the_app_from_the_environment(
    tmp_path: Path,
    uvicorn_run: Recorder,
    index_state: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Worker processes import the app by name: an app object opened in this process could
    not be handed to them (uvicorn refuses workers without an import string)."""
    monkeypatch.delenv("CARQA_INDEX_DIR", raising=False)
    index_state["built"] = True
    result = runner.invoke(app, ["serve", "--index-dir", str(tmp_path), "--workers", "2"])
    assert result.exit_code == 0, result.output
    [(args, kwargs)] = uvicorn_run.calls
    assert args == ("carqa.api.app:app_from_env",)
    assert kwargs["factory"] is True and kwargs["workers"] == 2
    import os

    assert os.environ["CARQA_INDEX_DIR"] == str(tmp_path)
    monkeypatch.delenv("CARQA_INDEX_DIR")


def test_one_worker_serves_the_engine_already_opened(
    tmp_path: Path, uvicorn_run: Recorder, index_state: dict[str, Any]
) -> None:
    index_state["built"] = True
    result = runner.invoke(app, ["serve", "--index-dir", str(tmp_path), "--workers", "1"])
    assert result.exit_code == 0, result.output
    [(args, kwargs)] = uvicorn_run.calls
    assert not isinstance(args[0], str) and "workers" not in kwargs


def test_sessions_path_flag_reaches_the_app_and_a_reloaded_one(
    tmp_path: Path,
    uvicorn_run: Recorder,
    index_state: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CARQA_INDEX_DIR", str(tmp_path))  # restored after the test
    monkeypatch.setenv("CARQA_SESSIONS_PATH", str(tmp_path / "from-env.sqlite"))
    index_state["built"] = True
    sessions = tmp_path / "writable" / "sessions.sqlite"
    flags = ["serve", "--index-dir", str(tmp_path), "--sessions-path", str(sessions)]
    result = runner.invoke(app, flags)
    assert result.exit_code == 0, result.output
    served = uvicorn_run.calls[0][0][0]
    assert served.state.settings.sessions_file == sessions  # the flag wins over the env
    result = runner.invoke(app, [*flags, "--reload"])
    assert result.exit_code == 0, result.output
    import os

    assert os.environ["CARQA_SESSIONS_PATH"] == str(sessions)


def test_sessions_path_must_not_be_a_directory(
    tmp_path: Path, uvicorn_run: Recorder, index_state: dict[str, Any]
) -> None:
    index_state["built"] = True
    result = runner.invoke(
        app, ["serve", "--index-dir", str(tmp_path), "--sessions-path", str(tmp_path)]
    )
    assert result.exit_code == 2
    no_traceback(result)
    assert "'--sessions-path'" in result.output
    assert uvicorn_run.calls == []


# -- flags and settings uvicorn would have crashed on ---------------------------------------


@pytest.mark.parametrize("port", ["99999", "65536", "0", "-1"])
def test_port_out_of_range_is_a_usage_error(
    tmp_path: Path, uvicorn_run: Recorder, index_state: dict[str, Any], port: str
) -> None:
    index_state["built"] = True
    result = runner.invoke(app, ["serve", "--index-dir", str(tmp_path), "--port", port])
    assert result.exit_code == 2
    no_traceback(result)
    assert "'--port'" in result.output
    assert uvicorn_run.calls == []


def test_port_out_of_range_in_the_environment_is_named(
    tmp_path: Path, uvicorn_run: Recorder, index_state: dict[str, Any]
) -> None:
    index_state["built"] = True
    result = runner.invoke(
        app, ["serve", "--index-dir", str(tmp_path)], env={"CARQA_PORT": "-1", "COLUMNS": "250"}
    )
    assert result.exit_code == 2
    no_traceback(result)
    assert "port (CARQA_PORT) = '-1'" in result.stderr
    assert uvicorn_run.calls == []


def test_unknown_log_level_is_a_usage_error(
    tmp_path: Path, uvicorn_run: Recorder, index_state: dict[str, Any]
) -> None:
    index_state["built"] = True
    result = runner.invoke(app, ["serve", "--index-dir", str(tmp_path), "--log-level", "foo"])
    assert result.exit_code == 2
    no_traceback(result)
    assert "'--log-level'" in result.output
    assert uvicorn_run.calls == []


def test_log_level_is_case_insensitive_and_reaches_uvicorn(
    tmp_path: Path, uvicorn_run: Recorder, index_state: dict[str, Any]
) -> None:
    index_state["built"] = True
    result = runner.invoke(app, ["serve", "--index-dir", str(tmp_path), "--log-level", "WARNING"])
    assert result.exit_code == 0, result.output
    [(_, kwargs)] = uvicorn_run.calls
    assert kwargs["log_level"] == "warning"
    assert type(kwargs["log_level"]) is str


def test_log_level_choices_are_uvicorns() -> None:
    from uvicorn.config import LOG_LEVELS

    assert [level.value for level in cli_serve.LogLevel] == list(LOG_LEVELS)


def test_serve_refuses_a_model_that_is_not_the_indexs(
    small_index_dir: Path, tmp_path: Path, uvicorn_run: Recorder
) -> None:
    other = other_model(tmp_path / "other-model")
    result = runner.invoke(
        app,
        ["serve", "--index-dir", str(small_index_dir), "--model", str(other)],
        env={"COLUMNS": "250"},
    )
    assert result.exit_code == 1
    no_traceback(result)
    assert "was built with model 'default'" in result.stderr
    assert uvicorn_run.calls == []


def test_reload_passes_only_a_requested_model_on(
    tmp_path: Path,
    uvicorn_run: Recorder,
    index_state: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Unset, the reloaded app must open the index with the index's own model too."""
    monkeypatch.delenv("CARQA_MODEL", raising=False)
    monkeypatch.setenv("CARQA_INDEX_DIR", str(tmp_path))  # restored after the test
    index_state["built"] = True
    result = runner.invoke(app, ["serve", "--index-dir", str(tmp_path), "--reload"])
    assert result.exit_code == 0, result.output
    import os

    assert "CARQA_MODEL" not in os.environ


REAL_PORT_CHECK = cli_serve.check_port_free


def test_port_in_use_is_refused_before_loading_with_a_port_hint(
    tmp_path: Path,
    uvicorn_run: Recorder,
    index_state: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import socket

    monkeypatch.setattr(cli_serve, "check_port_free", REAL_PORT_CHECK)
    index_state["built"] = True
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        result = runner.invoke(
            app, ["serve", "--index-dir", str(tmp_path), "--port", str(port), "--build-if-missing"]
        )
    assert result.exit_code == 1, result.output
    assert f"Port {port} on 127.0.0.1 is already in use." in result.stderr
    assert f"carqa serve --port {port + 1}" in result.stderr
    assert "Serving carqa" not in result.output
    assert uvicorn_run.calls == [] and index_state["builds"] == []
    no_traceback(result)


def test_port_check_passes_a_free_port() -> None:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    REAL_PORT_CHECK("127.0.0.1", port)  # nothing raised: the server may start


def test_connection_limits_and_trusted_proxies_reach_uvicorn(
    tmp_path: Path, uvicorn_run: Recorder, index_state: dict[str, Any]
) -> None:
    from carqa.api.connections import PROTOCOL, GuardedH11Protocol

    index_state["built"] = True
    result = runner.invoke(app, ["serve", "--index-dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    [(_, default)] = uvicorn_run.calls
    assert default["http"] == PROTOCOL
    assert default["proxy_headers"] is False  # X-Forwarded-For believed from no one

    flags = ["--max-connections", "40", "--header-timeout", "3"]
    flags += ["--forwarded-allow-ips", "10.0.0.7, 10.1.0.0/16"]
    result = runner.invoke(app, ["serve", "--index-dir", str(tmp_path), *flags])
    assert result.exit_code == 0, result.output
    [_, (_, configured)] = uvicorn_run.calls
    assert configured["proxy_headers"] is True
    assert configured["forwarded_allow_ips"] == "10.0.0.7,10.1.0.0/16"
    assert GuardedH11Protocol.limits == (40, 3.0)
