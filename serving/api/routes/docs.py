"""/docs (Swagger UI) and /redoc served entirely by the service: their scripts and styles come from the
pinned fastapi-offline package's static folder, never from a CDN, so the API documentation works on a
county hospital network with no internet. build_api turns FastAPI's own CDN-backed pages off."""

from __future__ import annotations

from pathlib import Path

import fastapi_offline
from fastapi import APIRouter, HTTPException, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse

ASSETS = Path(fastapi_offline.__file__).resolve().parent / "static"
FILES = {
    "swagger-ui-bundle.js": "text/javascript",
    "swagger-ui.css": "text/css",
    "redoc.standalone.js": "text/javascript",
    "favicon.png": "image/png",
}
BASE = "/static/docs"

router = APIRouter(include_in_schema=False)


@router.get("/docs", response_class=HTMLResponse)
def swagger(request: Request) -> HTMLResponse:
    return get_swagger_ui_html(
        openapi_url=request.app.openapi_url,
        title=f"{request.app.title} — API",
        swagger_js_url=f"{BASE}/swagger-ui-bundle.js",
        swagger_css_url=f"{BASE}/swagger-ui.css",
        swagger_favicon_url=f"{BASE}/favicon.png",
    )


@router.get("/redoc", response_class=HTMLResponse)
def redoc(request: Request) -> HTMLResponse:
    return get_redoc_html(
        openapi_url=request.app.openapi_url,
        title=f"{request.app.title} — API",
        redoc_js_url=f"{BASE}/redoc.standalone.js",
        redoc_favicon_url=f"{BASE}/favicon.png",
        with_google_fonts=False,
    )


@router.get(BASE + "/{name}", response_class=FileResponse)
def asset(name: str) -> FileResponse:
    if name not in FILES:
        raise HTTPException(404, "no such file")
    return FileResponse(ASSETS / name, media_type=FILES[name], headers={"cache-control": "max-age=86400"})
