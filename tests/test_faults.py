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

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from harness.backend import TEST_EGRESS_SLEEP
from harness.errors import HarnessError, HopFailure, ProcessExited
from harness.local.istiod import read_debug
from harness.local.processes import ManagedProcess
from harness.stand_in import UPSTREAM_PORTS
from harness.trace import CONTROL_PLANE
from harness.upstream_client import UpstreamClient

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
            self.answered += 1  # before the answer: the client may read it and the test look at once
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n[]")
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


# ------------------------------------------------------------------ the plugin's reports
def _child(tmp_path: Path, source: str, *args: str, timeout: float = 120, env: dict | None = None):
    (tmp_path / "test_child.py").write_text(source)
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-p", "no:pytest-kind-ng", "-ra", *args],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=dict(os.environ, **(env or {})),
    )


def _terminal_totals(out: str) -> str:
    last = [m.group(1) for m in re.finditer(r"^=+ (.+?) in [\d.]+s(?: \([^)]*\))? =+$", out, re.M)]
    assert last, out[-3000:]
    return last[-1]


def _said(out: str, words: str) -> list[str]:
    """The report lines with `words`, but pytest's own one-line index of them (-ra's short summary)."""
    return [line for line in out.splitlines() if words in line and not line.startswith("HARNESS ERROR ")]


def _summary_totals(artifacts: Path) -> str:
    return (artifacts / "summary.md").read_text().splitlines()[2]


_COUNTED = """
import pytest
from harness.errors import HarnessFault, HopFailure

@pytest.fixture
def cleanup_fault():
    yield
    raise RuntimeError("the cleanup broke")

@pytest.fixture
def cleanup_hop():
    yield
    raise HopFailure("istiod → proxy", "the cleanup did not converge")

def test_passes():
    pass

def test_passes_then_cleanup_faults(cleanup_fault):
    pass

def test_passes_then_cleanup_hop_fails(cleanup_hop):
    pass

def test_fails():
    raise HopFailure("app → sidecar", "nothing left the pod")

def test_fails_then_cleanup_faults(cleanup_fault):
    raise HopFailure("app → sidecar", "nothing left the pod")

def test_harness_fault(evidence):
    raise HarnessFault("iptables-restore in the hub failed: no luck")

def test_skips():
    pytest.skip("not here")

def test_istiod_silent(evidence):
    raise HopFailure("istiod → proxy", "istiod (pid 1) did not answer GET /debug/syncz", one_line=True)
"""


def test_terminal_and_summary_count_each_test_once(tmp_path):
    artifacts = tmp_path / "artifacts"
    proc = _child(tmp_path, _COUNTED, "--egress-artifacts", str(artifacts))
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1, out[-3000:]
    assert _terminal_totals(out) == "3 failed, 1 passed, 1 skipped, 3 errors", out[-3000:]
    assert _summary_totals(artifacts) == "3 failed, 1 passed, 1 skipped, 3 errors"


def _report_lines(out: str, header: str) -> list[str]:
    """The lines of one test's report in pytest's output, without its rulers and headings."""
    section = out.split(header, 1)[1].split("short test summary", 1)[0]
    return [line for line in section.splitlines() if line.strip() and not line.startswith(("=", "-", "_"))]


def test_a_harness_fault_reads_as_one_line_with_its_traceback_in_the_evidence(tmp_path):
    artifacts = tmp_path / "artifacts"
    proc = _child(tmp_path, _COUNTED, "--egress-artifacts", str(artifacts), "-k", "harness_fault")
    out = proc.stdout + proc.stderr
    lines = _report_lines(out, "ERROR at call of test_harness_fault _")
    assert lines == ["test_child.py:31: HarnessFault: iptables-restore in the hub failed: no luck"], out[-3000:]
    saved = (artifacts / "evidence" / "test_child.py_test_harness_fault" / "harness-error.call.txt").read_text()
    assert "Traceback" in saved and 'raise HarnessFault("iptables-restore' in saved


def test_istiod_silent_reads_as_one_line_too(tmp_path):
    artifacts = tmp_path / "artifacts"
    proc = _child(tmp_path, _COUNTED, "--egress-artifacts", str(artifacts), "-k", "istiod_silent")
    out = proc.stdout + proc.stderr
    lines = _report_lines(out, "_ test_istiod_silent _")
    assert lines == [
        "test_child.py:37: HopFailure: [hop: istiod → proxy] istiod (pid 1) did not answer GET /debug/syncz"
    ], out[-3000:]
    assert (artifacts / "evidence" / "test_child.py_test_istiod_silent" / "failure.call.txt").exists()


_CLEANUP = """
import pytest
from harness.errors import HopFailure

class FakeMesh:
    def collect(self, directory):
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "collected.txt").write_text("the mesh's state")

@pytest.fixture(scope="session")
def mesh():
    return FakeMesh()

def _fail():
    raise HopFailure("istiod → proxy", "the cleanup did not converge")

def test_cleanup_fails(scenario):
    scenario.defer(_fail)
"""


def test_a_failed_cleanup_has_evidence(tmp_path):
    artifacts = tmp_path / "artifacts"
    proc = _child(tmp_path, _CLEANUP, "--egress-artifacts", str(artifacts), "-k", "plaintext")
    out = proc.stdout + proc.stderr
    assert _terminal_totals(out) == "1 failed, 1 deselected", out[-3000:]
    assert _summary_totals(artifacts) == "1 failed, 1 deselected"
    evidence = artifacts / "evidence" / "test_child.py_test_cleanup_fails[plaintext]"
    assert "the cleanup did not converge" in (evidence / "cleanup-error.txt").read_text()
    assert (evidence / "mesh" / "collected.txt").read_text() == "the mesh's state"


_EXITED = """
from harness.errors import ProcessExited

def test_first(artifacts_dir):  # a harness fixture: the session reports as the suites' do
    pass

def test_finds_it_dead():
    raise ProcessExited("the stand-in (mock_upstream, pid 7) exited with SIGKILL (status -9); last log lines: (none)")

def test_not_run_1():
    pass

def test_not_run_2():
    pass
"""


def test_a_process_that_exited_is_said_once_and_stops_the_session(tmp_path):
    artifacts = tmp_path / "artifacts"
    proc = _child(tmp_path, _EXITED, "--egress-artifacts", str(artifacts))
    out = proc.stdout + proc.stderr
    assert proc.returncode == 3, out[-3000:]
    assert len(_said(out, "exited with SIGKILL")) == 1, out[-3000:]
    assert "not_run" not in out and "Interrupted: egress-harness: a process the session holds exited" in out
    assert _terminal_totals(out) == "1 passed, 1 error" == _summary_totals(artifacts)
    assert "the session stopped early: the stand-in (mock_upstream, pid 7)" in (artifacts / "summary.md").read_text()


# ------------------------------------------------------------------------ the stand-in
def test_the_upstream_client_says_the_stand_in_exited_not_unreachable():
    def check_alive() -> None:
        raise ProcessExited("the stand-in (mock_upstream, pid 7) exited with SIGKILL (status -9)")

    with socket.create_server(("127.0.0.1", 0)) as unused:
        port = unused.getsockname()[1]
    with (
        UpstreamClient(f"http://127.0.0.1:{port}", check_alive=check_alive) as client,
        pytest.raises(ProcessExited, match="exited with SIGKILL"),
    ):
        client.mark()


@pytest.mark.mesh
@pytest.mark.slow
def test_a_killed_stand_in_is_said_once_and_the_session_stops(tmp_path):
    """SIGKILL of the child session's stand-in: the next test (its traffic fails) is one HARNESS
    ERROR line saying the stand-in exited, with its status; the tests after it do not run, and the
    mesh is still torn down."""
    artifacts = tmp_path / "artifacts"
    pid_file = tmp_path / "stand-in.pid"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-p",
            "no:cacheprovider",
            "-ra",
            "tests/helpers/kill_stand_in.py",
            "--egress-artifacts",
            str(artifacts),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        env=dict(os.environ, EH_STAND_IN_PID=str(pid_file)),
    )
    out = proc.stdout + proc.stderr
    pid, run_id = pid_file.read_text().split()
    said = _said(out, "exited with")
    assert len(said) == 1, out[-4000:]
    assert f"the stand-in (mock_upstream, pid {pid}) exited with SIGKILL (status -9); last log lines:" in said[0]
    assert "test_traffic_after_it_died" in out and "a consequence" in out, out[-4000:]
    assert "test_reads_it_again" not in out and "test_and_again" not in out, out[-4000:]
    assert "unreachable" not in out and "Traceback" not in out, out[-4000:]
    assert proc.returncode == 3, out[-4000:]
    assert _terminal_totals(out) == "2 passed, 1 error" == _summary_totals(artifacts)
    assert (artifacts / "junit.xml").exists(), "the session ended the clean way, teardown included"
    netns = os.listdir("/var/run/netns") if os.path.isdir("/var/run/netns") else []
    assert not [n for n in netns if n.startswith(f"eh-{run_id}-")], "the child's mesh was torn down"


@pytest.mark.mesh
def test_no_pod_reaches_the_stand_ins_control_api(mesh):
    """Before: POST /reset from any pod erased the records a test was about to read."""
    upstream = mesh.upstream()
    mark = upstream.mark()
    sent = mesh.exec(
        TEST_EGRESS_SLEEP, ["curl", "-sS", "-o", "/dev/null", "--max-time", "5", "http://edition.cnn.com/"]
    )
    assert sent.exit_code == 0, sent.stderr
    [request] = upstream.wait_for_requests(1, since=mark)
    control = UPSTREAM_PORTS["control"]
    for url in (f"http://edition.cnn.com:{control}/reset", f"http://{mesh.upstream_address}:{control}/reset"):
        reset = mesh.exec(TEST_EGRESS_SLEEP, ["curl", "-sS", "-X", "POST", "--max-time", "5", url])
        assert reset.exit_code != 0, f"a pod reached {url}: {reset.stdout}"
    assert [r.id for r in upstream.requests(since=mark)] == [request.id], "the records are intact"
    # And without the run's token the control API answers nothing, even where it listens.
    with (
        UpstreamClient(f"http://127.0.0.1:{control}", transport=mesh.upstream_ns.http_transport()) as stranger,
        pytest.raises(HarnessError, match="refused the harness's token"),
    ):
        stranger.reset()
    assert [r.id for r in upstream.requests(since=mark)] == [request.id]


_ONE_OF_EACH = """
from harness.errors import HopFailure

def test_mesh_failure(evidence):
    evidence.observe(sni="www.cnn.com", status_chain="503")
    raise HopFailure("gateway → upstream", "expected SNI edition.cnn.com")

def test_harness_fault(evidence):
    raise RuntimeError("the harness broke")

def test_passes(evidence):
    evidence.observe(peer="198.18.0.7")
"""


def test_junit_tells_a_mesh_failure_from_a_harness_fault_and_carries_the_properties(tmp_path):
    """The mesh failure is junit.xml's one <failure>, the harness fault its one <error> (pytest
    alone writes both as failures: both are in the call phase); each test carries its outcome, hop
    and observations, the suite its backend and Istio version; summary.json and the job summary
    say the same."""
    import xml.etree.ElementTree as ET

    artifacts = tmp_path / "artifacts"
    step = tmp_path / "step-summary.md"
    proc = _child(tmp_path, _ONE_OF_EACH, "--egress-artifacts", str(artifacts), env={"GITHUB_STEP_SUMMARY": str(step)})
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1, out[-3000:]
    assert _terminal_totals(out) == "1 failed, 1 passed, 1 error" == _summary_totals(artifacts)
    suite = ET.parse(artifacts / "junit.xml").getroot().find("testsuite")
    assert suite is not None
    assert (suite.get("failures"), suite.get("errors")) == ("1", "1"), ET.tostring(suite)[:2000]
    cases = {c.get("name"): c for c in suite.iter("testcase")}
    assert [e.tag for e in cases["test_mesh_failure"] if e.tag in ("failure", "error")] == ["failure"]
    [error] = [e for e in cases["test_harness_fault"] if e.tag in ("failure", "error")]
    assert error.tag == "error" and error.get("message", "").startswith("harness error (not a failure of the mesh)")

    def props(element) -> dict[str, str]:
        return {p.get("name"): p.get("value") for p in element.iter("property")}

    assert props(cases["test_mesh_failure"]) == {
        "egress_harness.outcome": "failed",
        "egress_harness.hop": "gateway → upstream",
        "egress_harness.sni": "www.cnn.com",
        "egress_harness.status_chain": "503",
    }
    assert props(cases["test_harness_fault"])["egress_harness.outcome"] == "harness error"
    assert props(cases["test_passes"])["egress_harness.peer"] == "198.18.0.7"
    suite_props = {p.get("name"): p.get("value") for p in suite.find("properties") or []}
    assert suite_props["egress_harness.backend"] == "local" and suite_props["egress_harness.istio_version"]
    summary = json.loads((artifacts / "summary.json").read_text())
    assert summary["totals"] == {"failed": 1, "harness error": 1, "passed": 1}
    assert [(t["id"], t["outcome"], t["hop"]) for t in summary["tests"]] == [
        ("test_child.py::test_mesh_failure", "failed", "gateway → upstream"),
        ("test_child.py::test_harness_fault", "harness error", None),
        ("test_child.py::test_passes", "passed", None),
    ]
    assert step.read_text().startswith((artifacts / "summary.md").read_text())
    assert f"egress-harness: backend local, Istio {summary['properties']['istio_version']}; artifacts in" in out
    assert f"egress-harness: {artifacts / 'summary.md'}, summary.json, {artifacts / 'junit.xml'}" in out
    assert f"the evidence of each failed test under {artifacts / 'evidence'}" in out
