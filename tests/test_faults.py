"""Faults of what the harness holds, each test failing before its fix (the hardening issue's 5, 6
and the stand-in's open control API):

5. a frozen istiod gave raw httpx tracebacks, no retry inside the convergence deadline, no evidence
   for a cleanup that failed, and a terminal ("31 passed, 2 errors") disagreeing with summary.md
   ("30 passed, 2 harness error");
6. a SIGKILLed stand-in gave one "control API … unreachable" error per later test, never saying
   that it had exited;
7. any pod could POST /reset to the stand-in's control port.
"""

from __future__ import annotations

import os
import signal
import socket
import threading
import time
from pathlib import Path

import httpx
import pytest

from harness.errors import HopFailure, ProcessExited
from harness.local.istiod import read_debug
from harness.local.processes import ManagedProcess
from harness.trace import CONTROL_PLANE

REPO = Path(__file__).resolve().parents[1]


# ------------------------------------------------------------------------ istiod's debug reads
class _NoState:
    """ManagedProcess.start records the pid in the run's state; these processes need none."""

    def add_process(self, pid: int, name: str) -> None:
        pass


class _DebugServer:
    """istiod's debug port as a test needs it: holds (never answers) the first `silent` connections,
    answers `[]` on the ones after."""

    def __init__(self, silent: int):
        self.silent = silent
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.held: list[socket.socket] = []
        self.answered = 0
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            if len(self.held) < self.silent:
                self.held.append(conn)
                continue
            data = b""
            while b"\r\n\r\n" not in data:
                chunk = conn.recv(4096)
                if not chunk:
                    break
                data += chunk
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n[]")
            self.answered += 1
            conn.close()

    def close(self) -> None:
        self.sock.close()
        for conn in self.held:
            conn.close()


def _client(port: int) -> httpx.Client:
    return httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=5.0, trust_env=False)


@pytest.fixture
def live_process(tmp_path: Path):
    proc = ManagedProcess("istiod", ["sleep", "60"], tmp_path / "istiod.log")
    proc.start(_NoState())  # type: ignore[arg-type]
    yield proc
    proc.stop(grace=1.0)


def test_a_debug_read_that_times_out_is_retried_within_the_deadline(live_process):
    server = _DebugServer(silent=2)
    try:
        with _client(server.port) as client:
            got = read_debug(client, "/debug/syncz", live_process, deadline=time.monotonic() + 5, attempt_timeout=0.3)
    finally:
        server.close()
    assert got == [] and server.answered == 1 and len(server.held) == 2


def test_istiod_silent_until_the_deadline_is_one_control_plane_line(live_process):
    server = _DebugServer(silent=100)
    started = time.monotonic()
    try:
        with _client(server.port) as client, pytest.raises(HopFailure) as caught:
            read_debug(client, "/debug/syncz", live_process, deadline=started + 1.5, attempt_timeout=0.4)
    finally:
        server.close()
    elapsed = time.monotonic() - started
    message = str(caught.value)
    assert caught.value.hop == CONTROL_PLANE and "\n" not in message, message
    assert (
        f"istiod (pid {live_process.pid}, sleeping) did not answer GET http://127.0.0.1:{server.port}/debug/syncz"
        in message
    )
    assert "ReadTimeout" in message, message
    assert 1.5 <= elapsed < 2.2, elapsed
    assert caught.value.__cause__ is None and caught.value.__context__ is None, "no httpx chain behind it"


def test_a_dead_istiod_is_a_harness_fault_at_once(tmp_path: Path):
    proc = ManagedProcess("istiod", ["sh", "-c", "echo 'pilot-discovery: fatal: out of luck'; exit 3"], tmp_path / "l")
    proc.start(_NoState())  # type: ignore[arg-type]
    assert proc.popen is not None
    proc.popen.wait(10)
    with socket.create_server(("127.0.0.1", 0)) as unused:
        port = unused.getsockname()[1]  # closed below: connection refused
    started = time.monotonic()
    with _client(port) as client, pytest.raises(ProcessExited) as caught:
        read_debug(client, "/debug/configz", proc, deadline=started + 10)
    assert time.monotonic() - started < 1, "istiod's death is not a thing to wait out"
    assert str(caught.value) == (
        f"istiod (istiod, pid {proc.pid}) exited with status 3; last log lines: pilot-discovery: fatal: out of luck"
        f" (while the harness read GET http://127.0.0.1:{port}/debug/configz)"
    )


@pytest.mark.mesh
def test_istiod_paused_longer_than_one_read_still_converges(mesh):
    """SIGSTOP of istiod for longer than one read's timeout (5 s), shorter than the deadline
    (15 s): convergence reads again and succeeds once istiod runs again."""
    from harness.local.istiod import READ_TIMEOUT

    pid = mesh.istiod.process.pid
    resume = threading.Timer(READ_TIMEOUT + 2.0, os.kill, (pid, signal.SIGCONT))  # the fault's length
    os.kill(pid, signal.SIGSTOP)
    started = time.monotonic()
    try:
        resume.start()
        mesh.convergence.wait()
    finally:
        resume.cancel()
        os.kill(pid, signal.SIGCONT)
    assert time.monotonic() - started >= READ_TIMEOUT + 2.0, "istiod was paused for the whole of it"


@pytest.mark.mesh
def test_istiod_paused_past_the_deadline_is_one_line_naming_it(mesh):
    pid = mesh.istiod.process.pid
    os.kill(pid, signal.SIGSTOP)
    started = time.monotonic()
    try:
        with pytest.raises(HopFailure) as caught:
            mesh.convergence.wait(timeout=7.0)
        elapsed = time.monotonic() - started
    finally:
        os.kill(pid, signal.SIGCONT)
    message = str(caught.value)
    assert "\n" not in message and caught.value.hop == CONTROL_PLANE, message
    assert f"istiod (pid {pid}, stopped (SIGSTOP)) did not answer GET http://127.0.0.1:8080/debug/syncz" in message
    assert elapsed < 7.0 + 1.0, f"the deadline is 7 s; it took {elapsed:.1f}s"
    mesh.convergence.wait()  # and the mesh is whole again for the tests after this one
