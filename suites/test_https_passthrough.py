"""Seed §3: HTTPS the application originates, routed by SNI through the gateway, not terminated."""

from __future__ import annotations

from harness.checks import passthrough as checks


def test_passthrough_by_sni(scenario, mode):
    scenario.apply("passthrough/gateway")
    checks.check_passthrough(scenario)
