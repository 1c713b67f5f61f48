"""Read the client's TLS ClientHello before the handshake, for what the ssl module does not tell.

Python's ssl module reports the ALPN protocol it negotiated but not the list the client offered,
and that list is what shows how Envoy's upstream TLS was configured (h2 and http/1.1, or Istio's
own "istio-*" values). So the server peeks (MSG_PEEK, nothing consumed) at the first bytes of a
TLS connection and parses the ClientHello's server_name and ALPN extensions (RFC 8446 4.1.2,
RFC 6066 3, RFC 7301 3.1). This is best effort: anything unexpected yields None and the handshake
goes on as usual.
"""

from __future__ import annotations

import socket
import struct
import time

_HANDSHAKE = 22
_CLIENT_HELLO = 1
_EXT_SERVER_NAME = 0
_EXT_ALPN = 16
# A ClientHello is a few hundred bytes, up to ~2 KB with post-quantum key shares; the 64 KiB cap
# stops a client that trickles bytes from keeping the peek going forever.
_MAX_PEEK = 65536


class ClientHello:
    def __init__(self, sni: str | None, alpn: list[str]):
        self.sni = sni
        self.alpn = alpn

    def __repr__(self) -> str:
        return f"ClientHello(sni={self.sni!r}, alpn={self.alpn!r})"


class NotClientHello(ValueError):
    """The bytes are not the start of a TLS ClientHello."""


def _handshake_message(data: bytes) -> bytes | None:
    """The first handshake message, reassembled from TLS records; None while incomplete."""
    payload = b""
    offset = 0
    while True:
        if len(data) < offset + 5:
            return None
        content_type, _version, length = struct.unpack_from("!BHH", data, offset)
        if content_type != _HANDSHAKE:
            raise NotClientHello(f"first TLS record has content type {content_type}, not handshake")
        payload += data[offset + 5 : offset + 5 + length]
        if len(data) < offset + 5 + length:
            return None  # this record has not fully arrived yet
        offset += 5 + length
        if len(payload) >= 4:
            msg_type = payload[0]
            if msg_type != _CLIENT_HELLO:
                raise NotClientHello(f"first handshake message has type {msg_type}, not ClientHello")
            msg_len = int.from_bytes(payload[1:4], "big")
            if len(payload) >= 4 + msg_len:
                return payload[4 : 4 + msg_len]


def parse_client_hello(data: bytes) -> ClientHello | None:
    """Parse a ClientHello from the start of a connection; None if more bytes are needed.

    Raises NotClientHello if the bytes are something else (plain HTTP, garbage, a truncated message).
    """
    if data and data[0] != _HANDSHAKE:
        raise NotClientHello(f"first byte is {data[0]:#04x}, not a TLS handshake record")
    body = _handshake_message(data)
    if body is None:
        return None
    try:
        return _parse_body(body)
    except (IndexError, struct.error) as exc:
        raise NotClientHello(f"malformed ClientHello: {exc}") from None


def _parse_body(body: bytes) -> ClientHello:
    pos = 2 + 32  # legacy_version, random
    pos += 1 + body[pos]  # legacy_session_id
    pos += 2 + struct.unpack_from("!H", body, pos)[0]  # cipher_suites
    pos += 1 + body[pos]  # legacy_compression_methods
    sni: str | None = None
    alpn: list[str] = []
    if pos >= len(body):
        return ClientHello(sni, alpn)  # no extensions at all
    end = pos + 2 + struct.unpack_from("!H", body, pos)[0]
    pos += 2
    while pos + 4 <= end:
        ext_type, ext_len = struct.unpack_from("!HH", body, pos)
        ext = body[pos + 4 : pos + 4 + ext_len]
        pos += 4 + ext_len
        if ext_type == _EXT_SERVER_NAME:
            sni = _server_name(ext)
        elif ext_type == _EXT_ALPN:
            alpn = _protocols(ext)
    return ClientHello(sni, alpn)


def _server_name(ext: bytes) -> str | None:
    list_end = 2 + struct.unpack_from("!H", ext, 0)[0]
    pos = 2
    while pos + 3 <= list_end:
        name_type, name_len = struct.unpack_from("!BH", ext, pos)
        name = ext[pos + 3 : pos + 3 + name_len]
        pos += 3 + name_len
        if name_type == 0:  # host_name
            return name.decode("ascii", "replace")
    return None


def _protocols(ext: bytes) -> list[str]:
    list_end = 2 + struct.unpack_from("!H", ext, 0)[0]
    pos = 2
    names = []
    while pos + 1 <= list_end:
        size = ext[pos]
        # latin-1 keeps any byte string (e.g. GREASE values) readable and reversible.
        names.append(ext[pos + 1 : pos + 1 + size].decode("latin-1"))
        pos += 1 + size
    return names


class PeekResult:
    """What the peek found: a ClientHello, end of stream, or neither (hello None, eof False)."""

    def __init__(self, hello: ClientHello | None = None, eof: bool = False, problem: str | None = None):
        self.hello = hello
        self.eof = eof
        self.problem = problem


def peek_client_hello(sock: socket.socket, deadline: float) -> PeekResult:
    """Wait (until the monotonic deadline) for the ClientHello to arrive, without consuming it.

    The socket must be blocking with a timeout; socket.timeout propagates to the caller.
    """
    while True:
        data = sock.recv(_MAX_PEEK, socket.MSG_PEEK)
        if not data:
            return PeekResult(eof=True)
        try:
            hello = parse_client_hello(data)
        except NotClientHello as exc:
            return PeekResult(problem=str(exc))
        if hello is not None:
            return PeekResult(hello=hello)
        if len(data) >= _MAX_PEEK or time.monotonic() >= deadline:
            return PeekResult(problem=f"incomplete ClientHello after {len(data)} bytes")
        # A peek returns at once while any byte is queued, so wait a little for the rest.
        time.sleep(0.002)
