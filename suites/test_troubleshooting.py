"""Seed §5: the checks the seed gives for troubleshooting, as tests. Each test body is its
specification: the traffic it sends and the checks (harness/checks) it must pass, hop by hop."""

from __future__ import annotations

import pytest

from harness.backend import SLEEP
from harness.checks.hop_checks import counter_grew, hop_tls, statuses, upstream_handshake, verify
from harness.checks.http_gateway import URL
from harness.checks.passthrough import CNN_443_CX, HOST, STAND_IN_ISSUER
from harness.checks.seen_checks import gateway_certificate_san, openssl_connected, openssl_verified_chain
from harness.curl_result import curl_command


@pytest.mark.gateway_api
def test_gateway_certificate_has_spiffe_san(scenario, mode):
    """The gateway's workload certificate carries its SPIFFE SAN; on the sidecar → gateway hop the
    sidecar sees it presented in istio-mutual mode, and no certificate at all in plaintext mode."""
    scenario.apply("http/gateway")
    t = scenario.trace(SLEEP, "curl")
    with scenario.step("the gateway's certificate carries its SPIFFE SAN"):
        verify(t, gateway_certificate_san())
    with scenario.step("the hop presents it only in istio-mutual mode"):
        t.run(curl_command(URL, follow=False))
        verify(t, statuses([301]), hop_tls(scenario.mode.hop_tls, lambda e: e.path == "/politics"))
    scenario.evidence.observe(gateway_san=t.gateway_spiffe, presented_on_hop=scenario.mode.hop_tls)


@pytest.mark.gateway_api
def test_openssl_s_client_shows_stand_in_chain(scenario, mode):
    """openssl s_client from the pod shows the stand-in's chain; its TLS went through the gateway
    untouched: the stand-in completed a handshake from the gateway with openssl's SNI, and the
    gateway counted the connection once."""
    scenario.apply("passthrough/gateway")
    t = scenario.trace(SLEEP, "openssl", counters=[CNN_443_CX])
    # Through Trace.run: its client evidence, and its retry after the sidecar's UH toward a
    # just-deployed gateway.
    t.run(["openssl", "s_client", "-connect", f"{HOST}:443", "-servername", HOST, "-showcerts"], timeout=15)
    verify(
        t,
        openssl_connected(),
        openssl_verified_chain(HOST, STAND_IN_ISSUER),
        upstream_handshake("https", HOST, failed=False),
        counter_grew(CNN_443_CX, 1),
    )
    scenario.evidence.observe(openssl=f"chain: CN={HOST} issued by {STAND_IN_ISSUER}", sni=HOST)
