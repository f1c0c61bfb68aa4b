"""``carqa serve``: a missing index is explained, --build-if-missing builds it, uvicorn gets
the app and the settings."""

from __future__ import annotations

import sys
import types
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

import carqa.cli.serve as cli_serve
from carqa.cli import app
from carqa.errors import IndexNotFound
from carqa.settings import Settings
from tests.api.fakes import FakeEngine

runner = CliRunner()


class Recorder:
    def __init__(self) -> None:
        self.calls: list[tuple[tuple[Any, ...], dict[str, Any]]] = []

    def __call__(self, *args: Any, **kwargs: Any) -> None:
        self.calls.append((args, kwargs))


@pytest.fixture
def uvicorn_run(monkeypatch: pytest.MonkeyPatch) -> Recorder:
    import uvicorn

    recorder = Recorder()
    monkeypatch.setattr(uvicorn, "run", recorder)
    # uvicorn does not really bind here, so neither does the check (port 8000 may be taken
    # on a shared machine); test_port_in_use_* run the real check.
    monkeypatch.setattr(cli_serve, "check_port_free", lambda host, port: None)
    return recorder


@pytest.fixture
def index_state(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """Fake engine opening: missing until a (fake) build has run."""
    state: dict[str, Any] = {"built": False, "builds": []}

    def fake_open(settings: Settings) -> FakeEngine:
        if not state["built"]:
            raise IndexNotFound(f"No index in {settings.index_dir}.")
        return FakeEngine()

    def fake_build(settings: Settings, *, sources: list[Path] | None = None, **kw: Any) -> None:
        state["builds"].append((settings.index_dir, sources))
        state["built"] = True

    monkeypatch.setattr(cli_serve, "open_engine", fake_open)
    module = types.ModuleType("carqa.index.corpus.pipeline")
    module.build = fake_build  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "carqa.index.corpus.pipeline", module)
    return state


def test_missing_index_says_how_to_build_and_exits_non_zero(
    tmp_path: Path, uvicorn_run: Recorder, index_state: dict[str, Any]
) -> None:
    result = runner.invoke(app, ["serve", "--index-dir", str(tmp_path)])
    assert result.exit_code != 0
    assert "No index" in result.output
    assert "carqa build" in result.output
    assert "--build-if-missing" in result.output
    assert "Traceback" not in result.output
    assert uvicorn_run.calls == []
    assert index_state["builds"] == []


def test_build_if_missing_builds_from_files_then_serves(
    tmp_path: Path, uvicorn_run: Recorder, index_state: dict[str, Any]
) -> None:
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text('{"pmid": "1", "abstract": "x"}\n')
    result = runner.invoke(
        app,
        [
            "serve",
            "--index-dir",
            str(tmp_path / "idx"),
            "--build-if-missing",
            "--from",
            str(corpus),
            "--host",
            "127.0.0.1",
            "--port",
            "8123",
        ],
    )
    assert result.exit_code == 0, result.output
    assert index_state["builds"] == [(tmp_path / "idx", [corpus])]
    assert "Serving carqa" in result.output
    [(args, kwargs)] = uvicorn_run.calls
    assert (kwargs["host"], kwargs["port"]) == ("127.0.0.1", 8123)
    served = args[0]
    assert served.state.settings.index_dir == tmp_path / "idx"
    assert isinstance(served.state.services.engine, FakeEngine)  # opened once, passed in


def test_existing_index_is_served_without_building(
    tmp_path: Path, uvicorn_run: Recorder, index_state: dict[str, Any]
) -> None:
    index_state["built"] = True
    result = runner.invoke(app, ["serve", "--index-dir", str(tmp_path), "--build-if-missing"])
    assert result.exit_code == 0, result.output
    assert index_state["builds"] == []
    assert len(uvicorn_run.calls) == 1


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
    _no_traceback(result)
    assert "'--sessions-path'" in result.output
    assert uvicorn_run.calls == []


def test_from_must_exist(tmp_path: Path, uvicorn_run: Recorder) -> None:
    result = runner.invoke(
        app, ["serve", "--build-if-missing", "--from", str(tmp_path / "missing.jsonl")]
    )
    assert result.exit_code == 2
    assert uvicorn_run.calls == []


def test_from_takes_a_directory_as_build_does(
    tmp_path: Path, uvicorn_run: Recorder, index_state: dict[str, Any]
) -> None:
    """`carqa build --from my_dir/` reads a directory of files; serve's --from, which runs the
    same build, refused one as a usage error ("is a directory")."""
    folder = tmp_path / "papers"
    folder.mkdir()
    (folder / "a.jsonl").write_text('{"pmid": "1", "abstract": "x"}\n')
    args = ["serve", "--index-dir", str(tmp_path / "idx"), "--build-if-missing"]
    result = runner.invoke(app, [*args, "--from", str(folder)])
    assert result.exit_code == 0, result.output
    assert index_state["builds"] == [(tmp_path / "idx", [folder])]
    assert len(uvicorn_run.calls) == 1


def test_real_engine_on_an_empty_directory_explains_how_to_build(
    tmp_path: Path, uvicorn_run: Recorder
) -> None:
    result = runner.invoke(app, ["serve", "--index-dir", str(tmp_path)])
    assert result.exit_code == 1
    assert "carqa build" in result.output
    assert "Traceback" not in result.output
    assert uvicorn_run.calls == []


# -- flags and settings uvicorn would have crashed on ---------------------------------------


def _no_traceback(result) -> None:
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)


@pytest.mark.parametrize("port", ["99999", "65536", "0", "-1"])
def test_port_out_of_range_is_a_usage_error(
    tmp_path: Path, uvicorn_run: Recorder, index_state: dict[str, Any], port: str
) -> None:
    index_state["built"] = True
    result = runner.invoke(app, ["serve", "--index-dir", str(tmp_path), "--port", port])
    assert result.exit_code == 2
    _no_traceback(result)
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
    _no_traceback(result)
    assert "port (CARQA_PORT) = '-1'" in result.stderr
    assert uvicorn_run.calls == []


def test_unknown_log_level_is_a_usage_error(
    tmp_path: Path, uvicorn_run: Recorder, index_state: dict[str, Any]
) -> None:
    index_state["built"] = True
    result = runner.invoke(app, ["serve", "--index-dir", str(tmp_path), "--log-level", "foo"])
    assert result.exit_code == 2
    _no_traceback(result)
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
    other = tmp_path / "other-model"
    other.mkdir()
    (other / "model.safetensors").write_bytes(bytes(range(256)) * 16)
    (other / "config.json").write_text('{"hidden_size": 384}')
    result = runner.invoke(
        app,
        ["serve", "--index-dir", str(small_index_dir), "--model", str(other)],
        env={"COLUMNS": "250"},
    )
    assert result.exit_code == 1
    _no_traceback(result)
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
    _no_traceback(result)


def test_port_check_passes_a_free_port() -> None:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    REAL_PORT_CHECK("127.0.0.1", port)  # nothing raised: the server may start


def _engine_built_from(source: str) -> FakeEngine:
    engine = FakeEngine()
    engine.index = types.SimpleNamespace(manifest={"corpus": {"source": source}})  # type: ignore[attr-defined]
    return engine


def test_build_if_missing_from_other_files_says_the_index_is_kept(
    tmp_path: Path, uvicorn_run: Recorder, monkeypatch: pytest.MonkeyPatch
) -> None:
    """--from was ignored without a word when an index (of another corpus) existed."""
    old = tmp_path / "old" / "corpus.jsonl"
    new = tmp_path / "medline.xml.gz"
    new.write_bytes(b"")
    engine = _engine_built_from(f"files:{old}")
    monkeypatch.setattr(cli_serve, "open_engine", lambda settings: engine)
    index_dir = tmp_path / "idx"
    result = runner.invoke(
        app,
        ["serve", "--index-dir", str(index_dir), "--build-if-missing", "--from", str(new)],
    )
    assert result.exit_code == 0, result.output
    said = " ".join(result.stderr.split())  # as one line, however the console wrapped it
    assert "already holds an index built from corpus.jsonl, not from the --from files" in said
    # Long paths are folded mid-word at the console's width: compare without white space.
    rebuild = f"carqa build --from {new} --index-dir {index_dir}"
    assert "".join(rebuild.split()) in "".join(said.split())
    assert len(uvicorn_run.calls) == 1


def test_build_if_missing_from_the_same_files_says_nothing(
    tmp_path: Path, uvicorn_run: Recorder, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "data"
    folder.mkdir()
    (folder / "a.jsonl").write_text("")
    engine = _engine_built_from(f"files:{folder / 'a.jsonl'}")
    monkeypatch.setattr(cli_serve, "open_engine", lambda settings: engine)
    result = runner.invoke(
        app, ["serve", "--index-dir", str(tmp_path), "--build-if-missing", "--from", str(folder)]
    )
    assert result.exit_code == 0, result.output
    assert "already holds" not in result.stderr


def test_same_source_compares_files_and_folders(tmp_path: Path) -> None:
    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    assert cli_serve.same_source(f"files:{a},{b}", [tmp_path])
    assert cli_serve.same_source(f"files:{a}", [a])
    assert not cli_serve.same_source(f"files:{a},{b}", [a])  # b was read too
    assert not cli_serve.same_source(f"files:{a}", [a, b])  # b would be new
    assert not cli_serve.same_source("pubmed:pmid:30936547", [a])


def test_build_if_missing_passes_email_to_the_pubmed_build(
    tmp_path: Path, uvicorn_run: Recorder, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The README's one command carries the contact email NCBI asks for."""
    seen: list[str | None] = []
    state = {"built": False}

    def fake_open(settings: Settings) -> FakeEngine:
        if not state["built"]:
            raise IndexNotFound("No index.")
        return FakeEngine()

    def fake_build(settings: Settings, **kw: Any) -> None:
        seen.append(settings.ncbi_email)
        state["built"] = True

    monkeypatch.setattr(cli_serve, "open_engine", fake_open)
    module = types.ModuleType("carqa.index.corpus.pipeline")
    module.build = fake_build  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "carqa.index.corpus.pipeline", module)
    result = runner.invoke(
        app,
        ["serve", "--index-dir", str(tmp_path), "--build-if-missing", "--email", "a@b.org"],
    )
    assert result.exit_code == 0, result.output
    assert seen == ["a@b.org"]


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
