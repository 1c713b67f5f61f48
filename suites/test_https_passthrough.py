"""Seed §3: HTTPS the application originates, routed by SNI through the gateway, not terminated, in
the Istio API and (tests marked gateway_api) the Gateway API."""

from __future__ import annotations

import pytest

from harness.checks import passthrough as checks


def test_serviceentry_only_goes_direct(scenario, mode):
    """Step 1: with only the ServiceEntry, HTTPS reaches edition.cnn.com straight from the pod."""
    scenario.apply("passthrough/serviceentry")
    checks.check_direct_https(scenario)


@pytest.mark.gateway_api
def test_passthrough_by_sni(scenario, mode):
    scenario.apply("passthrough/gateway")
    checks.check_passthrough(scenario)
