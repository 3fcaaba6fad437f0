"""The web page at ``/``: plain HTML, CSS and JavaScript from this folder, served by the app.

No build step: the files here are what the browser gets. ``/`` is ``index.html`` with each
``/static/<name>`` link given the file's content version (``?v=<hash>``), so the page always
loads the assets it was written for and the assets can be cached for a year; the page itself is
revalidated on every visit (``no-cache`` with an ``ETag``).

``/static/<name>`` serves only the files of this folder with a known type, by exact name from a
table built once per process: a name is never joined to a path, so no request can reach another
file. The page talks to the public API only (same origin), which the Content-Security-Policy
enforces: scripts, styles and requests from this origin alone, posters from TMDB's image host,
no inline script or style, no framing.
"""

from __future__ import annotations

import functools
import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

import bottle

from api.http.endpoint import Context, Reply
from api.http.errors import NotFound

WEB_DIR = Path(__file__).resolve().parent
INDEX = "index.html"
TYPES = {
    ".css": "text/css; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
}
POSTER_HOST = "https://image.tmdb.org"
CONTENT_SECURITY_POLICY = "; ".join(
    (
        "default-src 'self'",
        f"img-src 'self' {POSTER_HOST} data:",
        "script-src 'self'",
        "style-src 'self'",
        "connect-src 'self'",
        "font-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    )
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=(), payment=()",
}
IMMUTABLE = "public, max-age=31536000, immutable"
REVALIDATE = "no-cache"
_STATIC_LINK = re.compile(r"/static/([A-Za-z0-9_.-]+)")


@dataclass(frozen=True)
class Asset:
    body: bytes
    content_type: str
    version: str  # the first 16 hex digits of the content's SHA-256

    @property
    def etag(self) -> str:
        return f'"{self.version}"'


def _asset(body: bytes, content_type: str) -> Asset:
    return Asset(body, content_type, hashlib.sha256(body).hexdigest()[:16])


@functools.cache
def assets() -> dict[str, Asset]:
    """The servable files of this folder by name (read once per process)."""
    return {
        path.name: _asset(path.read_bytes(), TYPES[path.suffix])
        for path in sorted(WEB_DIR.iterdir())
        if path.is_file() and path.suffix in TYPES and not path.name.startswith((".", "_"))
    }


@functools.cache
def index() -> Asset:
    """``index.html`` with every ``/static/<name>`` link pinned to the asset's version."""
    table = assets()

    def pin(match: re.Match) -> str:
        asset = table.get(match.group(1))
        if asset is None:
            raise RuntimeError(
                f"{INDEX} links to /static/{match.group(1)}, which is not in {WEB_DIR}"
            )
        return f"{match.group(0)}?v={asset.version}"

    html = _STATIC_LINK.sub(pin, (WEB_DIR / INDEX).read_text(encoding="utf-8"))
    return _asset(html.encode("utf-8"), "text/html; charset=utf-8")


def page(ctx: Context) -> Reply:
    return _reply(index(), REVALIDATE)


def static_asset(ctx: Context, name: str, v: str | None) -> Reply:
    asset = assets().get(name)
    if asset is None:
        raise NotFound(f"no static file {name[:60]!r}")
    return _reply(asset, IMMUTABLE if v == asset.version else REVALIDATE)


def _reply(asset: Asset, cache_control: str) -> Reply:
    headers = {**SECURITY_HEADERS, "Cache-Control": cache_control, "ETag": asset.etag}
    if asset.etag in _etags(bottle.request.headers.get("If-None-Match", "")):
        return Reply(b"", status=304, content_type=asset.content_type, headers=headers)
    return Reply(asset.body, content_type=asset.content_type, headers=headers)


def _etags(header: str) -> set[str]:
    return {tag.strip().removeprefix("W/") for tag in header.split(",")[:20]}
