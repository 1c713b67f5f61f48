"""Each scenario's delete returns the mesh to baseline: no scenario listener on the gateway (in the
Gateway API: no deployed gateway left at all), no traffic through it, and with REGISTRY_ONLY
edition.cnn.com not reachable from the mesh at all."""

from __future__ import annotations

import pytest

from harness.backend import SLEEP
from harness.checks.baseline import gateway_scenario_listeners, scenario_left_on_gateway
from harness.checks.hop_checks import refused_by_sidecar, statuses, verify
from harness.checks.http_gateway import URL
from harness.checks.seen_checks import gateway_untouched, nothing_upstream
from harness.curl_result import curl_command
from harness.errors import HopFailure
from harness.trace import SIDECAR_GATEWAY, Trace

STAGES = ["http/gateway", "origination/simple", "passthrough/gateway"]


@pytest.mark.gateway_api
@pytest.mark.parametrize("stage", STAGES)
def test_delete_returns_to_baseline(scenario, mode, stage):
    scenario.apply(stage)
    before = gateway_scenario_listeners(scenario, scenario.gateway)
    if not before:
        raise HopFailure(SIDECAR_GATEWAY, "the gateway has no listener for the scenario's Gateway server")
    scenario.delete_all()
    left = scenario_left_on_gateway(scenario)
    if left:
        raise HopFailure(SIDECAR_GATEWAY, f"after delete the gateway still carries {left}")
    # Traced against istio-egressgateway: the only gateway left, which must see nothing either.
    t = Trace(scenario.backend, scenario.evidence, SLEEP, "curl-after-delete", []).begin()
    t.run(curl_command(URL, follow=False))
    # REGISTRY_ONLY with no ServiceEntry: the sidecar answers 502 itself (Istio's block_all route),
    # and nothing reaches the gateway or the stand-in.
    verify(t, statuses([502]), refused_by_sidecar(), gateway_untouched(hop=SIDECAR_GATEWAY), nothing_upstream())
    scenario.evidence.observe(before=before, after=left, client_after=t.result.describe())
