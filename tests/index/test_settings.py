from __future__ import annotations

from pathlib import Path

import pytest

from carqa.settings import SEED_DOI, Settings


def test_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CARQA_INDEX_DIR", raising=False)
    settings = Settings.load()
    assert settings.seed_doi == SEED_DOI
    assert settings.index_dir.name == "index"
    assert settings.max_question_chars == 1000
    assert settings.max_sessions == 10_000


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
    from carqa.errors import InputError

    monkeypatch.setenv("CARQA_THREADS", "many")
    with pytest.raises(InputError, match="threads"):
        Settings.load()


def test_tuning_knobs_reach_the_index_modules(monkeypatch: pytest.MonkeyPatch) -> None:
    from carqa.index.search.chunking import ChunkSettings
    from carqa.index.search.embedding import cpu_threads
    from carqa.index.search.vectors import VectorSettings

    monkeypatch.setenv("CARQA_CHUNK_SIZE", "321")
    monkeypatch.setenv("CARQA_ANN_THRESHOLD", "5000")
    monkeypatch.setenv("CARQA_THREADS", "1")
    assert ChunkSettings.from_env().chunk_size == 321
    assert VectorSettings.from_env().ann_threshold == 5000
    assert cpu_threads() == 1


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("CARQA_PORT", "-1"),
        ("CARQA_PORT", "0"),
        ("CARQA_PORT", "99999"),
        ("CARQA_MAX_QUESTION_CHARS", "0"),
        ("CARQA_MAX_QUESTION_CHARS", "-3"),
        ("CARQA_SESSION_TTL_SECONDS", "-1"),
        ("CARQA_SESSION_TTL_SECONDS", "0"),
        ("CARQA_MAX_BODY_BYTES", "0"),
        ("CARQA_RATE_LIMIT_PER_MINUTE", "-1"),
        ("CARQA_MAX_SESSIONS", "0"),
    ],
)
def test_out_of_range_values_are_reported_by_name(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    from carqa.errors import InputError

    monkeypatch.setenv(variable, value)
    with pytest.raises(InputError, match=f"{variable}\\) = '{value}'"):
        Settings.load()


def test_range_limits_themselves_are_accepted(monkeypatch: pytest.MonkeyPatch) -> None:
    for variable, value in (
        ("CARQA_PORT", "1"),
        ("CARQA_PORT", "65535"),
        ("CARQA_MAX_QUESTION_CHARS", "1"),
        ("CARQA_SESSION_TTL_SECONDS", "1"),
        ("CARQA_RATE_LIMIT_PER_MINUTE", "0"),
        ("CARQA_MAX_SESSIONS", "1"),
    ):
        monkeypatch.setenv(variable, value)
        assert str(getattr(Settings.load(), variable.removeprefix("CARQA_").lower())) == value


def test_choices_are_named_with_their_valid_values(monkeypatch: pytest.MonkeyPatch) -> None:
    from carqa.errors import InputError

    monkeypatch.setenv("CARQA_CHUNK_VECTORS", "foo")
    with pytest.raises(InputError, match=r"CARQA_CHUNK_VECTORS.*'sentence-mean' or 'embedded'"):
        Settings.load()
    monkeypatch.delenv("CARQA_CHUNK_VECTORS")
    monkeypatch.setenv("CARQA_EMBED_BACKEND", "gpu")
    with pytest.raises(InputError, match=r"CARQA_EMBED_BACKEND.*'auto', 'onnx' or 'torch'"):
        Settings.load()
    monkeypatch.setenv("CARQA_EMBED_BACKEND", "ONNX")  # case never mattered to the build
    assert Settings.load().embed_backend == "onnx"


def test_key_values_are_not_echoed_in_errors() -> None:
    from carqa.settings import _describe

    problem = {"loc": ("llm_api_key",), "msg": "bad", "input": "sk-secret"}
    assert "sk-secret" not in _describe(problem)


@pytest.mark.parametrize(
    ("env", "shown"),
    [
        (
            {"CARQA_CHUNK_SIZE": "100"},
            "(150, the default) must be smaller than CARQA_CHUNK_SIZE (100)",
        ),
        (
            {"CARQA_CHUNK_OVERLAP": "400"},
            "(400) must be smaller than CARQA_CHUNK_SIZE (400, the default)",
        ),
        (
            {"CARQA_CHUNK_SIZE": "50", "CARQA_CHUNK_OVERLAP": "60"},
            "(60) must be smaller than CARQA_CHUNK_SIZE (50)",
        ),
    ],
)
def test_chunk_overlap_not_below_size_is_a_named_input_error(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], shown: str
) -> None:
    from carqa.index.search.chunking import ChunkSettings

    from carqa.errors import InputError

    for variable, value in env.items():
        monkeypatch.setenv(variable, value)
    with pytest.raises(InputError) as raised:
        ChunkSettings.from_env()
    assert raised.value.message == f"Invalid carqa setting: CARQA_CHUNK_OVERLAP {shown}."


def test_requested_model_is_only_a_model_someone_asked_for(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("CARQA_MODEL", raising=False)
    assert Settings.load().model == "default"
    assert Settings.load().requested_model is None  # the index's own model, whatever it is
    assert Settings.load(model="default").requested_model == "default"
    monkeypatch.setenv("CARQA_MODEL", "/models/other")
    assert Settings.load().requested_model == "/models/other"


def test_secrets_stay_out_of_reprs() -> None:
    # A Settings or client object in a log line or a traceback's locals must not leak keys.
    from carqa.index.corpus.entrez import EntrezClient

    settings = Settings(ncbi_api_key="ncbi-sekrit", llm_api_key="llm-sekrit", api_keys=["k-sekrit"])
    client = EntrezClient(email="t@example.org", api_key="ncbi-sekrit")
    for text in (repr(settings), str(settings), repr(client)):
        assert "sekrit" not in text
    assert settings.ncbi_api_key == "ncbi-sekrit"  # still there for the code that sends it


def test_cors_origins_are_written_as_browsers_send_them(monkeypatch: pytest.MonkeyPatch) -> None:
    # Starlette matches the Origin header byte for byte, and browsers send it lower case,
    # without a trailing slash or a default port: any of those made an origin silently
    # never match.
    monkeypatch.setenv(
        "CARQA_CORS_ORIGINS",
        "https://Blog.Example/, http://localhost:8080, https://a.example:443, "
        "http://b.example:80/, chrome-extension://abcdef, *",
    )
    assert Settings.load().cors_origins == [
        "https://blog.example",
        "http://localhost:8080",
        "https://a.example",
        "http://b.example",
        "chrome-extension://abcdef",
        "*",
    ]


@pytest.mark.parametrize("origin", ["blog.example", "https://blog.example/chat", "https://"])
def test_a_cors_entry_that_is_no_origin_is_named(
    monkeypatch: pytest.MonkeyPatch, origin: str
) -> None:
    from carqa.errors import InputError

    monkeypatch.setenv("CARQA_CORS_ORIGINS", f"https://ok.example,{origin}")
    with pytest.raises(InputError, match=r"cors_origins \(CARQA_CORS_ORIGINS\).*scheme://host"):
        Settings.load()


def test_sessions_live_in_the_index_dir_unless_a_path_is_set(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("CARQA_SESSIONS_PATH", raising=False)
    index_dir = tmp_path / "index"
    assert Settings.load(index_dir=index_dir).sessions_file == index_dir / "sessions.sqlite"
    monkeypatch.setenv("CARQA_SESSIONS_PATH", str(tmp_path / "env.sqlite"))
    assert Settings.load(index_dir=index_dir).sessions_file == tmp_path / "env.sqlite"
    flagged = Settings.load(index_dir=index_dir, sessions_path=tmp_path / "flag.sqlite")
    assert flagged.sessions_file == tmp_path / "flag.sqlite"
    monkeypatch.setenv("CARQA_SESSIONS_PATH", "")  # empty is the default place, not "."
    assert Settings.load(index_dir=index_dir).sessions_file == index_dir / "sessions.sqlite"
