from __future__ import annotations

from pathlib import Path

import pytest

from index.settings import SEED_DOI, Settings


def test_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CARQA_INDEX_DIR", raising=False)
    settings = Settings.load()
    assert settings.seed_doi == SEED_DOI
    assert settings.index_dir.name == "index"
    assert settings.max_question_chars == 1000


def test_env_overrides_default_and_flag_overrides_env(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("CARQA_INDEX_DIR", str(tmp_path / "from-env"))
    assert Settings.load().index_dir == tmp_path / "from-env"
    assert Settings.load(index_dir=tmp_path / "flag").index_dir == tmp_path / "flag"
    assert Settings.load(index_dir=None).index_dir == tmp_path / "from-env"


def test_comma_separated_lists_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CARQA_API_KEYS", "alpha, beta")
    monkeypatch.setenv("CARQA_CORS_ORIGINS", "https://example.org")
    settings = Settings.load()
    assert settings.api_keys == ["alpha", "beta"]
    assert settings.cors_origins == ["https://example.org"]


def test_invalid_value_is_a_clear_input_error(monkeypatch: pytest.MonkeyPatch) -> None:
    from index.errors import InputError

    monkeypatch.setenv("CARQA_THREADS", "many")
    with pytest.raises(InputError, match="threads"):
        Settings.load()


def test_tuning_knobs_reach_the_index_modules(monkeypatch: pytest.MonkeyPatch) -> None:
    from index.chunking import ChunkSettings
    from index.embedding import cpu_threads
    from index.vectors import VectorSettings

    monkeypatch.setenv("CARQA_CHUNK_SIZE", "321")
    monkeypatch.setenv("CARQA_ANN_THRESHOLD", "5000")
    monkeypatch.setenv("CARQA_THREADS", "1")
    assert ChunkSettings.from_env().chunk_size == 321
    assert VectorSettings.from_env().ann_threshold == 5000
    assert cpu_threads() == 1
