"""Serves the welcome page (`GET /`) and its three static files; public, like /health."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import Response

from ..core.errors import NotFound

STATIC_DIR = Path(__file__).parent / "static"
MEDIA_TYPES = {".html": "text/html; charset=utf-8", ".css": "text/css; charset=utf-8",
               ".js": "text/javascript; charset=utf-8"}
# Everything the page loads comes from this server; the socket goes to the same host (ws: or wss:).
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "connect-src 'self' ws: wss:; media-src 'self' blob:; worker-src 'self'; "
       "base-uri 'self'; form-action 'none'; frame-ancestors 'none'")
HEADERS = {"Cache-Control": "no-cache", "Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff",
           "Referrer-Policy": "no-referrer"}


def _read_assets() -> dict[str, bytes]:
    # Read once at import: a few KiB, and no file I/O on the event loop per request.
    return {path.name: path.read_bytes() for path in STATIC_DIR.iterdir() if path.suffix in MEDIA_TYPES}


ASSETS = _read_assets()

router = APIRouter(tags=["operations"])


def _asset(name: str) -> Response:
    return Response(ASSETS[name], media_type=MEDIA_TYPES[Path(name).suffix], headers=HEADERS)


@router.get("/", include_in_schema=False)
def welcome_page() -> Response:
    return _asset("index.html")


@router.get("/static/{name}", include_in_schema=False)
def static_asset(name: str) -> Response:
    if name not in ASSETS or name == "index.html":
        raise NotFound(f"No static file {name!r}", f"the page's files are: {', '.join(sorted(ASSETS))}")
    return _asset(name)
