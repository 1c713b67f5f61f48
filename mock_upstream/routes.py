"""What edition.cnn.com answers: a redirect to https on the plain port, /politics over TLS."""

from __future__ import annotations

from urllib.parse import urlsplit

from . import content
from .http1 import Request, Response

HTML = "text/html; charset=utf-8"
TEXT = "text/plain; charset=utf-8"


def origin_path(target: str) -> str:
    """The path-and-query part of a request target, also for absolute-form targets (proxies)."""
    if target.startswith("/"):
        return target
    if "://" in target:
        parts = urlsplit(target)
        return (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return target  # authority-form or "*": nothing sensible to strip


def redirect_to_https(request: Request, redirect_host: str) -> Response:
    """The real site answers every plain-HTTP request with a 301 to the same path over https."""
    location = f"https://{redirect_host}{origin_path(request.target)}"
    return Response(301, content.moved_page(location), HTML, [("location", location)])


def site(request: Request, politics_bytes: int) -> Response:
    path = origin_path(request.target).split("?", 1)[0]
    if path != content.POLITICS_PATH:
        return Response(404, content.text_page(f"not found: {path}"), TEXT)
    if request.method not in ("GET", "HEAD"):
        return Response(405, content.text_page(f"method {request.method} not allowed"), TEXT, [("allow", "GET, HEAD")])
    return Response(200, content.politics_page(politics_bytes), HTML)
