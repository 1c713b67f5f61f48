"""--egress-keep-mesh on the local mesh: after a failed test the session holds the mesh up and prints
the lines that reach it; its API server answers with that kubeconfig; SIGTERM then tears it down
as always (no network namespace of the run left)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from harness.kube_rest import KubeRest
from harness.wait import poll

REPO = Path(__file__).resolve().parents[1]


def _netns() -> set[str]:
    return set(os.listdir("/var/run/netns")) if os.path.isdir("/var/run/netns") else set()


@pytest.mark.mesh
@pytest.mark.slow
def test_a_failed_session_holds_the_mesh_until_sigterm(tmp_path: Path):
    if os.geteuid() != 0:
        pytest.fail("the kept mesh's API server is reachable from this shell only as root (make test runs as root)")
    before = _netns()
    proc = subprocess.Popen(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "tests/helpers/fail_with_mesh.py"]
        + ["--egress-keep-mesh", f"--egress-artifacts={tmp_path / 'a'}"],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(proc.stdout or ()), daemon=True)
    reader.start()
    try:
        poll(
            "the child to say it keeps the mesh up",
            lambda: any("tears it down" in line for line in lines),
            timeout=120,
            interval=0.2,
            describe=lambda _: "".join(lines[-20:]),
        )
        [export] = [line.split("export KUBECONFIG=", 1)[1].strip() for line in lines if "export KUBECONFIG=" in line]
        assert any("1 failed; --egress-keep-mesh keeps the local mesh up" in line for line in lines), lines
        api = KubeRest.from_kubeconfig(Path(export))
        try:
            names = {p["metadata"]["name"] for p in api.client.get("/api/v1/namespaces/default/pods").json()["items"]}
        finally:
            api.close()
        assert "sleep" in names, names  # the held mesh is the suites' mesh, answering
        assert proc.poll() is None, "the child ended while it should hold the mesh"
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
        reader.join(timeout=10)
    out = "".join(lines)
    assert proc.returncode == 1, out[-3000:]  # the failed test's status, not an interrupted run's
    assert "tearing the kept mesh down" in out, out[-3000:]
    assert _netns() <= before, f"left behind: {_netns() - before}"
