"""Back to baseline after a scenario's delete: no scenario listener on the gateway, no traffic
through it (with REGISTRY_ONLY, edition.cnn.com is then not reachable from the mesh at all)."""

from __future__ import annotations

from harness.backend import GATEWAY, SLEEP
from harness.checks.hop_checks import refused_by_sidecar, statuses, verify
from harness.checks.http_gateway import URL
from harness.curl_result import curl_command
from harness.errors import HarnessError, HopFailure
from harness.scenario import Scenario
from harness.trace import SIDECAR_GATEWAY, Trace

SCENARIO_LISTENER_PORTS = (8080, 8443)  # what Gateway servers on 80/443 become on the gateway pod
# A Gateway API listener is bound on its own port in the pod istiod deploys (the kube-gateway
# template lets uid 1337 bind low ports).
GATEWAY_API_LISTENER_PORTS = (80, 443)


def gateway_scenario_listeners(sc: Scenario, gateway: str = GATEWAY) -> list[str]:
    ports = sc.backend.proxy_admin(gateway).listener_addresses()
    wanted = GATEWAY_API_LISTENER_PORTS if gateway != GATEWAY else SCENARIO_LISTENER_PORTS
    return sorted(name for name, (_, port) in ports.items() if port in wanted)


def check_gateway_carries(sc: Scenario) -> list[str]:
    """The mode's gateway has a listener for the stage's Gateway (in the Gateway API: the pod
    istiod deployed for it); the listeners, for check_baseline."""
    listeners = gateway_scenario_listeners(sc, sc.gateway)
    if not listeners:
        raise HopFailure(SIDECAR_GATEWAY, "the gateway has no listener for the scenario's Gateway server")
    return listeners


def check_baseline(sc: Scenario, listeners_before: list[str]) -> None:
    """No scenario listener left on the gateway (in the Gateway API: no deployed gateway left at
    all); a request to edition.cnn.com is refused by the sidecar (502, REGISTRY_ONLY's
    block_all), passes no gateway and reaches no stand-in."""
    if sc.mode.api == "gateway-api":
        try:
            left = [f"deployed gateway {sc.gateway} still runs"]
        except HarnessError:  # no deployed gateway for the Gateway: what a delete must leave
            left = []
    else:
        left = gateway_scenario_listeners(sc)
    if left:
        raise HopFailure(SIDECAR_GATEWAY, f"after delete the gateway still carries {left}")
    # Traced against istio-egressgateway: the only gateway left, which must see nothing either.
    t = Trace(sc.backend, sc.evidence, SLEEP, "curl-after-delete", []).begin()
    t.run(curl_command(URL, follow=False))
    # REGISTRY_ONLY with no ServiceEntry: the sidecar answers 502 itself (Istio's block_all route).
    verify(t, statuses([502]), refused_by_sidecar())
    t.expect(not t.log(GATEWAY), SIDECAR_GATEWAY, "traffic still passes the gateway after delete")
    t.expect(
        not [r for r in t.upstream_requests()],
        SIDECAR_GATEWAY,
        f"edition.cnn.com is still reachable after delete: {[r.summary() for r in t.upstream_requests()]}",
    )
    sc.evidence.observe(before=listeners_before, after=left, client_after=t.result.describe())
