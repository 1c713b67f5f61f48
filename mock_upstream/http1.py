"""HTTP/1.x on a blocking socket: read a request, write a response, decide keep-alive.

Hand-written rather than http.server because python3-minimal has no `http` package, and because
the records need what http.server hides: header order and case as sent, the raw request target.
"""

from __future__ import annotations

import io
import time

MAX_LINE = 65536
MAX_HEADERS = 200
MAX_HEADER_BYTES = 262144
READ_CHUNK = 65536

# The stand-in's own statuses, and the common ones a declared site's /status/NNN is asked for;
# others go out as "Unknown" (clients read the code, not the phrase).
REASONS = {
    100: "Continue",
    200: "OK",
    201: "Created",
    202: "Accepted",
    204: "No Content",
    301: "Moved Permanently",
    302: "Found",
    304: "Not Modified",
    307: "Temporary Redirect",
    308: "Permanent Redirect",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    408: "Request Timeout",
    411: "Length Required",
    413: "Content Too Large",
    414: "URI Too Long",
    418: "I'm a teapot",
    429: "Too Many Requests",
    431: "Request Header Fields Too Large",
    500: "Internal Server Error",
    501: "Not Implemented",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
    505: "HTTP Version Not Supported",
}

_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


class ProtocolError(Exception):
    """The peer did not speak HTTP/1.x. `status` is the response to send first, or None to just close."""

    def __init__(self, message: str, status: int | None = 400):
        super().__init__(message)
        self.status = status


class Request:
    def __init__(self, method: str, target: str, version: str, headers: list[list[str]], received_at: float):
        self.method = method
        self.target = target
        self.version = version
        self.headers = headers  # [[name, value], ...] as received
        self.received_at = received_at
        self.body_bytes = 0

    def header(self, name: str) -> str | None:
        name = name.lower()
        for key, value in self.headers:
            if key.lower() == name:
                return value
        return None

    def tokens(self, name: str) -> list[str]:
        """Comma-separated, lower-cased values of every `name` header (Connection, Transfer-Encoding)."""
        name = name.lower()
        found = []
        for key, value in self.headers:
            if key.lower() == name:
                found += [t.strip().lower() for t in value.split(",") if t.strip()]
        return found

    @property
    def keep_alive(self) -> bool:
        connection = self.tokens("connection")
        if self.version == "HTTP/1.1":
            return "close" not in connection
        return "keep-alive" in connection


def _readline(rfile: io.BufferedReader, what: str, status: int) -> bytes:
    line = rfile.readline(MAX_LINE + 1)
    if len(line) > MAX_LINE:
        raise ProtocolError(f"{what} longer than {MAX_LINE} bytes", status)
    return line


def _latin1(raw: bytes) -> str:
    # HTTP fields are octets; latin-1 maps each to one character, so nothing is lost or refused.
    return raw.decode("latin-1")


def read_request(rfile: io.BufferedReader) -> Request | None:
    """Read a request line and headers; None if the peer closed cleanly between requests."""
    # A ClientHello need not contain a newline, so look at the first byte before readline() waits
    # for one that never comes (while the client waits for our ServerHello).
    if rfile.peek(1)[:1] == b"\x16":
        raise ProtocolError("TLS handshake bytes on a plain-HTTP listener (the client expected TLS)", None)
    line = _readline(rfile, "request line", 414)
    while line in (b"\r\n", b"\n"):  # RFC 9112 2.2: ignore empty lines before a request line
        line = _readline(rfile, "request line", 414)
    if not line:
        return None
    received_at = round(time.time(), 6)
    if line.startswith(b"PRI * HTTP/2.0"):
        raise ProtocolError("HTTP/2 connection preface, but this server speaks HTTP/1.1 only", None)
    if not line.endswith(b"\n"):
        raise ProtocolError(f"connection closed inside the request line {line[:80]!r}", None)
    parts = line.rstrip(b"\r\n").split(b" ")
    if len(parts) != 3 or not parts[0] or not parts[1]:
        raise ProtocolError(f"malformed request line {line[:80]!r}")
    method, target, version = (_latin1(p) for p in parts)
    if version not in ("HTTP/1.1", "HTTP/1.0"):
        if version.startswith("HTTP/"):
            raise ProtocolError(f"unsupported HTTP version {version!r}", 505)
        raise ProtocolError(f"malformed request line {line[:80]!r}")
    headers: list[list[str]] = []
    total = 0
    while True:
        raw = _readline(rfile, "header line", 431)
        if not raw:
            raise ProtocolError("connection closed inside the request headers", None)
        if raw in (b"\r\n", b"\n"):
            break
        total += len(raw)
        if total > MAX_HEADER_BYTES or len(headers) >= MAX_HEADERS:
            raise ProtocolError("request headers too large", 431)
        if raw[:1] in (b" ", b"\t"):
            raise ProtocolError("obsolete header line folding")
        name, sep, value = raw.rstrip(b"\r\n").partition(b":")
        if not sep or not name or name != name.strip():
            raise ProtocolError(f"malformed header line {raw[:80]!r}")
        headers.append([_latin1(name), _latin1(value.strip(b" \t"))])
    return Request(method, target, version, headers, received_at)


def body_framing(request: Request) -> tuple[str, int]:
    """("chunked", 0), ("length", n) or ("none", 0); raises ProtocolError on framing we cannot trust."""
    codings = request.tokens("transfer-encoding")
    if codings:
        if codings[-1] != "chunked":
            raise ProtocolError(f"unsupported Transfer-Encoding {', '.join(codings)!r}", 501)
        return "chunked", 0
    lengths = {v.strip() for k, v in request.headers if k.lower() == "content-length"}
    if not lengths:
        return "none", 0
    if len(lengths) != 1 or not next(iter(lengths)).isdigit():
        raise ProtocolError(f"invalid Content-Length {sorted(lengths)!r}")
    return "length", int(next(iter(lengths)))


def _discard(rfile: io.BufferedReader, count: int) -> None:
    while count > 0:
        chunk = rfile.read(min(count, READ_CHUNK))
        if not chunk:
            raise ProtocolError("connection closed inside the request body", None)
        count -= len(chunk)


def read_body(rfile: io.BufferedReader, framing: tuple[str, int]) -> int:
    """Read and drop the request body (the stand-in never needs it); returns its length."""
    kind, length = framing
    if kind == "length":
        _discard(rfile, length)
        return length
    if kind != "chunked":
        return 0
    total = 0
    while True:
        size_line = _readline(rfile, "chunk size line", 400)
        if not size_line:
            raise ProtocolError("connection closed inside a chunked body", None)
        size_text = size_line.split(b";", 1)[0].strip()
        try:
            size = int(size_text, 16)
        except ValueError:
            raise ProtocolError(f"malformed chunk size {size_text[:20]!r}") from None
        if size == 0:
            break
        _discard(rfile, size + 2)  # the chunk and its CRLF
        total += size
    while _readline(rfile, "trailer line", 431) not in (b"\r\n", b"\n", b""):
        pass  # trailers are read and dropped
    return total


def http_date(when: float | None = None) -> str:
    # Spelled out by hand: strftime's day and month names follow the locale.
    t = time.gmtime(when)
    return (
        f"{_DAYS[t.tm_wday]}, {t.tm_mday:02d} {_MONTHS[t.tm_mon - 1]} {t.tm_year} "
        f"{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d} GMT"
    )


class Response:
    def __init__(self, status: int, body: bytes = b"", content_type: str | None = None, headers=None):
        self.status = status
        self.body = body
        self.content_type = content_type
        self.headers: list[tuple[str, str]] = list(headers or [])

    def serialize(self, keep_alive: bool, http10_keep_alive: bool, with_body: bool) -> bytes:
        lines = [f"HTTP/1.1 {self.status} {REASONS.get(self.status, 'Unknown')}", f"date: {http_date()}"]
        if self.content_type:
            lines.append(f"content-type: {self.content_type}")
        if self.status != 204:  # a 204 carries no Content-Length (RFC 9110 8.6)
            lines.append(f"content-length: {len(self.body)}")
        lines += [f"{name}: {value}" for name, value in self.headers]
        if not keep_alive:
            lines.append("connection: close")
        elif http10_keep_alive:
            lines.append("connection: keep-alive")
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1", "replace")
        return head + self.body if with_body else head


CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
