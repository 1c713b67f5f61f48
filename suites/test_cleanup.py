"""Each scenario's delete returns the mesh to baseline."""

from __future__ import annotations

import pytest

from harness.checks import baseline

STAGES = ["http/gateway", "origination/simple", "passthrough/gateway"]


@pytest.mark.gateway_api
@pytest.mark.parametrize("stage", STAGES)
def test_delete_returns_to_baseline(scenario, mode, stage):
    scenario.apply(stage)
    before = baseline.check_gateway_carries(scenario)
    scenario.delete_all()
    baseline.check_baseline(scenario, before)
