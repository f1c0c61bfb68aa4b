"""``carqa build --runner``: the choice is checked before anything is read or written, and a
missing Ray is a clear error with the install hint (Ray is the optional ``[scale]`` extra)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from carqa.index.corpus.pipeline import build, index_stored

from carqa.errors import InputError
from carqa.settings import Settings

FIXTURE = Path(__file__).resolve().parent.parent / "fixtures" / "car_t_papers.jsonl"


def test_an_unknown_runner_is_refused_before_anything_is_written(tmp_path: Path) -> None:
    with pytest.raises(InputError) as raised:
        build(Settings(index_dir=tmp_path / "idx"), sources=[FIXTURE], runner="spark")
    assert "in-process or ray" in (raised.value.hint or "")
    assert not (tmp_path / "idx").exists()
    with pytest.raises(InputError):
        index_stored(Settings(index_dir=tmp_path / "idx"), runner="spark")


def test_without_ray_the_ray_runner_says_how_to_install_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # as if not installed
    with pytest.raises(InputError) as raised:
        build(Settings(index_dir=tmp_path / "idx"), sources=[FIXTURE], runner="ray")
    assert "carqa[scale]" in (raised.value.hint or "")
    assert not (tmp_path / "idx").exists()


def test_a_ray_that_does_not_start_is_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ray = pytest.importorskip("ray", reason='Ray is not installed ("carqa[scale]")')
    from carqa.errors import CarqaError

    def refuse(**kwargs: object) -> None:
        raise ConnectionError("could not connect to ray://nowhere:10001")

    monkeypatch.setattr(ray, "init", refuse)
    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    with pytest.raises(CarqaError) as raised:
        build(
            Settings(index_dir=tmp_path / "idx"),
            sources=[FIXTURE],
            runner="ray",
            ray_address="ray://nowhere:10001",
        )
    assert "ray://nowhere:10001" in str(raised.value)
    assert "RAY_ADDRESS" in (raised.value.hint or "")
