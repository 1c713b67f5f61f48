"""The egress paths the benchmark measures: who sends, what to, which manifests, which Envoys.

The manifests are the suites' stages (harness.manifests.STAGES), so the benchmark measures exactly
what the suites assert. Each path has a floor: the same application traffic without Istio
(plain HTTP for the HTTP paths; the app's own TLS for passthrough, whose app speaks TLS), and its
figures are also given as ratios to that floor, measured in the same run.
"""

from __future__ import annotations

from dataclasses import dataclass

from harness.backend import GATEWAY, SLEEP, TEST_EGRESS_SLEEP

NO_SIDECAR_POD = TEST_EGRESS_SLEEP  # the seed's §4 pod: no sidecar until §4 redeploys it
HTTP_URL = "http://edition.cnn.com/"
HTTPS_URL = "https://edition.cnn.com/"


@dataclass(frozen=True)
class EgressPath:
    name: str
    title: str
    client_pod: str
    url: str
    stage: str | None  # harness.manifests stage applied for this path; None: nothing of Istio
    mode: str  # the sidecar → gateway hop's mTLS mode the stage is rendered in
    proxies: tuple[str, ...]  # pods whose Envoy carries this path's traffic, in hop order
    floor: str  # the path without Istio this one is compared with

    @property
    def hops(self) -> str:
        names = {SLEEP: "sidecar", GATEWAY: "gateway"}
        return " → ".join(["app", *(names[p] for p in self.proxies), "upstream"])


PATHS: tuple[EgressPath, ...] = (
    EgressPath(
        "baseline",
        "no sidecar, straight to the upstream (HTTP)",
        NO_SIDECAR_POD,
        HTTP_URL,
        None,
        "plaintext",
        (),
        "baseline",
    ),
    EgressPath(
        "baseline-tls",
        "no sidecar, the app's own TLS straight to the upstream",
        NO_SIDECAR_POD,
        HTTPS_URL,
        None,
        "plaintext",
        (),
        "baseline-tls",
    ),
    EgressPath(
        "sidecar-direct",
        "sidecar, ServiceEntry only (HTTP)",
        SLEEP,
        HTTP_URL,
        "http/serviceentry",
        "plaintext",
        (SLEEP,),
        "baseline",
    ),
    EgressPath(
        "gateway-plaintext",
        "sidecar → gateway plaintext → upstream (HTTP)",
        SLEEP,
        HTTP_URL,
        "http/gateway",
        "plaintext",
        (SLEEP, GATEWAY),
        "baseline",
    ),
    EgressPath(
        "gateway-mtls",
        "sidecar → gateway istio-mutual → upstream (HTTP)",
        SLEEP,
        HTTP_URL,
        "http/gateway",
        "istio-mutual",
        (SLEEP, GATEWAY),
        "baseline",
    ),
    EgressPath(
        "origination",
        "sidecar → gateway istio-mutual → TLS originated at the gateway",
        SLEEP,
        HTTP_URL,
        "origination/simple",
        "istio-mutual",
        (SLEEP, GATEWAY),
        "baseline",
    ),
    EgressPath(
        "passthrough",
        "the app's TLS, sidecar → gateway by SNI (PASSTHROUGH) → upstream",
        SLEEP,
        HTTPS_URL,
        "passthrough/gateway",
        "plaintext",
        (SLEEP, GATEWAY),
        "baseline-tls",
    ),
)
BY_NAME = {p.name: p for p in PATHS}
FLOORS = tuple(p.name for p in PATHS if p.stage is None)
