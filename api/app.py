"""The HTTP API and the web chat widget: one FastAPI app, built by :func:`create_app`.

Routes:

- ``POST /api/query`` — one question, a cited answer (or an abstention).
- ``POST /api/chat`` — one chat turn; JSON, or Server-Sent Events (``sources``, ``delta``...,
  ``done``) when the client sends ``Accept: text/event-stream`` or ``"stream": true``.
- ``GET /api/papers/{pmid}``, ``GET /api/stats`` — what is indexed.
- ``GET /healthz`` (the process is alive), ``GET /readyz`` (the index is loaded),
  ``GET /metrics`` (Prometheus), ``GET /docs`` (OpenAPI).
- ``GET /widget.js`` (the embeddable chat widget) and ``GET /`` (a demo page using it).

The engine is loaded once at start-up (lifespan) and shared; answering is blocking CPU work,
so the answering routes are plain ``def`` (FastAPI runs them in its thread pool) and streams
are iterated in the thread pool too — the event loop stays free for health checks and other
clients. Tests inject a fake engine through ``create_app(engine=..., chat=...)``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from importlib.resources import files
from typing import Any

import anyio
from carqa.api.errors import (
    ApiError,
    UnexpectedErrorMiddleware,
    client_error_body,
    error_body,
    install_error_handlers,
)
from carqa.api.limits import BodySizeLimitMiddleware, ContentEncodingMiddleware, RateLimiter
from carqa.api.protocols import AnswerEngine, ChatReplier
from carqa.api.schemas import (
    PMID_PATTERN,
    ChatRequest,
    ChatResponse,
    ErrorResponse,
    FiltersModel,
    HealthResponse,
    PaperResponse,
    QueryRequest,
    QueryResponse,
    ReadyResponse,
    StatsResponse,
)
from carqa.api.security import GuardedRoute, NoSniffMiddleware, api_key_schemes
from carqa.api.services import ChatFactory, EngineFactory, Services, open_chat, open_engine
from fastapi import APIRouter, Depends, FastAPI, Path, Request
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import HTMLResponse, JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_fastapi_instrumentator import Instrumentator
from sse_starlette import EventSourceResponse, ServerSentEvent
from starlette.concurrency import iterate_in_threadpool, run_in_threadpool

from carqa import __version__
from carqa.errors import CarqaError
from carqa.settings import Settings

logger = logging.getLogger("carqa.api")

STATIC = files("carqa.api") / "static"
SSE_PING_SECONDS = 15

SSE_EVENT_SCHEMA = {
    "type": "object",
    "description": "One Server-Sent Event (OpenAPI < 3.2: the schema describes each event).",
    "required": ["event", "data"],
    "properties": {
        "event": {"type": "string", "enum": ["sources", "delta", "done", "error"]},
        "data": {
            "type": "string",
            "contentMediaType": "application/json",
            "description": "sources: {citations}; delta: {text}; done: the ChatResponse; "
            "error: an ErrorResponse.",
        },
    },
}

_ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorResponse, "description": description}
    for status, description in {
        401: "API key missing",
        403: "API key not valid",
        413: "Request body too large",
        415: "Compressed request body (Content-Encoding) not accepted",
        422: "Invalid request (e.g. empty or over-long question)",
        429: "Rate limit exceeded, or too many wrong API keys (with Retry-After)",
        503: "Index not built or not loaded",
    }.items()
}


_OPEN_ERRORS = {status: value for status, value in _ERRORS.items() if status not in (401, 403)}


def create_app(
    settings: Settings | None = None,
    *,
    engine: AnswerEngine | None = None,
    chat: ChatReplier | None = None,
    engine_factory: EngineFactory = open_engine,
    chat_factory: ChatFactory = open_chat,
) -> FastAPI:
    """Build the app. ``engine``/``chat`` are used as given (tests, or a CLI that already opened
    them); otherwise they are opened from ``settings`` at start-up by the factories."""
    settings = settings or Settings.load()
    services = Services(
        settings,
        engine=engine,
        chat=chat,
        engine_factory=engine_factory,
        chat_factory=chat_factory,
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if not services.ready:
            await run_in_threadpool(services.load)
        yield

    app = FastAPI(
        title="carqa",
        summary="Cited question answering over the CAR T cell literature.",
        version=_version(),
        lifespan=lifespan,
        docs_url="/docs",
        redoc_url=None,
        # No redirect to the slash-less path: Starlette builds its Location from the Host
        # header, which a client chooses (an open redirect to any host). A wrong path is a 404.
        redirect_slashes=False,
    )
    app.state.settings = settings
    app.state.services = services
    app.state.rate_limiter = (
        RateLimiter(settings.rate_limit_per_minute) if settings.rate_limit_per_minute > 0 else None
    )
    app.state.auth_throttle = RateLimiter(settings.auth_failures_per_minute, what="wrong API keys")

    install_error_handlers(app)
    app.add_middleware(UnexpectedErrorMiddleware)  # innermost: see its docstring
    app.add_middleware(BodySizeLimitMiddleware, max_bytes=settings.max_body_bytes)
    app.add_middleware(ContentEncodingMiddleware)
    instrumentator = Instrumentator(
        registry=CollectorRegistry(),
        should_group_status_codes=False,
        excluded_handlers=["/metrics"],
    )
    instrumentator.instrument(app)
    if settings.cors_origins:
        # Outside the limits, so even 413/429 answers carry CORS headers the widget can read.
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST"],
            allow_headers=["Content-Type", "Accept", "Authorization", "X-API-Key"],
            # Not CORS-safelisted, so a cross-origin page could not read when to retry a 429.
            expose_headers=["Retry-After"],
            max_age=600,
        )
    app.add_middleware(NoSniffMiddleware)  # outermost: every response, CORS preflights too

    app.include_router(_api_router(settings))
    app.include_router(_metrics_router(instrumentator.registry))
    app.include_router(_site_router())
    _document_limits(app, settings)
    return app


def _document_limits(app: FastAPI, settings: Settings) -> None:
    """Put the configured question length limit into the OpenAPI document (the models cannot
    know it: it is a setting), so generated clients and fuzzers see the real contract."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = generate()
            models = schema["components"]["schemas"]
            for model, field in (("QueryRequest", "question"), ("ChatRequest", "message")):
                models[model]["properties"][field]["maxLength"] = settings.max_question_chars
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def _version() -> str:
    return __version__


def _services(request: Request) -> Services:
    return request.app.state.services


def _check_length(request: Request, text: str, field: str) -> None:
    limit: int = request.app.state.settings.max_question_chars
    if len(text) > limit:
        raise ApiError(
            422,
            "question_too_long",
            f"{field} is {len(text)} characters long; the limit is {limit}.",
        )


def _filters(model: FiltersModel | None) -> Any:
    if model is None:
        return None
    from carqa.qa.types import Filters

    return Filters(**model.model_dump())


def _api_router(settings: Settings) -> APIRouter:
    # The key schemes are declared (an "Authorize" button on /docs, security in generated
    # clients) only when keys are configured: declared on an open API they misled clients.
    keyed = bool(settings.api_keys)
    router = APIRouter(
        prefix="/api",
        route_class=GuardedRoute,
        dependencies=[Depends(api_key_schemes)] if keyed else [],
        responses=_ERRORS if keyed else _OPEN_ERRORS,
    )

    @router.post("/query", response_model=QueryResponse, tags=["answers"])
    def query(body: QueryRequest, request: Request) -> dict[str, Any]:
        """Answer one question with sentences cited by PMID, or abstain."""
        _check_length(request, body.question, "question")
        engine, _ = _services(request).require()
        answer = engine.ask(body.question, k=body.k, filters=_filters(body.filters))
        return answer.to_dict()

    @router.post(
        "/chat",
        response_model=ChatResponse,
        tags=["answers"],
        responses={
            200: {
                "description": "The reply as JSON, or as Server-Sent Events when streaming.",
                "content": {"text/event-stream": {"schema": SSE_EVENT_SCHEMA}},
            }
        },
    )
    def chat(body: ChatRequest, request: Request) -> Any:
        """One chat turn. Follow-up questions are read in the context of the session; one
        about a detail of the papers just discussed ("how many patients were included?") is
        answered from them, which ``focus_pmids`` lists.

        Streaming sends events ``sources`` (``{"citations": [...]}``), ``delta``
        (``{"text": ...}``, repeated) and ``done`` (the whole reply with ``session_id``); a
        failure mid-stream sends ``error`` (``{"error": {...}}``) instead of ``done``.
        """
        _check_length(request, body.message, "message")
        _, chat_service = _services(request).require()
        accept = request.headers.get("accept", "")
        if body.stream or "text/event-stream" in accept:
            events = chat_service.reply_stream(
                body.message, body.session_id, k=body.k, filters=_filters(body.filters)
            )
            return EventSourceResponse(
                _sse_stream(events),
                ping=SSE_PING_SECONDS,
                headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
            )
        session_id, answer = chat_service.reply(
            body.message, body.session_id, k=body.k, filters=_filters(body.filters)
        )
        return {**answer.to_dict(), "session_id": session_id}

    @router.get(
        "/papers/{pmid}",
        response_model=PaperResponse,
        tags=["corpus"],
        responses={404: {"model": ErrorResponse, "description": "Unknown PMID"}},
    )
    def paper(request: Request, pmid: str = Path(pattern=PMID_PATTERN)) -> dict[str, Any]:
        """A paper's metadata and abstract, and whether the seed review cites it."""
        engine, _ = _services(request).require()
        found = engine.paper(pmid)
        if found is None:
            raise ApiError(404, "paper_not_found", f"PMID {pmid} is not in the index.")
        return found

    @router.get("/stats", response_model=StatsResponse, tags=["corpus"])
    def stats(request: Request) -> dict[str, Any]:
        """Corpus and index counts, the embedding model, the build time, and whether chat
        sessions survive a restart."""
        engine, chat_service = _services(request).require()
        stats = dict(engine.stats())
        # Where the index lives on the server is the operator's business (the banner and the
        # log say it), not every client's.
        stats.pop("index_dir", None)
        persistent = getattr(getattr(chat_service, "sessions", None), "persistent", None)
        if isinstance(persistent, bool):
            stats["sessions_persistent"] = persistent
        return stats

    return router


def _metrics_router(registry: CollectorRegistry) -> APIRouter:
    """``GET /metrics``, guarded like ``/api/*`` (rate limit, then key): it takes the same keys,
    so without the limit it would be an unthrottled way to guess them."""
    router = APIRouter(route_class=GuardedRoute)

    @router.get("/metrics", include_in_schema=False)
    def metrics() -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    return router


async def _sse_stream(events: Iterator[Any]) -> AsyncIterator[ServerSentEvent]:
    """The SSE frames of ``events``, produced in the thread pool, and the answer's stream
    closed as soon as the response ends: when the client goes away mid-answer it is otherwise
    left suspended until a garbage collection finds it, and an LLM behind it keeps its
    connection open for a reply nobody reads."""
    frames = _sse_frames(events)
    try:
        async for frame in iterate_in_threadpool(frames):
            yield frame
    finally:
        # Shielded: the response is being cancelled, and closing must still happen. No thread
        # is inside the generators now (a thread-pool call finishes before it is cancelled).
        with anyio.CancelScope(shield=True):
            await run_in_threadpool(_close, frames, events)


def _close(*iterators: Iterator[Any]) -> None:
    """Close generators (a plain iterator has nothing to close)."""
    for iterator in iterators:
        close = getattr(iterator, "close", None)
        if close is not None:
            close()


def _sse_frames(events: Iterator[Any]) -> Iterator[ServerSentEvent]:
    """Answer events as SSE frames (``event:`` + one-line JSON ``data:``). A failure after the
    stream started cannot change the status code, so it becomes an ``error`` event."""
    try:
        for event in events:
            yield ServerSentEvent(data=json.dumps(event.data), event=event.type)
    except CarqaError as error:
        _, body = client_error_body(error)
        yield ServerSentEvent(data=json.dumps(body), event="error")
    except Exception:
        logger.exception("answer stream failed")
        body = error_body("internal_error", "The answer could not be completed.")
        yield ServerSentEvent(data=json.dumps(body), event="error")


def _site_router() -> APIRouter:
    router = APIRouter()

    # HEAD is answered like GET (uptime monitors and some load balancers check with HEAD);
    # as separate undocumented routes, so the OpenAPI document keeps one operation per path.
    @router.head("/healthz", include_in_schema=False)
    @router.get("/healthz", response_model=HealthResponse, tags=["operations"])
    async def healthz() -> dict[str, str]:
        """The process is up (it does not say whether the index is loaded: see /readyz)."""
        return {"status": "ok"}

    @router.head("/readyz", include_in_schema=False)
    @router.get(
        "/readyz",
        response_model=ReadyResponse,
        tags=["operations"],
        responses={503: {"model": ReadyResponse, "description": "Not ready"}},
    )
    def readyz(request: Request) -> Any:
        """Whether the index is loaded and queries can be answered (503 with the reason if not)."""
        services = _services(request)
        try:
            services.require()
        except ApiError as error:
            body = ReadyResponse(ready=False, reason=error.message, hint=error.hint)
            return JSONResponse(body.model_dump(), status_code=503)
        return {"ready": True}

    @router.api_route("/widget.js", methods=["GET", "HEAD"], include_in_schema=False)
    async def widget() -> Response:
        return Response(
            (STATIC / "widget.js").read_bytes(),
            media_type="text/javascript; charset=utf-8",
            headers={"Cache-Control": "public, max-age=300"},
        )

    @router.api_route("/", methods=["GET", "HEAD"], include_in_schema=False)
    async def demo() -> HTMLResponse:
        # Not frameable: another site could frame the page and steer clicks into the widget.
        return HTMLResponse(
            (STATIC / "index.html").read_text(encoding="utf-8"),
            headers={
                "X-Frame-Options": "DENY",
                "Content-Security-Policy": "frame-ancestors 'none'",
            },
        )

    return router


def app_from_env() -> FastAPI:
    """Factory for ``uvicorn --factory carqa.api.app:app_from_env`` (settings from ``CARQA_*``)."""
    return create_app(Settings.load())
