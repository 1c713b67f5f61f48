"""Seed §2: TLS origination at the egress gateway (and its negative and mutual variants)."""

from __future__ import annotations

from dataclasses import dataclass

from harness.backend import GATEWAY, SLEEP
from harness.checks.hop_checks import (
    counter_grew,
    counters_unchanged,
    hop_tls,
    nothing_on,
    statuses,
    upstream_header,
    upstream_sni,
    upstream_tls,
    verify,
    via_gateway,
)
from harness.checks.http_gateway import URL
from harness.curl_result import curl_command
from harness.manifests import VIA_HEADER
from harness.scenario import Scenario
from harness.trace import GATEWAY_UPSTREAM, SIDECAR_UPSTREAM, Trace

CNN_443 = "outbound|443||edition.cnn.com"


def check_before_origination(sc: Scenario) -> None:
    """Only the ServiceEntry (443 declared HTTP): 301, then curl exits 35, as the seed shows."""
    t = sc.trace(SLEEP, "curl")
    t.run(curl_command(URL))
    t.expect_statuses([301], exit_code=35)
    reqs = t.wait_upstream_requests(1)
    t.expect(
        [r.listener for r in reqs] == ["http"],
        SIDECAR_UPSTREAM,
        f"the stand-in should see only the port-80 request; saw {[r.summary() for r in reqs]}",
    )
    t.expect(
        reqs[0].peer_address == sc.backend.pod_address(SLEEP),
        SIDECAR_UPSTREAM,
        f"port 80 came from {reqs[0].peer_address}, not the sleep pod",
    )


def check_origination(sc: Scenario, requests: int = 2) -> None:
    """200 at once, no redirect: the gateway opened TLS (SNI edition.cnn.com) to the stand-in and
    verified its certificate (CA and SAN) itself."""
    gateway_port = sc.values["gateway_port"]
    fail_verify = [(CNN_443, "ssl.fail_verify_error"), (CNN_443, "ssl.fail_verify_san")]
    requests_443 = (CNN_443, "upstream_rq_total")
    for i in range(requests):
        t = sc.trace(SLEEP, f"curl-{i}", counters=[(CNN_443, "ssl.handshake"), *fail_verify, requests_443])
        t.run(curl_command(URL))
        with sc.step(f"request {i + 1}: the gateway originates TLS"):
            verify(
                t,
                statuses([200]),
                via_gateway("https", gateway_port),
                upstream_sni("edition.cnn.com"),
                upstream_tls(),
                upstream_header(VIA_HEADER, "istio-egressgateway"),
                nothing_on("http"),
                counter_grew(requests_443, 1),
                counters_unchanged(*fail_verify),
            )
    with sc.step("the gateway's access log, the hop's TLS, and its own verification of the stand-in"):
        gw = t.wait_log(GATEWAY, 1, where=lambda e: e.path == "/politics")
        t.expect(
            gw and gw[-1].status == 200 and gw[-1].upstream_cluster == CNN_443,
            GATEWAY_UPSTREAM,
            f"gateway access log: {[e.summary() for e in gw]}",
        )
        t.expect(gw[-1].get("upstream_tls_version"), GATEWAY_UPSTREAM, "the gateway's upstream hop used no TLS")
        verify(t, hop_tls(sc.mode.hop_tls, lambda e: e.path == "/politics"))
        # The gateway itself checks the stand-in's certificate: its cluster has the CA and SAN.
        check_gateway_validates(sc, t)
    req = t.via_gateway[-1]
    sc.evidence.observe(
        status_chain=t.result.describe() if t.result else "-",
        sni=req.sni,
        peer=req.peer_address,
        upstream_tls=gw[-1].get("upstream_tls_version"),
    )


def check_gateway_validates(sc: Scenario, t: Trace) -> None:
    """The gateway's cluster for edition.cnn.com:443 itself verifies the stand-in: its TLS
    transport socket has a validation context with a trusted CA and a SAN matcher for
    edition.cnn.com (read by path in the cluster's config, not by searching the dump's text)."""
    admin = sc.backend.proxy_admin(GATEWAY)
    dump = admin.config_dump("dynamic_active_clusters", name_regex=r"outbound\|443\|\|edition\.cnn\.com")
    # ?resource=dynamic_active_clusters: each config is one DynamicCluster, {"cluster": {...}}.
    clusters = [c.get("cluster", {}) for c in dump.get("configs") or []]
    cluster = next((c for c in clusters if c.get("name") == CNN_443), None)
    if cluster is None:
        t.fail(GATEWAY_UPSTREAM, f"the gateway has no cluster {CNN_443}")
    validation = upstream_validation(cluster)
    t.expect(
        "edition.cnn.com" in validation.sans,
        GATEWAY_UPSTREAM,
        f"the gateway's {CNN_443} cluster does not check the stand-in's SAN (matchers: {validation.sans})",
    )
    t.expect(validation.ca_source, GATEWAY_UPSTREAM, f"the gateway's {CNN_443} cluster has no trusted CA")
    ca_file = (sc.values.get("trust") or {}).get("ca_certificates")
    if ca_file:  # file trust (the local mesh): the CA is the very file the stage configured
        t.expect(
            validation.ca_source in (f"file-root:{ca_file}", "inline"),
            GATEWAY_UPSTREAM,
            f"the gateway's {CNN_443} cluster trusts {validation.ca_source}, not {ca_file}",
        )
    sc.evidence.observe(gateway_verifies=f"SAN {validation.sans}, CA {validation.ca_source}")


@dataclass(frozen=True)
class UpstreamValidation:
    sans: list[str]  # the exact SAN matchers
    ca_source: str | None  # "inline", an SDS secret name (file-root:PATH, kubernetes://NAME), or None


def upstream_validation(cluster: dict) -> UpstreamValidation:
    """How a cluster verifies its upstream, read at transport_socket.typed_config
    .common_tls_context: a plain validation_context, or Istio's combined form (a default context
    with the SAN matchers and an SDS secret with the CA)."""
    tls = ((cluster.get("transport_socket") or {}).get("typed_config") or {}).get("common_tls_context") or {}
    combined = tls.get("combined_validation_context") or {}
    context = combined.get("default_validation_context") or tls.get("validation_context") or {}
    matchers = [m.get("matcher", m) for m in context.get("match_typed_subject_alt_names", [])]
    matchers += context.get("match_subject_alt_names", [])
    sds = combined.get("validation_context_sds_secret_config") or tls.get("validation_context_sds_secret_config")
    ca_source = sds.get("name") if sds else ("inline" if context.get("trusted_ca") else None)
    return UpstreamValidation([m["exact"] for m in matchers if "exact" in m], ca_source)


def check_wrong_ca(sc: Scenario) -> None:
    """Origination trusting a CA that did not sign the stand-in: 503, the stand-in saw no request."""
    t = sc.trace(SLEEP, "curl", counters=[(CNN_443, "ssl.fail_verify_error")])
    t.run(curl_command(URL))
    t.expect_statuses([503])
    t.expect(
        not t.upstream_requests(),
        GATEWAY_UPSTREAM,
        f"the stand-in served a request despite the wrong CA: {[r.summary() for r in t.upstream_requests()]}",
    )
    t.expect(
        t.wait_counter_delta((CNN_443, "ssl.fail_verify_error"), 1) >= 1,
        GATEWAY_UPSTREAM,
        "the gateway did not count a verification failure",
    )
    gw = t.wait_log(GATEWAY, 1, where=lambda e: e.path == "/politics")
    t.expect(gw and gw[-1].status == 503, GATEWAY_UPSTREAM, f"gateway access log: {[e.summary() for e in gw]}")
    sc.evidence.observe(status_chain=t.result.describe(), failure=gw[-1].get("upstream_transport_failure_reason"))


def check_mutual_origination(sc: Scenario) -> None:
    """The gateway presents its client certificate to the stand-in's mutual-TLS port: 200, and the
    stand-in saw that certificate."""
    t = sc.trace(SLEEP, "curl")
    t.run(curl_command(URL))
    verify(t, statuses([200]), via_gateway("mtls", sc.values["gateway_port"]))
    req = t.via_gateway[-1]
    sans = req.client_cert_sans
    t.expect(
        "istio-egressgateway.istio-system.svc.cluster.local" in sans,
        GATEWAY_UPSTREAM,
        f"the stand-in saw client certificate {req.client_cert_subject!r} with SANs {sans}, not the gateway's",
    )
    sc.evidence.observe(client_cert=req.client_cert_subject, sni=req.sni, peer=req.peer_address)


def check_mutual_origination_without_client_cert(sc: Scenario) -> None:
    """Without the client certificate the stand-in's mutual-TLS port refuses the handshake: 503."""
    t = sc.trace(SLEEP, "curl")
    t.run(curl_command(URL))
    t.expect_statuses([503])
    t.expect(not t.upstream_requests(), GATEWAY_UPSTREAM, "the stand-in served a request without a client certificate")
    failed = [c for c in t.upstream_connections() if c.listener == "mtls" and c.handshake_error]
    t.expect(
        failed and failed[0].peer_address == sc.backend.pod_address(GATEWAY),
        GATEWAY_UPSTREAM,
        f"no failed mutual-TLS handshake from the gateway at the stand-in: {[c.summary() for c in t.upstream_connections()]}",
    )
    sc.evidence.observe(status_chain=t.result.describe(), handshake_error=failed[0].handshake_error)
