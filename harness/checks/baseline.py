"""Back to baseline after a scenario's delete (the test is suites/test_cleanup.py): what the
gateway carries for a scenario, read from the proxy itself."""

from __future__ import annotations

from harness.backend import GATEWAY
from harness.errors import HarnessError
from harness.scenario import Scenario

SCENARIO_LISTENER_PORTS = (8080, 8443)  # what Gateway servers on 80/443 become on the gateway pod
# A Gateway API listener is bound on its own port in the pod istiod deploys (the kube-gateway
# template lets uid 1337 bind low ports).
GATEWAY_API_LISTENER_PORTS = (80, 443)


def gateway_scenario_listeners(sc: Scenario, gateway: str = GATEWAY) -> list[str]:
    """The gateway's listeners on a scenario's ports."""
    ports = sc.backend.proxy_admin(gateway).listener_addresses()
    wanted = GATEWAY_API_LISTENER_PORTS if gateway != GATEWAY else SCENARIO_LISTENER_PORTS
    return sorted(name for name, (_, port) in ports.items() if port in wanted)


def scenario_left_on_gateway(sc: Scenario) -> list[str]:
    """What a delete must not leave: the Istio API gateway's scenario listeners, or (Gateway API)
    the gateway istiod deployed for the Gateway, which must be gone altogether."""
    if sc.mode.api != "gateway-api":
        return gateway_scenario_listeners(sc)
    try:
        return [f"deployed gateway {sc.gateway} still runs"]  # sc.gateway: HarnessError once none is deployed
    except HarnessError:
        return []
