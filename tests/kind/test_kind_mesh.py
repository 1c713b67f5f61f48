"""The shared convergence and evidence code on a kind cluster (make test-kind runs this module with
the suites, on the one cluster the suites use): a proxy that never takes the config is the control
plane's hop, as on the local mesh (tests/test_converge.py), and the evidence a failure collects on
kind is what `python -m harness.config_diff` reads.

The kind nodes are containers on this machine, so the gateway's pilot-agent is a process of this
machine too: it is found by the POD_NAME and POD_NAMESPACE Kubernetes gives it (its environment,
read under /proc as root) and stopped with SIGSTOP, as the local test stops its own."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from harness.backends.kube import KubeBackend
from harness.errors import HopFailure
from harness.manifests import render
from harness.pod_table import GATEWAY, SLEEP
from harness.pytest_options import setting
from harness.trace import CONTROL_PLANE
from tests.helpers.host_process import pod_process

pytestmark = pytest.mark.kind


@pytest.fixture
def kind_mesh(mesh, pytestconfig) -> KubeBackend:
    if setting(pytestconfig, "backend") != "kind":
        raise pytest.UsageError("tests/kind runs on a kind cluster: make test-kind (or pytest --egress-backend=kind)")
    assert isinstance(mesh, KubeBackend), type(mesh)
    return mesh


@contextmanager
def stopped(pid: int) -> Iterator[None]:
    os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(pid, signal.SIGCONT)


def test_a_proxy_that_never_takes_the_config_is_the_control_planes_hop_on_kind(kind_mesh):
    """The gateway's pilot-agent (its xDS proxy to istiod) stopped: its Envoy still answers the
    admin API over the port-forward, but no new config reaches it, so the marker never does."""
    namespace, name, _ = kind_mesh.pod_name(GATEWAY)
    agent = pod_process(namespace, name, "pilot-agent")
    with stopped(agent), pytest.raises(HopFailure) as caught:
        kind_mesh.wait_converged(timeout=6.0)
    assert caught.value.hop == CONTROL_PLANE
    assert f"{GATEWAY} to accept config generation" in str(caught.value), caught.value
    kind_mesh.wait_converged()  # whole again once the agent runs: the tests after this one need it


def test_config_diff_reads_the_evidence_a_failure_collects_on_kind(kind_mesh, tmp_path: Path):
    """The mesh-wide evidence of a failed test (backend.collect, as the scenario fixture calls it)
    before and after one ServiceEntry: config_diff reads both folders and names the new cluster
    on the proxies, exit 1 as diff(1) says "they differ"."""
    objs = render("http/serviceentry", mode="istio-mutual")
    kind_mesh.wait_converged()  # a suite test's stages deleted without waiting are gone first
    kind_mesh.collect(tmp_path / "before")
    kind_mesh.apply(objs)
    try:
        kind_mesh.collect(tmp_path / "after")
    finally:
        kind_mesh.delete(objs)
    assert (tmp_path / "before" / GATEWAY.replace("/", ".") / "config_dump.json").is_file()
    diff = subprocess.run(
        [sys.executable, "-m", "harness.config_diff", str(tmp_path / "before"), str(tmp_path / "after")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert diff.returncode == 1, diff.stdout + diff.stderr
    sleep = SLEEP.replace("/", ".")
    for port in (80, 443):
        assert f"{sleep} cluster outbound|{port}||edition.cnn.com: (unset) → " in diff.stdout, diff.stdout
