"""One JSON shape for every error, and the handlers that produce it.

Clients get ``{"error": {"code": ..., "message": ..., "hint"?: ..., "details"?: [...]}}`` with
the right status, whatever went wrong: a validation failure (422), an unknown route (404), a
missing index (503, with how to build one). Only a bug in carqa may be a 500, and even that is
JSON without a traceback.
"""

from __future__ import annotations

import logging
from typing import Any

from carqa.qa.llm import LLMUnavailable
from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from carqa.errors import CarqaError, IndexCorrupt, IndexMismatch, IndexNotFound, InputError

logger = logging.getLogger("carqa.api")

_STATUS_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    413: "body_too_large",
    415: "unsupported_media_type",
    422: "invalid_request",
    429: "rate_limited",
    503: "not_ready",
}


_FASTAPI_BODY_ERROR = "There was an error parsing the body"


class ApiError(StarletteHTTPException):
    """An error with a stable machine-readable ``code`` for the JSON body.

    It subclasses Starlette's HTTPException so FastAPI lets it through untouched even when it is
    raised while the request body is read (as the body-size limit does).
    """

    def __init__(
        self,
        status_code: int,
        code: str,
        message: str,
        *,
        hint: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(status_code=status_code, detail=message, headers=headers)
        self.code = code
        self.message = message
        self.hint = hint


def error_body(
    code: str, message: str, *, hint: str | None = None, details: list[Any] | None = None
) -> dict[str, Any]:
    """The ``{"error": {...}}`` document; optional keys are left out when empty."""
    error: dict[str, Any] = {"code": code, "message": message}
    if hint:
        error["hint"] = hint
    if details:
        error["details"] = details
    return {"error": error}


def error_response(
    status: int,
    code: str,
    message: str,
    *,
    hint: str | None = None,
    details: list[Any] | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    return JSONResponse(
        error_body(code, message, hint=hint, details=details), status_code=status, headers=headers
    )


def carqa_error_status(error: CarqaError) -> tuple[int, str]:
    """Map the shared error classes to an HTTP status and code.

    Index problems are the operator's to fix (build or rebuild the index), so they are 503
    "not ready" rather than a client error or a crash.
    """
    if isinstance(error, IndexNotFound):
        return 503, "index_not_found"
    if isinstance(error, IndexMismatch):
        return 503, "index_mismatch"
    if isinstance(error, IndexCorrupt):
        return 503, "index_corrupt"
    if isinstance(error, InputError):
        return 422, "invalid_request"
    if isinstance(error, LLMUnavailable):
        return 503, "llm_unavailable"
    return 503, "unavailable"


LLM_UNAVAILABLE_MESSAGE = "The language model that writes answers is not available right now."
LLM_UNAVAILABLE_HINT = "Try again later. The server's log has the details."


SERVER_LOG_HINT = "The server's log has the details."
UNAVAILABLE_MESSAGES: dict[str, tuple[str, str]] = {
    "index_not_found": (
        "No index is loaded: the server's index directory holds no built index.",
        "Build one with `carqa build` (or `carqa build --from corpus.jsonl`), then retry.",
    ),
    "index_mismatch": (
        "The index does not match this server (another embedding model or format).",
        f"Rebuild the index with `carqa build`, or serve it with its own model. {SERVER_LOG_HINT}",
    ),
    "index_corrupt": (
        "The index is damaged or incomplete.",
        f"Rebuild it with `carqa build`. {SERVER_LOG_HINT}",
    ),
    "llm_unavailable": (LLM_UNAVAILABLE_MESSAGE, LLM_UNAVAILABLE_HINT),
    "unavailable": ("The answering service is not available.", SERVER_LOG_HINT),
}
"""What a client is told when the server cannot answer. The errors themselves name absolute
paths, build folders and, for a damaged file, a piece of its content: those are for the
operator, so they go to the server log and the client gets these general words."""


def unavailable_text(code: str) -> tuple[str, str]:
    """The (message, hint) a client gets for a 503 ``code``."""
    return UNAVAILABLE_MESSAGES.get(code, UNAVAILABLE_MESSAGES["unavailable"])


def client_error_body(error: CarqaError) -> tuple[int, dict[str, Any]]:
    """Status and JSON body for a client. Server-side failures (an LLM, the index) are logged
    here and told to the client in general terms: the provider's own text can name the
    internal base URL or echo part of a key, an index error names paths on the server, and
    their hints (which settings to check, which folder to rebuild) are for the operator."""
    status, code = carqa_error_status(error)
    if isinstance(error, LLMUnavailable):
        logger.error("%s (%s)", error.message, error.hint)
        return status, error_body(code, LLM_UNAVAILABLE_MESSAGE, hint=LLM_UNAVAILABLE_HINT)
    if status == 503:
        logger.error("cannot answer: %s (%s)", error.message, error.hint)
        message, hint = unavailable_text(code)
        return status, error_body(code, message, hint=hint)
    return status, error_body(code, error.message, hint=error.hint)


def _validation_details(error: RequestValidationError) -> list[dict[str, Any]]:
    """Pydantic's error list, minus echoed input (which may be huge) and exception objects."""
    details = []
    for item in error.errors():
        details.append(
            {
                "loc": [str(part) for part in item.get("loc", ())],
                "msg": str(item.get("msg", "")),
                "type": str(item.get("type", "")),
            }
        )
    return details


def _summary(details: list[dict[str, Any]]) -> str:
    if not details:
        return "The request is invalid."
    first = details[0]
    if first["type"] == "json_invalid":
        return "The request body is not valid JSON."
    where = ".".join(part for part in first["loc"] if part != "body") or "body"
    more = f" (and {len(details) - 1} more problem(s))" if len(details) > 1 else ""
    return f"{where}: {first['msg']}{more}"


def _not_json(request: Request) -> bool:
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    return not (media_type == "application/json" or media_type.endswith("+json"))


def install_error_handlers(app: FastAPI) -> None:
    """Register the handlers that turn every failure into the one JSON error shape."""

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        return error_response(
            exc.status_code, exc.code, exc.message, hint=exc.hint, headers=exc.headers
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 400 and exc.detail == _FASTAPI_BODY_ERROR:
            # FastAPI's answer to a body it cannot decode (e.g. not UTF-8): for the client it
            # is the same mistake as malformed JSON, so it gets the same 422.
            # Python's JSON decoder also ends up here on a body nested too deeply to decode.
            return error_response(
                422,
                "invalid_request",
                "The request body could not be decoded as JSON (invalid UTF-8, or nested too "
                "deeply).",
            )
        code = _STATUS_CODES.get(exc.status_code, "error")
        message = exc.detail if isinstance(exc.detail, str) else code.replace("_", " ")
        if exc.status_code == 404 and message == "Not Found":
            message = f"No such endpoint: {request.url.path}"
        return error_response(exc.status_code, code, message, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        details = jsonable_encoder(_validation_details(exc))
        if _not_json(request) and any(item["loc"] == ["body"] for item in details):
            # FastAPI reads a body without a JSON content type as raw bytes, so the client saw
            # "Input should be a valid dictionary" for what is a missing header.
            return error_response(
                422,
                "invalid_request",
                "The request body must be a JSON object sent with Content-Type: application/json.",
                hint="curl: add -H 'Content-Type: application/json'.",
                details=details,
            )
        return error_response(422, "invalid_request", _summary(details), details=details)

    @app.exception_handler(CarqaError)
    async def _carqa_error(request: Request, exc: CarqaError) -> JSONResponse:
        status, body = client_error_body(exc)
        return JSONResponse(body, status_code=status)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        logger.exception("unhandled error on %s %s", request.method, request.url.path)
        return _internal_error()


def _internal_error() -> JSONResponse:
    return error_response(500, "internal_error", "Internal server error.")


class UnexpectedErrorMiddleware:
    """A bug's exception as the JSON 500, answered *inside* the CORS middleware.

    Starlette answers an ``Exception`` handler from its outermost middleware, outside CORS, so
    that 500 carried no ``Access-Control-Allow-Origin``: a chat widget on another site could
    only report "Failed to fetch". Added innermost, this answers first; the app's
    ``Exception`` handler stays for failures in the middlewares themselves.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception:
            if started:  # too late for a status code; the server closes the connection
                raise
            logger.exception("unhandled error on %s %s", scope.get("method"), scope.get("path"))
            await _internal_error()(scope, receive, send)
