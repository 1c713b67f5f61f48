"""Seed §5: the checks the seed gives for troubleshooting, as tests."""

from __future__ import annotations

import pytest

from harness.checks import passthrough as checks


@pytest.mark.gateway_api
def test_gateway_certificate_has_spiffe_san(scenario, mode):
    """The gateway's workload certificate carries its SPIFFE SAN; on the sidecar → gateway hop the
    sidecar sees it presented in istio-mutual mode, and no certificate at all in plaintext mode."""
    scenario.apply("http/gateway")
    checks.check_gateway_certificate(scenario)


@pytest.mark.gateway_api
def test_openssl_s_client_shows_stand_in_chain(scenario, mode):
    scenario.apply("passthrough/gateway")
    checks.check_openssl_s_client(scenario)
