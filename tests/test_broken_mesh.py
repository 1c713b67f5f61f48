"""The suites must catch broken meshes: deliberately broken variants of the seed's scenarios, run
through the suite tests themselves, must fail, and name the hop that is broken. A suite test
applies its stage; the scenario it is given here applies the broken rendering instead (a stage
of its own, edited by `change`), so what is checked is exactly what the suite checks."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pytest

import suites.test_http_gateway as http_suite
import suites.test_https_passthrough as passthrough_suite
import suites.test_tls_origination as origination_suite
from harness.backend import GATEWAY
from harness.errors import HopFailure
from harness.evidence import Evidence
from harness.manifests import GATEWAY_API_MODES, MODES
from harness.scenario import Scenario
from harness.stats import cluster_counter
from harness.trace import GATEWAY_UPSTREAM, SIDECAR_GATEWAY

pytestmark = pytest.mark.mesh

ORIGINATION_DR = "originate-tls-for-edition-cnn-com"
WRONG_SNI = "www.cnn.com"  # a real CNN name, covered by the real site's *.cnn.com but not edition.cnn.com


def _find(objs: list[dict], kind: str, name: str | None = None) -> dict:
    return next(o for o in objs if o["kind"] == kind and name in (None, o["metadata"]["name"]))


def mesh_route_bypasses_gateway(objs: list[dict]) -> None:
    """The VirtualService's mesh route sends port 80 straight to edition.cnn.com."""
    vs = _find(objs, "VirtualService")
    vs["spec"]["http"][0]["route"][0]["destination"] = {"host": "edition.cnn.com", "port": {"number": 80}}


def wrong_sni_to_gateway(objs: list[dict]) -> None:
    """The sidecar's mTLS to the gateway carries SNI wrong.example.com: no gateway filter chain matches."""
    dr = _find(objs, "DestinationRule", "egressgateway-for-cnn")
    dr["spec"]["subsets"][0]["trafficPolicy"]["portLevelSettings"][0]["tls"]["sni"] = "wrong.example.com"


def gateway_api_mesh_route_bypasses_gateway(objs: list[dict]) -> None:
    """The Gateway API's mesh HTTPRoute sends port 80 straight to edition.cnn.com (a Hostname backend)."""
    route = _find(objs, "HTTPRoute", "direct-cnn-to-egress-gateway")
    route["spec"]["rules"][0]["backendRefs"] = [
        {"kind": "Hostname", "group": "networking.istio.io", "name": "edition.cnn.com", "port": 80}
    ]


def gateway_api_wrong_sni_to_gateway(objs: list[dict]) -> None:
    """The sidecar's mTLS to the deployed gateway carries SNI wrong.example.com: its HTTPS
    listener is for edition.cnn.com only."""
    dr = _find(objs, "DestinationRule", "egressgateway-for-cnn")
    dr["spec"]["trafficPolicy"]["portLevelSettings"][0]["tls"]["sni"] = "wrong.example.com"


def gateway_api_no_mtls_on_hop(objs: list[dict]) -> None:
    """The sidecar speaks plain HTTP to the deployed gateway's ISTIO_MUTUAL listener."""
    dr = _find(objs, "DestinationRule", "egressgateway-for-cnn")
    dr["spec"]["trafficPolicy"] = {"tls": {"mode": "DISABLE"}}


def unchanged(objs: list[dict]) -> None:
    """The stage as it is (origination/no-origination: the gateway routes to edition.cnn.com:443
    but nobody told it to originate TLS)."""


def origination_sni(objs: list[dict]) -> None:
    """The origination rule sends SNI www.cnn.com; it still verifies the SAN edition.cnn.com, which
    the stand-in's certificate has: only the SNI the stand-in saw gives it away."""
    _find(objs, "DestinationRule", ORIGINATION_DR)["spec"]["trafficPolicy"]["portLevelSettings"][0]["tls"]["sni"] = (
        WRONG_SNI
    )


def origination_sni_and_san(objs: list[dict]) -> None:
    """The origination rule sends SNI www.cnn.com and verifies that name: the stand-in's certificate
    names edition.cnn.com only, so the gateway refuses it (with *.cnn.com it would have passed)."""
    tls = _find(objs, "DestinationRule", ORIGINATION_DR)["spec"]["trafficPolicy"]["portLevelSettings"][0]["tls"]
    tls["sni"] = WRONG_SNI
    tls["subjectAltNames"] = [WRONG_SNI]


@dataclass(frozen=True)
class Broken:
    name: str
    mode: str
    stage: str  # the stage whose rendering is broken, applied in place of the suite test's (its values too)
    change: Callable[[list[dict]], None]
    suite_test: Callable[[Scenario, str], object]  # the suite's test function, called as pytest would
    hop: str
    phrase: str  # a phrase of the expected message
    grows: tuple[str, str] | None = None  # a gateway counter the failed suite test must have moved

    @property
    def id(self) -> str:
        return f"{self.name}-{self.mode}"


SNI_SEEN = f"carried SNI edition.cnn.com: SNI ['{WRONG_SNI}']"  # upstream_sni's message
HANDSHAKE_SNI = f"sni={WRONG_SNI}"  # upstream_handshake's message names the connection's SNI

BROKEN = [
    *(
        Broken(
            "mesh-route-bypasses-gateway",
            m,
            "http/gateway",
            mesh_route_bypasses_gateway,
            http_suite.test_http_through_gateway,
            SIDECAR_GATEWAY,
            "does not point at the gateway",
        )
        for m in ("plaintext", "istio-mutual")
    ),
    # The same breaks in the Gateway API form of §1 (a Gateway istiod deploys a gateway for).
    *(
        Broken(
            "gateway-api-mesh-route-bypasses-gateway",
            m,
            "http/gateway",
            gateway_api_mesh_route_bypasses_gateway,
            http_suite.test_http_through_gateway,
            SIDECAR_GATEWAY,
            "does not point at the gateway",
        )
        for m in GATEWAY_API_MODES
    ),
    Broken(
        "wrong-sni",
        "gateway-api-istio-mutual",
        "http/gateway",
        gateway_api_wrong_sni_to_gateway,
        http_suite.test_http_through_gateway,
        SIDECAR_GATEWAY,
        "expected statuses [301, 200]",
    ),
    Broken(
        "no-mtls-on-hop",
        "gateway-api-istio-mutual",
        "http/gateway",
        gateway_api_no_mtls_on_hop,
        http_suite.test_http_through_gateway,
        SIDECAR_GATEWAY,
        "expected statuses [301, 200]",
    ),
    Broken(
        "wrong-sni",
        "istio-mutual",
        "passthrough/gateway",
        wrong_sni_to_gateway,
        passthrough_suite.test_passthrough_by_sni,
        SIDECAR_GATEWAY,
        "expected statuses [200]",
    ),
    *(
        Broken(
            "origination-rule-missing",
            m,
            "origination/no-origination",
            unchanged,
            origination_suite.test_gateway_originates_tls,
            GATEWAY_UPSTREAM,
            "expected statuses [200]",
        )
        for m in ("plaintext", "istio-mutual")
    ),
    # A wrong SNI on every origination variant, in both modes: the checks must see it at the
    # gateway → upstream hop, from what the stand-in saw.
    *(
        Broken(f"{variant}-wrong-sni", m, stage, origination_sni, suite_test, GATEWAY_UPSTREAM, phrase)
        for variant, stage, suite_test, phrase in (
            ("origination", "origination/simple", origination_suite.test_gateway_originates_tls, SNI_SEEN),
            ("mutual-origination", "origination/mutual", origination_suite.test_mutual_tls_origination, SNI_SEEN),
            (
                "origination-wrong-ca",
                "origination/wrong-ca",
                origination_suite.test_origination_trusting_wrong_ca_fails,
                HANDSHAKE_SNI,
            ),
            (
                "mutual-origination-without-client-cert",
                "origination/mutual-without-client-cert",
                origination_suite.test_mutual_tls_origination_without_client_cert_fails,
                HANDSHAKE_SNI,
            ),
        )
        for m in MODES
    ),
    # The wrong SNI with SANs to match: the gateway's own verification refuses the stand-in (503,
    # ssl.fail_verify_san), which only the stand-in's narrow certificate makes possible.
    *(
        Broken(
            f"{variant}-wrong-sni-and-san",
            m,
            stage,
            origination_sni_and_san,
            suite_test,
            GATEWAY_UPSTREAM,
            "expected statuses [200] and exit 0, got 503",
            grows=(f"outbound|{port}||edition.cnn.com", "ssl.fail_verify_san"),
        )
        for variant, stage, suite_test, port in (
            ("origination", "origination/simple", origination_suite.test_gateway_originates_tls, 443),
            ("mutual-origination", "origination/mutual", origination_suite.test_mutual_tls_origination, 8443),
        )
        for m in MODES
    ),
]


class BrokenScenario(Scenario):
    """A scenario whose one stage is the broken rendering: the suite test's `apply(stage)` applies
    `broken.stage` edited by `broken.change` (under the label broken/<name>) instead."""

    def __init__(self, backend, broken: Broken):
        super().__init__(backend, Evidence(), broken.mode)
        self.broken = broken
        self.asked: list[str] = []  # the stages the suite test applied

    def apply(self, stage: str, **values: object) -> list[dict]:
        assert not values, f"{self.broken.name}: the suite test applies {stage} with values {values}"
        self.asked.append(stage)
        return self.apply_changed(self.broken.stage, self.broken.change, f"broken/{self.broken.name}")


@pytest.mark.parametrize("broken", BROKEN, ids=[b.id for b in BROKEN])
def test_broken_mesh_is_caught_at_the_right_hop(mesh, broken: Broken):
    sc = BrokenScenario(mesh, broken)
    try:
        admin = mesh.proxy_admin(GATEWAY)
        before = cluster_counter(admin, *broken.grows) if broken.grows else 0
        with pytest.raises(HopFailure) as failure:
            broken.suite_test(sc, broken.mode)
        assert len(sc.asked) == 1, f"the suite test applied {sc.asked}: the break must replace its one stage"
        assert failure.value.hop == broken.hop, f"{broken.name} was blamed on {failure.value.hop}: {failure.value}"
        assert broken.phrase in str(failure.value), str(failure.value)
        if broken.grows:
            grew = cluster_counter(admin, *broken.grows) - before
            assert grew > 0, f"the gateway's {broken.grows} did not grow: the failure was not its verification"
    finally:
        sc.delete_all()
