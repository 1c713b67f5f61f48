"""What the stand-in answers, by the request's Host.

edition.cnn.com (--redirect-host), or no host name at all: a redirect to https on the plain
listeners, /politics over TLS, as the seed's suites expect. Any other host name (a site a test
declared, e.g. a team's ServiceEntry host): 200 on every listener, or the status /status/NNN asks.
"""

from __future__ import annotations

import ipaddress
import re
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


def _without_port(authority: str) -> str:
    """`host`, `host:port`, `[v6]` or `[v6]:port` → the host (a v6 literal without brackets)."""
    if authority.startswith("["):
        inside, closed, _ = authority[1:].partition("]")
        return inside if closed else authority
    host, colon, port = authority.rpartition(":")
    return host if colon and (port.isdigit() or not port) and ":" not in host else authority


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def declared_host(request: Request, redirect_host: str) -> str | None:
    """The host name a request asks for when it is another site than edition.cnn.com; None when
    the stand-in answers as edition.cnn.com: Host is --redirect-host, absent or empty, or an IP
    address (probes and loopback tests that reach the stand-in by its address, as they always did)."""
    host = _without_port((request.header("host") or "").strip()).lower()
    if not host or host == _without_port(redirect_host).lower() or _is_ip(host):
        return None
    return host


_STATUS_PATH = re.compile(r"/status/([0-9]{3})")
# Final statuses only: a 1xx is an interim response, after which a client waits for the real one.
_MIN_STATUS, _MAX_STATUS = 200, 599
# No body, and for 204 no Content-Length either (RFC 9110 8.6, 15.3.5, 15.4.5).
NO_BODY_STATUSES = (204, 304)


def _asked_status(path: str) -> int | None:
    match = _STATUS_PATH.fullmatch(path)
    status = int(match.group(1)) if match else 0
    return status if _MIN_STATUS <= status <= _MAX_STATUS else None


def declared_site(request: Request, host: str) -> Response:
    """Any other site, on every listener and for every method: `/status/NNN` answers NNN (200-599),
    every other path 200, each with one line of text naming the host and path."""
    target = origin_path(request.target)
    status = _asked_status(target.split("?", 1)[0]) or 200
    if status in NO_BODY_STATUSES:
        return Response(status)
    return Response(status, content.text_page(f"mock_upstream: {host} {target}"), TEXT)
