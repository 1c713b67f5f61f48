"""A TCP forwarder from a loopback port into a network namespace: how the harness, kubectl and the
user reach the local mesh's API server (127.0.0.1:<ephemeral> → istiod's namespace 127.0.0.1:6443).

Any local user can connect to a loopback port, so the forwarder must survive careless and hostile
clients alike (a run's kubectl calls, a loop of connect+close, a flood of idle connections):
- a connection's two sockets are closed as soon as both directions are done (a half-close is
  passed on as a half-close), so connect+close leaks no descriptor;
- at most MAX_CONNECTIONS pairs at a time: one more is closed at once, so a flood costs at most
  2 × MAX_CONNECTIONS descriptors and 2 × MAX_CONNECTIONS threads, and the run's own clients
  get through again as soon as the flood's connections end;
- the accept loop survives every error but its own listener's closing (EMFILE or ENFILE make it
  wait a moment for descriptors to come back, instead of ending for good).
Threads of the harness process: they end with it, so nothing outlives the run.
"""

from __future__ import annotations

import errno
import socket
import threading

from harness.local.netns import Netns

# Far above what a run needs (istiod's watches, the harness's clients, a user's kubectl: tens).
MAX_CONNECTIONS = 512
# How long the accept loop waits when the process is out of descriptors.
_DESCRIPTOR_BACKOFF_S = 0.05


class LoopbackForwarder:
    """127.0.0.1:<listen_port> of the host (or of `listen_in`) → `netns` 127.0.0.1:`port`, byte for
    byte (TLS passes through)."""

    def __init__(self, netns: Netns, port: int, *, listen_in: Netns | None = None, listen_port: int = 0):
        self.netns = netns
        self.port = port
        self._listener = listen_in.socket() if listen_in else socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", listen_port))
        self._listener.listen(128)
        self.local_port = self._listener.getsockname()[1]
        self._stopping = threading.Event()
        self._pairs: set[_Pair] = set()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._accept, name=f"apiserver-forward:{self.local_port}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    @property
    def open_connections(self) -> int:
        with self._lock:
            return len(self._pairs)

    def _accept(self) -> None:
        while not self._stopping.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError as exc:
                if self._stopping.is_set():
                    return
                if exc.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                    self._stopping.wait(_DESCRIPTOR_BACKOFF_S)
                continue  # ECONNABORTED and the like: that client gave up, the next one may not
            with self._lock:
                full = len(self._pairs) >= MAX_CONNECTIONS
            if full:
                client.close()
                continue
            try:
                upstream = self.netns.socket()
            except OSError:
                client.close()
                continue
            pair = _Pair(client, upstream, self._forget)
            with self._lock:
                self._pairs.add(pair)
            threading.Thread(target=pair.run, args=(self.port,), daemon=True).start()

    def _forget(self, pair: _Pair) -> None:
        with self._lock:
            self._pairs.discard(pair)

    def stop(self) -> None:
        self._stopping.set()
        try:
            self._listener.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self._listener.close()
        with self._lock:
            pairs = list(self._pairs)
        for pair in pairs:
            pair.close()
        self._thread.join(timeout=5)


class _Pair:
    """One client connection and its upstream: two pumps, and both sockets closed after the last."""

    def __init__(self, client: socket.socket, upstream: socket.socket, forget) -> None:
        self.client = client
        self.upstream = upstream
        self._forget = forget
        self._left = 2
        self._lock = threading.Lock()
        self._closed = False

    def run(self, port: int) -> None:
        try:
            self.upstream.connect(("127.0.0.1", port))
            for s in (self.client, self.upstream):
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            self.close()
            return
        threading.Thread(target=self._pump, args=(self.upstream, self.client), daemon=True).start()
        self._pump(self.client, self.upstream)

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
            dst.shutdown(socket.SHUT_WR)  # the peer's half-close, passed on
        except OSError:
            # A reset or a closed socket on one side ends the other direction too.
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
        with self._lock:
            self._left -= 1
            last = self._left == 0
        if last:
            self.close()

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
        for s in (self.client, self.upstream):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()
        self._forget(self)
