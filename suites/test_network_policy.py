"""Seed §4: Kubernetes NetworkPolicy blocks what bypasses the egress gateway."""

from __future__ import annotations

import pytest

from harness.checks import network_policy as checks


@pytest.mark.gateway_api
def test_network_policy_forces_traffic_through_gateway(scenario, mode):
    checks.run_seed_section(scenario)
