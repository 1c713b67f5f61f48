"""Seed §4: Kubernetes NetworkPolicy blocks what bypasses the egress gateway. The test body is the
section in the seed's order, with the checks (harness/checks) each step must pass. Each change
registers its undo with the scenario, so a failure's evidence shows the mesh as it failed, and
cleanup restores it afterwards."""

from __future__ import annotations

from functools import partial

import pytest

from harness.backend import TEST_EGRESS_SLEEP
from harness.checks.hop_checks import client_saw_certificate, direct_from, hop_tls, statuses, verify
from harness.checks.network_policy import ALLOWED_NAMESPACES, CONNECT_TIMEOUT
from harness.checks.passthrough import CNN_443, CNN_443_CX, HOST, HTTPS_URL, STAND_IN_ISSUER, through_gateway_by_sni
from harness.checks.seen_checks import blocked_at_connect, gateway_logged_tcp
from harness.curl_result import curl_command
from harness.trace import APP_UPSTREAM


@pytest.mark.gateway_api
def test_network_policy_forces_traffic_through_gateway(scenario, mode):
    backend = scenario.backend
    scenario.apply("passthrough/gateway")
    with scenario.step("without a sidecar, test-egress/sleep reaches the upstream directly"):
        t = scenario.trace(TEST_EGRESS_SLEEP, "curl-before-policy")
        t.run(curl_command(HTTPS_URL, extra=["-v", "--connect-timeout", str(CONNECT_TIMEOUT)]))
        t.wait_upstream_requests(1)
        verify(
            t,
            statuses([200]),
            direct_from(TEST_EGRESS_SLEEP, "https", sni=HOST, hop=APP_UPSTREAM),
            client_saw_certificate(HOST, STAND_IN_ISSUER),
        )
    for namespace, label, value in ALLOWED_NAMESPACES:
        backend.label_namespace(namespace, {label: value})
        scenario.defer(partial(backend.label_namespace, namespace, {label: None}))
    scenario.apply_extra(
        scenario.render("network-policy") + scenario.render("network-policy/destinationrule"), "network-policy"
    )
    with scenario.step("the policy blocks the direct path"):
        t = scenario.trace(TEST_EGRESS_SLEEP, "curl-with-policy")
        t.run(curl_command(HTTPS_URL, extra=["--connect-timeout", str(CONNECT_TIMEOUT)]))
        verify(t, blocked_at_connect(within=CONNECT_TIMEOUT + 5))
    backend.label_namespace("test-egress", {"istio-injection": "enabled"})
    scenario.defer(lambda: backend.label_namespace("test-egress", {"istio-injection": None}))
    scenario.defer(lambda: backend.redeploy(TEST_EGRESS_SLEEP, sidecar=False))
    backend.redeploy(TEST_EGRESS_SLEEP, sidecar=True)
    with scenario.step("with a sidecar, test-egress/sleep goes through the gateway"):
        t = scenario.trace(TEST_EGRESS_SLEEP, "curl-0", counters=[CNN_443_CX])
        t.run(curl_command(HTTPS_URL, extra=["-v"]))
        verify(
            t,
            *through_gateway_by_sni(scenario.values["gateway_port"]),
            gateway_logged_tcp(sni=HOST, cluster=CNN_443),
            hop_tls(scenario.mode.hop_tls, lambda e: e.is_tcp, source=TEST_EGRESS_SLEEP, sni=HOST),
        )
    scenario.evidence.observe(gateway_peer=backend.pod_address(scenario.gateway))
