"""Seed §2: TLS origination at the egress gateway (and its negative and mutual variants)."""

from __future__ import annotations

from harness.backend import GATEWAY, SLEEP
from harness.checks.http_gateway import URL, check_hop_tls, gateway_cluster
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
    t.expect([r.listener for r in reqs] == ["http"], SIDECAR_UPSTREAM,
             f"the stand-in should see only the port-80 request; saw {[r.summary() for r in reqs]}")
    t.expect(reqs[0].peer_address == sc.backend.pod_address(SLEEP), SIDECAR_UPSTREAM,
             f"port 80 came from {reqs[0].peer_address}, not the sleep pod")


def check_origination(sc: Scenario, requests: int = 2) -> None:
    """200 at once, no redirect: the gateway opened TLS (SNI edition.cnn.com) to the stand-in and
    verified its certificate (CA and SAN) itself."""
    gateway_port = sc.values["gateway_port"]
    handshake = (CNN_443, "ssl.handshake")
    fail_verify = [(CNN_443, "ssl.fail_verify_error"), (CNN_443, "ssl.fail_verify_san")]
    for i in range(requests):
        t = sc.trace(SLEEP, f"curl-{i}", counters=[handshake, *fail_verify, (CNN_443, "upstream_rq_total")])
        t.run(curl_command(URL))
        t.expect_statuses([200])
        [req] = t.expect_through_gateway(listener="https", count=1, sidecar_cluster_prefix=gateway_cluster(gateway_port))
        t.expect(req.sni == "edition.cnn.com", GATEWAY_UPSTREAM, f"the gateway's TLS carried SNI {req.sni!r}")
        t.expect(req.tls_version and req.tls_version.startswith("TLSv1."), GATEWAY_UPSTREAM, f"TLS {req.tls_version}")
        t.expect(req.header(VIA_HEADER) == "istio-egressgateway", GATEWAY_UPSTREAM, f"no {VIA_HEADER} header")
        t.expect(not [r for r in t.upstream_requests() if r.listener == "http"], SIDECAR_UPSTREAM,
                 "a port-80 request reached the stand-in: the gateway did not originate TLS")
        t.expect(t.counter_delta((CNN_443, "upstream_rq_total")) == 1, GATEWAY_UPSTREAM,
                 "the gateway's outbound|443||edition.cnn.com counted no request")
        t.expect(all(t.counter_delta(c) == 0 for c in fail_verify), GATEWAY_UPSTREAM, "certificate verification failed")
    gw = t.wait_log(GATEWAY, 1, where=lambda e: e.path == "/politics")
    t.expect(gw and gw[-1].status == 200 and gw[-1].upstream_cluster == CNN_443, GATEWAY_UPSTREAM,
             f"gateway access log: {[e.summary() for e in gw]}")
    t.expect(gw[-1].get("upstream_tls_version"), GATEWAY_UPSTREAM, "the gateway's upstream hop used no TLS")
    check_hop_tls(sc, t, gw[-1])
    # The gateway itself checks the stand-in's certificate: its cluster has the CA and SAN.
    check_gateway_validates(sc, t)
    sc.evidence.observe(status_chain=t.result.describe(), sni=req.sni, peer=req.peer_address,
                        upstream_tls=gw[-1].get("upstream_tls_version"))


def check_gateway_validates(sc: Scenario, t: Trace) -> None:
    """The gateway's cluster for edition.cnn.com:443 itself verifies the stand-in: its TLS
    transport socket has a validation context with a trusted CA and a SAN matcher for
    edition.cnn.com (read by path in the cluster's config, not by searching the dump's text)."""
    admin = sc.backend.proxy_admin(GATEWAY)
    dump = admin.config_dump("dynamic_active_clusters", name_regex=r"outbound\|443\|\|edition\.cnn\.com")
    clusters = [c.get("cluster", {}) for c in (dump.get("configs") or [{}])[0].get("dynamic_active_clusters", [])]
    cluster = next((c for c in clusters if c.get("name") == CNN_443), None)
    if not cluster:  # an if, not t.expect: mypy narrows cluster
        t.fail(GATEWAY_UPSTREAM, f"the gateway has no cluster {CNN_443}")
    context = upstream_validation_context(cluster)
    sans = [m.get("matcher", m).get("exact") for m in context.get("match_typed_subject_alt_names", [])]
    t.expect("edition.cnn.com" in sans, GATEWAY_UPSTREAM,
             f"the gateway's {CNN_443} cluster does not check the stand-in's SAN (matchers: {sans})")
    t.expect(context.get("trusted_ca"), GATEWAY_UPSTREAM, f"the gateway's {CNN_443} cluster has no trusted CA")


def upstream_validation_context(cluster: dict) -> dict:
    """transport_socket.typed_config.common_tls_context's validation context of a cluster (the
    combined form's default part when Envoy reports it that way); {} when there is none."""
    socket = cluster.get("transport_socket") or {}
    tls = (socket.get("typed_config") or {}).get("common_tls_context") or {}
    if "combined_validation_context" in tls:
        return tls["combined_validation_context"].get("default_validation_context") or {}
    return tls.get("validation_context") or {}


def check_wrong_ca(sc: Scenario) -> None:
    """Origination trusting a CA that did not sign the stand-in: 503, the stand-in saw no request."""
    t = sc.trace(SLEEP, "curl", counters=[(CNN_443, "ssl.fail_verify_error")])
    t.run(curl_command(URL))
    t.expect_statuses([503])
    t.expect(not t.upstream_requests(), GATEWAY_UPSTREAM,
             f"the stand-in served a request despite the wrong CA: {[r.summary() for r in t.upstream_requests()]}")
    t.expect(t.wait_counter_delta((CNN_443, "ssl.fail_verify_error"), 1) >= 1, GATEWAY_UPSTREAM,
             "the gateway did not count a verification failure")
    gw = t.wait_log(GATEWAY, 1, where=lambda e: e.path == "/politics")
    t.expect(gw and gw[-1].status == 503, GATEWAY_UPSTREAM, f"gateway access log: {[e.summary() for e in gw]}")
    sc.evidence.observe(status_chain=t.result.describe(), failure=gw[-1].get("upstream_transport_failure_reason"))


def check_mutual_origination(sc: Scenario) -> None:
    """The gateway presents its client certificate to the stand-in's mutual-TLS port: 200, and the
    stand-in saw that certificate."""
    gateway_port = sc.values["gateway_port"]
    t = sc.trace(SLEEP, "curl")
    t.run(curl_command(URL))
    t.expect_statuses([200])
    [req] = t.expect_through_gateway(listener="mtls", count=1, sidecar_cluster_prefix=gateway_cluster(gateway_port))
    sans = req.client_cert_sans
    t.expect("istio-egressgateway.istio-system.svc.cluster.local" in sans, GATEWAY_UPSTREAM,
             f"the stand-in saw client certificate {req.client_cert_subject!r} with SANs {sans}, not the gateway's")
    sc.evidence.observe(client_cert=req.client_cert_subject, sni=req.sni, peer=req.peer_address)


def check_mutual_origination_without_client_cert(sc: Scenario) -> None:
    """Without the client certificate the stand-in's mutual-TLS port refuses the handshake: 503."""
    t = sc.trace(SLEEP, "curl")
    t.run(curl_command(URL))
    t.expect_statuses([503])
    t.expect(not t.upstream_requests(), GATEWAY_UPSTREAM, "the stand-in served a request without a client certificate")
    failed = [c for c in t.upstream_connections() if c.listener == "mtls" and c.handshake_error]
    t.expect(failed and failed[0].peer_address == sc.backend.pod_address(GATEWAY), GATEWAY_UPSTREAM,
             f"no failed mutual-TLS handshake from the gateway at the stand-in: {[c.summary() for c in t.upstream_connections()]}")
    sc.evidence.observe(status_chain=t.result.describe(), handshake_error=failed[0].handshake_error)

