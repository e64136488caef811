"""The reading worklist web page (serving/web/): / and its static files (the page's modules, its
style, and the CJK font it ships under serving/web/static/fonts/)."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, HTTPException
from fastapi.responses import FileResponse

WEB = Path(__file__).resolve().parents[2] / "web"
FONTS = WEB / "static" / "fonts"
TYPES = {".js": "text/javascript", ".css": "text/css", ".woff2": "font/woff2", ".txt": "text/plain; charset=utf-8"}
# Only files that exist when the service starts are served: a name is looked up, never joined blindly.
PAGE_FILES = {path.name: path for path in WEB.iterdir() if path.suffix in (".js", ".css")}
FONT_FILES = {f"fonts/{path.name}": path for path in FONTS.iterdir() if path.suffix in (".woff2", ".txt")}
# The page's code revalidates on every load (cheap 304s); the 2 MB font is fetched once a month at most
# over a thin township link.
CACHE = {".woff2": "public, max-age=2592000"}

router = APIRouter(include_in_schema=False)


@router.get("/", response_class=FileResponse)
def index() -> FileResponse:
    return FileResponse(WEB / "index.html", media_type="text/html", headers={"cache-control": "no-cache"})


@router.get("/static/{name:path}", response_class=FileResponse)
def static(name: str) -> FileResponse:
    path = PAGE_FILES.get(name) or FONT_FILES.get(name)
    if path is None:
        raise HTTPException(404, "no such file")
    return FileResponse(
        path, media_type=TYPES[path.suffix], headers={"cache-control": CACHE.get(path.suffix, "no-cache")}
    )
