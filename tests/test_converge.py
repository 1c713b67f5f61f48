"""harness/converge.py on the local mesh: a proxy that never takes the config is the control
plane's hop (HopFailure[istiod → proxy]) naming that proxy, and one that takes it late still
converges. (kind and a cluster run the same code with KubeBackend as the target.)"""

from __future__ import annotations

import os
import signal

import pytest

from harness.errors import HopFailure
from harness.pod_table import GATEWAY
from harness.trace import CONTROL_PLANE

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
