"""harness/local/loopback_forwarder.py: the API server's loopback port survives any local user.

The unit tests forward to a real TCP server on loopback (the forwarder's namespace is the test's
own: the class only needs `.socket()`); the mesh test hammers the real API server's forwarder of
a running local mesh and then uses kubectl through it.
"""

from __future__ import annotations

import errno
import os
import socket
import threading
from pathlib import Path

import pytest

from harness.local import loopback_forwarder
from harness.local.loopback_forwarder import LoopbackForwarder
from tests.helpers.expect import eventually


class _HostNamespace:
    """The test's own network namespace, in the shape the forwarder uses."""

    def socket(self) -> socket.socket:
        return socket.socket(socket.AF_INET, socket.SOCK_STREAM)


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.fixture
def echo_server():
    """A TCP echo server on loopback that closes when its client half-closes, as TLS servers do."""
    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def serve(conn: socket.socket) -> None:
        with conn:
            while data := conn.recv(65536):
                conn.sendall(data)

    def accept() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError as exc:
                # Out of descriptors (the EMFILE test runs in this process too): wait, as the
                # forwarder does; it used to end this loop, and the round trip after timed out.
                if not stop.is_set() and exc.errno in (errno.EMFILE, errno.ENFILE):
                    stop.wait(0.05)
                    continue
                return
            threading.Thread(target=serve, args=(conn,), daemon=True).start()

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield listener.getsockname()[1]
    stop.set()
    listener.close()


@pytest.fixture
def forwarder(echo_server):
    fwd = LoopbackForwarder(_HostNamespace(), echo_server)  # type: ignore[arg-type]
    fwd.start()
    yield fwd
    fwd.stop()


def _round_trip(port: int, payload: bytes = b"ping") -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(payload)
        s.shutdown(socket.SHUT_WR)
        out = b""
        while chunk := s.recv(65536):
            out += chunk
        return out


def test_bytes_and_half_close_pass_through(forwarder):
    assert _round_trip(forwarder.local_port, b"x" * 200_000) == b"x" * 200_000
    eventually("the finished connection's sockets closed", lambda: forwarder.open_connections == 0)


@pytest.mark.slow  # ~10 s: three threads per connection
def test_five_thousand_connect_close_cycles_leak_no_descriptor(forwarder):
    _round_trip(forwarder.local_port)
    eventually("the warm-up connection closed", lambda: forwarder.open_connections == 0)
    before = _open_fds()
    for _ in range(5000):
        socket.create_connection(("127.0.0.1", forwarder.local_port), timeout=5).close()
    eventually("all 5000 connections closed", lambda: forwarder.open_connections == 0, timeout=30)
    eventually(f"descriptors back to {before}", lambda: _open_fds() <= before, timeout=30)
    assert _round_trip(forwarder.local_port) == b"ping"


def test_a_flood_of_idle_connections_is_capped_and_service_comes_back(forwarder, monkeypatch):
    monkeypatch.setattr(loopback_forwarder, "MAX_CONNECTIONS", 20)
    idle = [socket.create_connection(("127.0.0.1", forwarder.local_port), timeout=5) for _ in range(20)]
    eventually("20 idle connections forwarded", lambda: forwarder.open_connections == 20)
    extra = socket.create_connection(("127.0.0.1", forwarder.local_port), timeout=5)
    assert extra.recv(1) == b"", "a connection past the cap is closed at once"
    extra.close()
    for s in idle:
        s.close()
    eventually("the flood's connections closed", lambda: forwarder.open_connections == 0)
    assert _round_trip(forwarder.local_port) == b"ping"


def test_out_of_descriptors_does_not_end_the_accept_loop(forwarder):
    """EMFILE on accept used to end the accept thread for good: the port then hung forever."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    hog: list[int] = []
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (_open_fds() + 8, hard))
        client = socket.create_connection(("127.0.0.1", forwarder.local_port), timeout=5)
        try:
            while True:
                hog.append(os.open("/dev/null", os.O_RDONLY))
        except OSError:
            pass
        # The forwarder cannot accept (or dial upstream) now; the client waits in the backlog.
    finally:
        for fd in hog:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    client.close()
    assert _round_trip(forwarder.local_port) == b"ping"


@pytest.mark.mesh
@pytest.mark.slow
def test_the_api_server_port_survives_five_thousand_connections(mesh):
    """The defect as found: 1,000 connect+close cycles to the printed port cost 2,000 descriptors,
    ~9,100 reached the limit and `kubectl get ns` hung from then on."""
    fwd = mesh.control_plane.forwarder
    kubectl = mesh.registry.kubectl
    namespaces = sorted(n["metadata"]["name"] for n in kubectl.json("get", "ns")["items"])
    before = _open_fds()
    for _ in range(5000):
        socket.create_connection(("127.0.0.1", fwd.local_port), timeout=5).close()
    eventually(f"the harness's descriptors back to {before}", lambda: _open_fds() <= before + 2, timeout=60)
    assert sorted(n["metadata"]["name"] for n in kubectl.json("get", "ns")["items"]) == namespaces
    assert Path(f"/proc/{os.getpid()}").exists()
