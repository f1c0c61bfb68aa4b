"""What a visitor's browser asks for besides answers: what is indexed (``/api/corpus``), the
API docs with their assets served from the installed package (``/docs`` works offline and
pinned, not from a CDN), and the site icon (``/favicon.ico``, requested by every browser).
"""

from __future__ import annotations

import threading
from importlib.resources import files
from typing import Any

from carqa.api.security import GuardedRoute, api_key_schemes
from carqa.api.services import Services
from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, Response
from pydantic import BaseModel, Field

STATIC = files("carqa.api") / "static"
DOCS_ASSETS = {
    "swagger-ui-bundle.js": "text/javascript; charset=utf-8",
    "swagger-ui.css": "text/css; charset=utf-8",
}
ICON_CACHE = {"Cache-Control": "public, max-age=86400"}


class SeedPaper(BaseModel):
    pmid: str
    title: str | None = None
    journal: str | None = None
    year: int | None = None
    url: str


class CorpusResponse(BaseModel):
    """What is indexed, for a page to say what it can answer. File names only, never paths."""

    papers: int
    with_abstract: int | None = None
    year_from: int | None = None
    year_to: int | None = None
    source: str | None = Field(None, description='"pubmed", "files", or unknown (null)')
    files: list[str] = Field(default_factory=list, description="Source file names.")
    seed: SeedPaper | None = None
    examples: list[str] = Field(
        default_factory=list, description="Example questions this corpus answers."
    )


def corpus_router(*, keyed: bool) -> APIRouter:
    """``GET /api/corpus``, guarded like the rest of ``/api`` (rate limit, then key); the key
    schemes are declared in the OpenAPI document only when keys are configured (``keyed``),
    as for the other ``/api`` routes."""
    router = APIRouter(
        prefix="/api",
        route_class=GuardedRoute,
        dependencies=[Depends(api_key_schemes)] if keyed else [],
    )
    lock = threading.Lock()

    @router.get("/corpus", response_model=CorpusResponse, tags=["corpus"])
    def corpus(request: Request) -> dict[str, Any]:
        """What is indexed — papers, years, the seed review or source file names — and
        example questions the corpus answers (drawn from it once per index build)."""
        services: Services = request.app.state.services
        engine, _ = services.require()
        with lock:  # the first call draws the examples; the others wait for them
            cached = getattr(request.app.state, "corpus_info", None)
            if cached is None or cached[0] is not engine:
                from carqa.qa import examples

                info = {**examples.describe(engine), "examples": examples.examples(engine)}
                cached = request.app.state.corpus_info = (engine, info)
        return cached[1]

    return router


def site_router(app: FastAPI) -> APIRouter:
    """``/docs`` from local assets, the demo page's script, and the site icon."""
    router = APIRouter(include_in_schema=False)

    @router.get("/docs")
    async def docs() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=app.openapi_url or "/openapi.json",
            title=f"{app.title} — API",
            swagger_js_url="/docs/assets/swagger-ui-bundle.js",
            swagger_css_url="/docs/assets/swagger-ui.css",
            swagger_favicon_url="/favicon.svg",
        )

    @router.get("/docs/assets/{name}")
    async def docs_asset(name: str) -> Response:
        if name not in DOCS_ASSETS:
            return Response(status_code=404)
        from swagger_ui_bundle import swagger_ui_path  # the pinned swagger-ui-bundle-v2

        return Response(
            (swagger_ui_path / name).read_bytes(),
            media_type=DOCS_ASSETS[name],
            headers={"Cache-Control": "public, max-age=86400"},
        )

    @router.api_route("/demo.js", methods=["GET", "HEAD"])
    async def demo_script() -> Response:
        # A file, not inline in the page: the page may be served with a script-src 'self' CSP.
        return Response(
            (STATIC / "demo.js").read_bytes(),
            media_type="text/javascript; charset=utf-8",
            headers={"Cache-Control": "public, max-age=300"},
        )

    @router.api_route("/favicon.ico", methods=["GET", "HEAD"])
    async def favicon_ico() -> Response:
        return Response(
            (STATIC / "favicon.ico").read_bytes(), media_type="image/x-icon", headers=ICON_CACHE
        )

    @router.api_route("/favicon.svg", methods=["GET", "HEAD"])
    async def favicon_svg() -> Response:
        return Response(
            (STATIC / "favicon.svg").read_bytes(), media_type="image/svg+xml", headers=ICON_CACHE
        )

    return router
