"""``carqa serve`` and its index: a missing one is explained, --build-if-missing builds it
(from files or PubMed) and says when an existing index is kept."""

from __future__ import annotations

import sys
import types
from pathlib import Path
from typing import Any

import pytest

import carqa.cli.serve as cli_serve
from carqa.cli import app
from carqa.errors import IndexNotFound
from carqa.settings import Settings
from tests.api.fakes import FakeEngine
from tests.cli.helpers import Recorder, runner


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
