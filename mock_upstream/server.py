"""The listeners (http, https, optional mtls, control, and extra ones from --port), their accept
loops, and shutdown."""

from __future__ import annotations

import errno
import ipaddress
import os
import socket
import ssl
import sys
import threading
import time

from .connection import Connection
from .errors import StartupError
from .records import RecordStore
from .tls import SiteCert, server_context

# Backlog for 200+ clients connecting at once; the kernel caps it at net.core.somaxconn.
_BACKLOG = 1024

FIXED_LISTENERS = ("http", "https", "mtls", "control")
# What an extra listener (--port PROTO:PORT) may speak; http, https and mtls answer like the fixed
# listeners of that name, tcp echoes.
EXTRA_PROTOS = ("http", "https", "mtls", "tcp")


class Config:
    """Everything the CLI decided; plain attributes (python3-minimal has no dataclasses)."""

    def __init__(
        self,
        listen: str = "0.0.0.0",
        http_port: int = 80,
        https_port: int = 443,
        mtls_port: int | None = None,
        control_port: int = 9901,
        cert: str = "",
        key: str = "",
        client_ca: str | None = None,
        redirect_host: str = "edition.cnn.com",
        politics_bytes: int = 151654,
        handshake_timeout: float = 10.0,
        verbose: bool = False,
        control_listen: str | None = None,
        control_token: str | None = None,
        site_certs: list[SiteCert] | None = None,
        extra_ports: list[tuple[str, int]] | None = None,
    ):
        self.listen = listen
        self.http_port = http_port
        self.https_port = https_port
        self.mtls_port = mtls_port
        self.control_port = control_port
        self.cert = cert
        self.key = key
        self.client_ca = client_ca
        self.redirect_host = redirect_host
        self.politics_bytes = politics_bytes
        self.handshake_timeout = handshake_timeout
        self.verbose = verbose
        self.control_listen = control_listen or listen  # the control port alone may bind elsewhere
        self.control_token = control_token or None  # required on every control request when set
        self.site_certs = list(site_certs or [])  # chosen by SNI on every TLS listener
        self.extra_ports = list(extra_ports or [])  # (proto, port) in the order given

    def needs_mtls(self) -> bool:
        return self.mtls_port is not None or any(proto == "mtls" for proto, _ in self.extra_ports)


class Listener:
    def __init__(
        self,
        name: str,
        sock: socket.socket,
        tls_context: ssl.SSLContext | None,
        recorded: bool,
        extra: bool = False,
    ):
        self.name = name  # what it speaks: an extra listener has the name of its PROTO
        self.sock = sock
        self.tls_context = tls_context
        self.recorded = recorded  # the control listener's own traffic is not recorded
        self.extra = extra  # from --port; ports() lists these apart from the fixed ones
        self.port = sock.getsockname()[1]


def _hostport(address: str, port: int) -> str:
    return f"[{address}]:{port}" if ":" in address else f"{address}:{port}"


def _bind(flag: str, address: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ipaddress.ip_address(address).version == 6 else socket.AF_INET
    try:
        # create_server sets SO_REUSEADDR: a restart need not wait out TIME_WAIT, and a port with
        # a live listener still refuses the bind.
        return socket.create_server((address, port), family=family, backlog=_BACKLOG)
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            reason, hint = "address already in use", f"choose another {flag}"
        elif exc.errno == errno.EACCES:
            reason = "permission denied"
            hint = f"ports below 1024 need root or CAP_NET_BIND_SERVICE; choose another {flag}"
        elif exc.errno == errno.EADDRNOTAVAIL:
            reason, hint = "address not available on this host", "check --listen"
        else:
            reason, hint = (exc.strerror or str(exc)).lower(), f"check --listen and {flag}"
        raise StartupError(f"cannot bind {_hostport(address, port)}: {reason} ({hint})") from None


class Server:
    def __init__(self, config: Config, store: RecordStore | None = None):
        self.config = config
        self.store = store or RecordStore()
        self.listeners: list[Listener] = []
        self._stopping = threading.Event()
        self._active: set = set()
        self._active_lock = threading.Lock()
        self._log_lock = threading.Lock()

    def bind(self) -> None:
        """Load certificates, then bind every listener; StartupError (and nothing bound) on failure."""
        cfg = self.config
        contexts = {
            "https": server_context(cfg.cert, cfg.key, sites=cfg.site_certs),
            "mtls": server_context(cfg.cert, cfg.key, cfg.client_ca, cfg.site_certs) if cfg.needs_mtls() else None,
        }
        # (name, port, the flag that asked for it, extra)
        plan: list[tuple[str, int | None, str, bool]] = [
            ("http", cfg.http_port, "--http-port", False),
            ("https", cfg.https_port, "--https-port", False),
            ("mtls", cfg.mtls_port, "--mtls-port", False),
            ("control", cfg.control_port, "--control-port", False),
        ]
        plan += [(proto, port, f"--port {proto}:{port}", True) for proto, port in cfg.extra_ports]
        try:
            for name, port, flag, extra in plan:
                if port is not None:
                    address = cfg.control_listen if name == "control" else cfg.listen
                    sock = _bind(flag, address, port)
                    self.listeners.append(Listener(name, sock, contexts.get(name), name != "control", extra))
        except StartupError:
            self._close_listeners()
            raise

    def ports(self) -> dict:
        """The ready line's and GET /healthz's ports: the fixed listeners by name (null when off),
        then the extra ones in the order given."""
        bound = {listener.name: listener.port for listener in self.listeners if not listener.extra}
        ports: dict = {name: bound.get(name) for name in FIXED_LISTENERS}
        ports["extra"] = [{"proto": item.name, "port": item.port} for item in self.listeners if item.extra]
        return ports

    def start(self) -> None:
        for listener in self.listeners:
            threading.Thread(
                target=self._accept_loop,
                args=(listener,),
                name=f"accept-{listener.name}-{listener.port}",
                daemon=True,
            ).start()

    def _accept_loop(self, listener: Listener) -> None:
        while not self._stopping.is_set():
            try:
                sock, peer = listener.sock.accept()
            except OSError as exc:
                if self._stopping.is_set():
                    return
                self.log(f"accept on {listener.name}: {exc}")
                if exc.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                    time.sleep(0.1)  # out of descriptors or memory: let connections finish
                continue
            connection = None
            try:
                # Responses are written in one piece; don't let Nagle hold back the tail.
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                connection = Connection(self, listener, sock, peer)
                threading.Thread(target=connection.run, name=f"conn-{connection.label}", daemon=True).start()
            except (OSError, RuntimeError) as exc:
                # The peer reset before we looked, or no thread could be started: drop this one
                # connection and keep accepting.
                self.log(f"{listener.name} {peer}: dropped: {exc}")
                if connection is not None and connection.record is not None:
                    self.store.update(connection.record, state="failed", error=str(exc), closed_at=time.time())
                sock.close()

    def track(self, sock: socket.socket) -> None:
        with self._active_lock:
            self._active.add(sock)

    def untrack(self, sock: socket.socket) -> None:
        with self._active_lock:
            self._active.discard(sock)

    def _close_listeners(self) -> None:
        for listener in self.listeners:
            try:
                # shutdown() wakes a thread blocked in accept(); close() alone does not on Linux.
                listener.sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            listener.sock.close()

    def stop(self) -> None:
        """Stop accepting and end open connections (their clients see the connection close)."""
        self._stopping.set()
        self._close_listeners()
        with self._active_lock:
            active = list(self._active)
        for sock in active:
            try:
                socket.socket.shutdown(sock, socket.SHUT_RDWR)
            except OSError:
                pass

    def log(self, message: str) -> None:
        if not self.config.verbose:
            return
        with self._log_lock:
            sys.stderr.write(f"mock_upstream[{os.getpid()}]: {message}\n")
            sys.stderr.flush()
