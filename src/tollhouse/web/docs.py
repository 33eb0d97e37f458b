"""`/docs` (Swagger UI) and `/redoc` that work offline: their assets come from the
`fastapi-offline` package, served here, never from a CDN. The pages are our templates with
their start-up in `static/*-init.js` (FastAPI's own pages start with an inline script), so
they keep the strict self-only Content-Security-Policy of every page."""

from __future__ import annotations

from pathlib import Path

import fastapi_offline
from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

from tollhouse import __version__
from tollhouse.web.templating import STATIC, render

ASSETS = Path(fastapi_offline.__file__).parent / "static"
ASSETS_URL = "/docs-assets"
# Our start-up scripts, under the same prefix: every role of the app serves the docs, and
# only the gateway role mounts the pages' /static.
OWN_ASSETS = STATIC / "docs"

router = APIRouter(include_in_schema=False)


@router.get("/docs")
async def swagger_ui(request: Request) -> HTMLResponse:
    return _page(request, "swagger")


@router.get("/redoc")
async def redoc(request: Request) -> HTMLResponse:
    return _page(request, "redoc")


def include(app: FastAPI) -> None:
    # The more specific mount first: Starlette takes the first that matches.
    app.mount(f"{ASSETS_URL}/tollhouse", StaticFiles(directory=OWN_ASSETS), name="docs-own")
    app.mount(ASSETS_URL, StaticFiles(directory=ASSETS), name="docs-assets")
    app.include_router(router)


def _page(request: Request, name: str) -> HTMLResponse:
    return render(
        request, f"docs/{name}.html", openapi_url=request.app.openapi_url, version=__version__
    )
