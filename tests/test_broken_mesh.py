"""The suites must catch broken meshes: deliberately broken variants of the seed's scenarios, run
through the same checks the suites use, must fail, and name the hop that is broken."""

from __future__ import annotations

import copy

import pytest

from harness.checks import http_gateway, origination, passthrough
from harness.errors import HopFailure
from harness.evidence import Evidence
from harness.scenario import Scenario
from harness.trace import GATEWAY_UPSTREAM, SIDECAR_GATEWAY

pytestmark = pytest.mark.mesh


def _find(objs: list[dict], kind: str) -> dict:
    return next(o for o in objs if o["kind"] == kind)


def mesh_route_bypasses_gateway(sc: Scenario) -> list[dict]:
    """The VirtualService's mesh route sends port 80 straight to edition.cnn.com."""
    objs = copy.deepcopy(sc.render("http/gateway"))
    vs = _find(objs, "VirtualService")
    vs["spec"]["http"][0]["route"][0]["destination"] = {"host": "edition.cnn.com", "port": {"number": 80}}
    return objs


def wrong_sni_to_gateway(sc: Scenario) -> list[dict]:
    """The sidecar's mTLS to the gateway carries SNI wrong.example.com: no gateway filter chain matches."""
    objs = copy.deepcopy(sc.render("passthrough/gateway"))
    dr = _find(objs, "DestinationRule")
    dr["spec"]["subsets"][0]["trafficPolicy"]["portLevelSettings"][0]["tls"]["sni"] = "wrong.example.com"
    return objs


def origination_rule_missing(sc: Scenario) -> list[dict]:
    """The gateway routes to edition.cnn.com:443 but nobody told it to originate TLS."""
    return sc.render("origination/no-origination")


BROKEN = [
    # (name, mode, breakage, check, expected hop, a phrase of the expected message)
    (
        "mesh-route-bypasses-gateway",
        "plaintext",
        mesh_route_bypasses_gateway,
        http_gateway.check_through_gateway,
        SIDECAR_GATEWAY,
        "does not point at the gateway",
    ),
    (
        "mesh-route-bypasses-gateway",
        "istio-mutual",
        mesh_route_bypasses_gateway,
        http_gateway.check_through_gateway,
        SIDECAR_GATEWAY,
        "does not point at the gateway",
    ),
    (
        "wrong-sni",
        "istio-mutual",
        wrong_sni_to_gateway,
        passthrough.check_passthrough,
        SIDECAR_GATEWAY,
        "expected statuses [200]",
    ),
    (
        "origination-rule-missing",
        "plaintext",
        origination_rule_missing,
        origination.check_origination,
        GATEWAY_UPSTREAM,
        "expected statuses [200]",
    ),
    (
        "origination-rule-missing",
        "istio-mutual",
        origination_rule_missing,
        origination.check_origination,
        GATEWAY_UPSTREAM,
        "expected statuses [200]",
    ),
]


@pytest.mark.parametrize("name,mode,breakage,check,hop,phrase", BROKEN, ids=[f"{b[0]}-{b[1]}" for b in BROKEN])
def test_broken_mesh_is_caught_at_the_right_hop(mesh, name, mode, breakage, check, hop, phrase):
    sc = Scenario(mesh, Evidence(), mode)
    try:
        sc.apply_objects(breakage(sc), f"broken/{name}")
        with pytest.raises(HopFailure) as failure:
            check(sc)
        assert failure.value.hop == hop, f"{name} was blamed on {failure.value.hop}: {failure.value}"
        assert phrase in str(failure.value)
    finally:
        sc.delete_all()
