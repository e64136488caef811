"""The reading worklist web page (serving/web/): / and its static files."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, HTTPException
from fastapi.responses import FileResponse

WEB = Path(__file__).resolve().parents[2] / "web"
STATIC = {"app.js": "text/javascript", "style.css": "text/css", "index.html": "text/html"}

router = APIRouter(include_in_schema=False)


@router.get("/", response_class=FileResponse)
def index() -> FileResponse:
    return FileResponse(WEB / "index.html", media_type="text/html")


@router.get("/static/{name}", response_class=FileResponse)
def static(name: str) -> FileResponse:
    if name not in STATIC:
        raise HTTPException(404, "no such file")
    return FileResponse(WEB / name, media_type=STATIC[name], headers={"cache-control": "no-cache"})
