"""One accepted connection: TLS handshake if the listener has one, then HTTP/1.x requests in turn
(or, on a tcp listener, an echo of every byte).

Runs in its own thread with blocking sockets. Threads rather than asyncio for two reasons:
python3-minimal (the container's interpreter) has no asyncio, and asyncio's TLS hides the SSL
object until the handshake succeeded, so a failed handshake could not be tied to its SNI.
"""

from __future__ import annotations

import io
import socket
import ssl
import time
from typing import TYPE_CHECKING, cast

from . import control, routes
from .clienthello import peek_client_hello
from .http1 import CONTINUE, READ_CHUNK, ProtocolError, Request, Response, body_framing, read_body, read_request
from .records import now
from .tls import describe_error, peer_certificate, received_sni

if TYPE_CHECKING:
    from .server import Listener, Server

# Fields a request record copies from its connection record.
_CONNECTION_FIELDS = (
    "listener",
    "peer_address",
    "peer_port",
    "local_address",
    "local_port",
    "tls",
    "sni",
    "alpn",
    "tls_version",
    "client_cert_subject",
    "client_cert_dns_sans",
    "client_cert_uri_sans",
)


class Connection:
    def __init__(self, server: Server, listener: Listener, sock: socket.socket, peer: tuple):
        self.server = server
        self.listener = listener
        self.sock = sock
        local = sock.getsockname()
        self.record: dict | None = None
        self.requests = 0
        if listener.recorded:
            self.record = {
                "id": 0,
                "kind": "connection",
                "listener": listener.name,
                "state": "handshaking" if listener.tls_context else "open",
                "opened_at": now(),
                "closed_at": None,
                "peer_address": peer[0],
                "peer_port": peer[1],
                "local_address": local[0],
                "local_port": local[1],
                "tls": listener.tls_context is not None,
                "sni": None,
                "alpn": None,
                "alpn_offered": None,
                "tls_version": None,
                "cipher": None,
                "client_cert_subject": None,
                "client_cert_issuer": None,
                "client_cert_dns_sans": [],
                "client_cert_uri_sans": [],
                "handshake_error": None,
                "error": None,
                "requests": 0,
            }
            if listener.name == "tcp":
                self.record["bytes_received"] = 0
            server.store.add(self.record)
        self.label = f"{listener.name} {peer[0]}:{peer[1]}"

    def _note(self, **fields) -> None:
        if self.record is not None:
            self.server.store.update(self.record, **fields)

    def run(self) -> None:
        self.server.track(self.sock)
        try:
            context = self.listener.tls_context
            if self.listener.name == "tcp":
                self._echo()
                return
            stream = self._handshake(context) if context else self.sock
            if stream is not None:
                self._serve(stream)
        except Exception as exc:  # noqa: BLE001 - one bad connection must not take the server down
            self._note(error=f"{type(exc).__name__}: {describe_error(exc)}")
            self.server.log(f"{self.label}: {type(exc).__name__}: {exc}")
        finally:
            self.server.untrack(self.sock)
            try:
                self.sock.close()
            except OSError:
                pass
            if self.record is not None and self.record["state"] != "failed":
                self._note(state="closed", closed_at=now())
            elif self.record is not None:
                self._note(closed_at=now())

    def _fail_handshake(self, why: str, **fields) -> None:
        self._note(state="failed", handshake_error=why, **fields)
        self.server.log(f"{self.label}: TLS handshake failed: {why}")

    def _handshake(self, context: ssl.SSLContext) -> ssl.SSLSocket | None:
        timeout = self.server.config.handshake_timeout
        deadline = time.monotonic() + timeout
        self.sock.settimeout(timeout)
        try:
            peek = peek_client_hello(self.sock, deadline)
        except OSError as exc:
            self._fail_handshake(f"no TLS ClientHello: {describe_error(exc)}")
            return None
        if peek.eof:
            self._fail_handshake("connection closed before a TLS ClientHello arrived")
            return None
        hello_sni = peek.hello.sni if peek.hello else None
        if peek.hello is not None:
            self._note(alpn_offered=peek.hello.alpn, sni=hello_sni)
        raw = self.sock
        tls = context.wrap_socket(raw, server_side=True, do_handshake_on_connect=False)
        # wrap_socket detached `raw`; the SSLSocket now owns the file descriptor.
        self.server.untrack(raw)
        self.sock = tls
        self.server.track(tls)
        tls.settimeout(max(0.05, deadline - time.monotonic()))
        try:
            tls.do_handshake()
        except (ssl.SSLError, OSError) as exc:
            self._fail_handshake(describe_error(exc), sni=received_sni(tls) or hello_sni)
            return None
        tls.settimeout(None)  # keep-alive connections may idle as long as the client likes
        info = {
            "state": "open",
            "sni": received_sni(tls),
            "alpn": tls.selected_alpn_protocol(),
            "tls_version": tls.version(),
            "cipher": (tls.cipher() or (None,))[0],
        }
        if context.verify_mode == ssl.CERT_REQUIRED:
            info.update(peer_certificate(tls))
        self._note(**info)
        self.server.log(f"{self.label}: TLS {info['tls_version']} sni={info['sni']} alpn={info['alpn']}")
        return tls

    def _echo(self) -> None:
        """A tcp listener: send back every byte as it arrives, until the client closes its side."""
        received = 0
        try:
            while True:
                data = self.sock.recv(READ_CHUNK)
                if not data:
                    break
                received += len(data)
                # Counted before the echo: the bytes arrived even if sending them back fails.
                self._note(bytes_received=received)
                self.sock.sendall(data)
        except OSError as exc:
            self._note(error=describe_error(exc))
        self.server.log(f"{self.label}: closed after {received} bytes")

    def _serve(self, stream: socket.socket) -> None:
        # typeshed (stdlib/socket.pyi) types makefile("rb", buffering=N) for N > 1 as IOBase;
        # CPython's socket.makefile returns io.BufferedReader for it.
        rfile = cast(io.BufferedReader, stream.makefile("rb", buffering=READ_CHUNK))
        try:
            while True:
                try:
                    request = read_request(rfile)
                    if request is None:
                        return
                    framing = body_framing(request)
                    expects_continue = "100-continue" in request.tokens("expect")
                    if framing[0] != "none" and request.version == "HTTP/1.1" and expects_continue:
                        stream.sendall(CONTINUE)
                    request.body_bytes = read_body(rfile, framing)
                except ProtocolError as exc:
                    self._note(error=str(exc))
                    self.server.log(f"{self.label}: {exc}")
                    if exc.status is not None:
                        reply = Response(exc.status, f"{exc}\n".encode("latin-1", "replace"), routes.TEXT)
                        stream.sendall(reply.serialize(keep_alive=False, http10_keep_alive=False, with_body=True))
                    return
                if not self._respond(stream, request):
                    return
        except OSError as exc:
            self._note(error=describe_error(exc))
        finally:
            rfile.close()

    def _respond(self, stream: socket.socket, request: Request) -> bool:
        """Answer one request; True if the connection stays open for the next."""
        if self.listener.name == "control":
            response = control.handle(request, self.server.store, self.server.ports(), self.server.config.control_token)
        else:
            response = self._site_response(request)
        keep_alive = request.keep_alive
        with_body = request.method != "HEAD"
        record = self._record_request(request, response, with_body)
        stream.sendall(response.serialize(keep_alive, request.version == "HTTP/1.0", with_body))
        if record is not None:
            self.server.store.update(record, responded_at=now())
            self.server.log(f"{self.label}: {request.method} {request.target} -> {response.status}")
        return keep_alive

    def _site_response(self, request: Request) -> Response:
        """edition.cnn.com's answer (by listener), or a declared site's (the same on every listener)."""
        config = self.server.config
        host = routes.declared_host(request, config.redirect_host)
        if host is not None:
            return routes.declared_site(request, host)
        if self.listener.name == "http":
            return routes.redirect_to_https(request, config.redirect_host)
        return routes.site(request, config.politics_bytes)

    def _record_request(self, request: Request, response: Response, with_body: bool) -> dict | None:
        if self.record is None:
            return None
        self.requests += 1
        record = {"id": 0, "kind": "request", "connection_id": self.record["id"], "seq": self.requests}
        # No lock needed: these connection fields stop changing once the handshake is done.
        record.update({key: self.record[key] for key in _CONNECTION_FIELDS})
        record.update(
            {
                "method": request.method,
                "path": request.target,
                "host": request.header("host"),
                "http_version": request.version,
                "headers": request.headers,
                "body_bytes": request.body_bytes,
                "status": response.status,
                "response_bytes": len(response.body) if with_body else 0,
                "received_at": request.received_at,
                "responded_at": None,
            }
        )
        request_id = self.server.store.add(record)
        self._note(requests=self.requests)
        response.headers += [
            ("x-upstream-listener", self.listener.name),
            ("x-upstream-port", str(self.record["local_port"])),
            ("x-upstream-connection-id", str(self.record["id"])),
            ("x-upstream-request-id", str(request_id)),
        ]
        if self.record["sni"] and self.record["sni"].isprintable():
            response.headers.append(("x-upstream-sni", self.record["sni"]))
        return record
