"""Seed §3: HTTPS the application originates, routed by SNI through the gateway, not terminated, in
the Istio API and (tests marked gateway_api) the Gateway API. Each test body is its specification:
the traffic it sends and the checks (harness/checks) each exchange must pass, hop by hop."""

from __future__ import annotations

import pytest

from harness.backend import SLEEP
from harness.checks.hop_checks import client_saw_certificate, direct_from, hop_tls, statuses, verify
from harness.checks.passthrough import CNN_443, CNN_443_CX, HOST, HTTPS_URL, STAND_IN_ISSUER, through_gateway_by_sni
from harness.checks.seen_checks import gateway_logged_tcp, gateway_untouched
from harness.curl_result import curl_command
from harness.stats import seed_name


def test_serviceentry_only_goes_direct(scenario, mode):
    """Step 1: with only the ServiceEntry, HTTPS reaches edition.cnn.com straight from the pod:
    200 over the application's own TLS, the gateway untouched."""
    scenario.apply("passthrough/serviceentry")
    t = scenario.trace(SLEEP, "curl", counters=[CNN_443_CX])
    t.run(curl_command(HTTPS_URL, extra=["-v"]))
    t.wait_upstream_requests(1)
    verify(
        t,
        statuses([200]),
        direct_from(SLEEP, "https", sni=HOST),
        client_saw_certificate(HOST, STAND_IN_ISSUER),
        gateway_untouched(CNN_443_CX),
    )
    scenario.evidence.observe(
        status_chain=t.result.describe(),
        peer=scenario.backend.pod_address(SLEEP),
        sni=t.upstream_requests()[0].sni,
    )


@pytest.mark.gateway_api
def test_passthrough_by_sni(scenario, mode):
    """The application's own TLS reaches the stand-in untouched, three times: each request by SNI
    through the gateway (one more upstream connection each); the gateway's TCP line carries the
    SNI, and the sidecar → gateway hop has the mode's TLS."""
    scenario.apply("passthrough/gateway")
    for i in range(3):
        t = scenario.trace(SLEEP, f"curl-{i}", counters=[CNN_443_CX])
        t.run(curl_command(HTTPS_URL, extra=["-v"]))
        with scenario.step(f"request {i + 1}: TLS by SNI through the gateway, not terminated"):
            verify(t, *through_gateway_by_sni(scenario.values["gateway_port"]))
    with scenario.step("the gateway's TCP access-log line carries the SNI"):
        verify(
            t,
            gateway_logged_tcp(sni=HOST, cluster=CNN_443),
            hop_tls(scenario.mode.hop_tls, lambda e: e.is_tcp, source=SLEEP, sni=HOST),
        )
    req = t.from_gateway()[-1]
    scenario.evidence.observe(
        status_chain=t.result.describe(),
        sni=req.sni,
        peer=req.peer_address,
        counter=f"{seed_name(*CNN_443_CX)} +1 per request",
    )
