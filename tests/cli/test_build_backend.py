"""``carqa build --runner ray --backend milvus``: the Ray build written to Milvus at build time,
answering as the in-process build on the embedded backend does.

Skipped when Ray or the Milvus client and Milvus Lite are not installed (the optional
``[scale]`` extra); a build without ``--backend`` never imports them.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from carqa.cli import app

FIXTURE = Path(__file__).resolve().parent.parent / "fixtures" / "car_t_papers.jsonl"
QUESTIONS = [
    "Does tisagenlecleucel cause cytokine release syndrome in children?",
    "Which costimulatory domain do CD19 CAR T cells use?",
    "What is the role of IL-6 in CRS?",
    "What is the capital of Australia?",
]


def _comparable(answer: Any) -> dict[str, Any]:
    data = answer.to_dict()
    data.pop("took_ms")
    for citation in data.get("citations", []):
        citation["score"] = round(citation["score"], 4)
    return data


@pytest.mark.slow
def test_a_ray_build_written_to_milvus_answers_as_the_embedded_build(
    small_index: Any, small_index_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("ray", reason='Ray is not installed ("carqa[scale]")')
    pytest.importorskip("pymilvus", reason='the Milvus client is not installed ("carqa[scale]")')
    pytest.importorskip("milvus_lite", reason='Milvus Lite is not installed ("carqa[scale]")')
    from carqa.index.search import milvus
    from carqa.index.search.backends import MilvusBackend
    from carqa.index.search.reader import Index
    from carqa.qa.engine import Engine

    index_dir = tmp_path / "idx"
    shutil.copytree(small_index_dir / "cache", index_dir / "cache")  # nothing to embed
    uri = str(tmp_path / "served" / "milvus.db")
    result = CliRunner().invoke(
        app,
        [
            *("build", "--from", str(FIXTURE), "--index-dir", str(index_dir)),
            *("--runner", "ray", "--backend", "milvus"),
        ],
        env={"COLUMNS": "250", "CARQA_MILVUS_URI": uri},
    )
    assert result.exit_code == 0, result.output
    assert "Search backend: milvus" in result.output

    built = Index.open(index_dir)
    assert built.manifest["runner"] == "ray"
    backend = MilvusBackend(uri=uri, collection=milvus.collection_name(built.manifest))

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("serving wrote the collection: the build should have")

    monkeypatch.setattr(milvus, "write_collection", refuse)
    served = Engine(built, backend=backend)
    embedded = Engine(small_index)
    for question in QUESTIONS:
        assert _comparable(served.ask(question)) == _comparable(embedded.ask(question)), question


def test_a_build_for_milvus_without_its_client_is_refused_before_it_starts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "pymilvus", None)  # as if not installed
    result = CliRunner().invoke(
        app,
        [
            *("build", "--from", str(FIXTURE), "--index-dir", str(tmp_path / "idx")),
            *("--backend", "milvus"),
        ],
        env={"COLUMNS": "250"},
    )
    assert result.exit_code != 0
    assert "carqa[scale]" in result.output
    assert not (tmp_path / "idx").exists()
