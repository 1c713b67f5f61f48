"""harness/converge.py on the local mesh: a proxy that never takes the config is the control
plane's hop (HopFailure[istiod → proxy]) naming that proxy, and one that takes it late still
converges. (kind and a cluster run the same code with KubeBackend as the target.)"""

from __future__ import annotations

import os
import signal

import pytest

from harness.errors import HopFailure
from harness.pod_table import GATEWAY
from harness.sync import CLUSTER_TYPE, push_number, push_tail_unsent
from harness.trace import CONTROL_PLANE
from harness.wait import poll

pytestmark = pytest.mark.mesh


def _agent(mesh, key: str):
    [proxy] = [p for p in mesh.proxies() if f"{p.spec.namespace}/{p.spec.pod_name}" == key]
    return proxy.process


def test_a_proxy_that_never_takes_the_config_is_the_control_planes_hop(mesh):
    """The gateway's pilot-agent (its xDS proxy to istiod) stopped: its Envoy still answers the
    admin API, but no new config reaches it, so the marker's cluster never does."""
    agent = _agent(mesh, GATEWAY)
    os.kill(agent.pid, signal.SIGSTOP)
    try:
        with pytest.raises(HopFailure) as caught:
            mesh.convergence.wait(timeout=4.0)
    finally:
        os.kill(agent.pid, signal.SIGCONT)
    assert caught.value.hop == CONTROL_PLANE
    assert f"{GATEWAY} to accept config generation" in str(caught.value), caught.value
    mesh.convergence.wait()  # whole again once the agent runs: the tests after this one need it


# Gives the egress gateway a listener of its own to send (and to remove at the delete).
PROBE_GATEWAY = {
    "apiVersion": "networking.istio.io/v1",
    "kind": "Gateway",
    "metadata": {"name": "converge-probe", "namespace": "default"},
    "spec": {
        "selector": {"istio": "egressgateway"},
        "servers": [{"port": {"number": 8089, "name": "http", "protocol": "HTTP"}, "hosts": ["probe.example"]}],
    },
}


def test_the_marker_push_is_whole_before_the_wait_returns(mesh):
    """The marker's cluster arrives first in its push (harness/sync.py): on this istiod every
    nonce carries its push's number, so the wait's fast path reads something real, and once no
    push is in flight every proxy's listeners come from its clusters' push or later (routes
    watched with nothing to send may stay older: the barrier's case)."""
    mesh.apply([PROBE_GATEWAY])
    try:
        statuses = mesh.running_istiod.syncz()
        assert statuses and all(push_number(s["resources"][CLUSTER_TYPE]["sent"]) for s in statuses), statuses
        # Once no further push is in flight, what the fast path reads is whole on every proxy.
        poll(
            "every proxy's listeners and routes sent in its clusters' push or later",
            lambda: push_tail_unsent(mesh.running_istiod.syncz()),
            ok=lambda unsent: all("Listener" not in line for line in unsent),
            timeout=5.0,
            describe="; ".join,
        )
    finally:
        mesh.delete([PROBE_GATEWAY])
