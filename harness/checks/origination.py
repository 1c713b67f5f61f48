"""Seed §2: TLS origination at the egress gateway (and its negative and mutual variants)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from harness.backend import SLEEP
from harness.checks.hop_checks import (
    Check,
    client_certificate,
    counter_grew,
    counters_unchanged,
    direct_from,
    gateway_originated,
    hop_tls,
    nothing_on,
    reached_gateway,
    statuses,
    upstream_handshake,
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
from harness.trace import GATEWAY_UPSTREAM, Trace

CNN_443 = "outbound|443||edition.cnn.com"
HOST = "edition.cnn.com"  # the DestinationRule's sni and subjectAltNames (fixtures/tls-origination)
GATEWAY_CLIENT_SAN = "istio-egressgateway.istio-system.svc.cluster.local"


def upstream_cluster(sc: Scenario) -> str:
    """The gateway's cluster for the stand-in port the stage routes to (443, or 8443 for mutual TLS)."""
    return f"outbound|{sc.values['upstream_port']}||{HOST}"


def check_before_origination(sc: Scenario) -> None:
    """Only the ServiceEntry (443 declared HTTP): 301, then curl exits 35, as the seed shows; only
    the port-80 request reaches the stand-in, from the sleep pod itself."""
    t = sc.trace(SLEEP, "curl")
    t.run(curl_command(URL))
    t.wait_upstream_requests(1)
    verify(
        t,
        statuses([301], exit_code=35),
        direct_from(SLEEP, "http"),
        nothing_on("https"),
        nothing_on("mtls"),
    )


def check_origination(sc: Scenario, requests: int = 2, listener: str = "https", also: tuple[Check, ...] = ()) -> Trace:
    """200 at once, no redirect: the application spoke HTTP, the gateway opened TLS (SNI
    edition.cnn.com) to the stand-in's `listener` and verified its certificate (CA and SAN)
    itself. The cluster and port are the stage's (443, or 8443 for mutual TLS); `also` are
    further checks of each request."""
    gateway_port = sc.values["gateway_port"]
    cluster = upstream_cluster(sc)
    fail_verify = [(cluster, "ssl.fail_verify_error"), (cluster, "ssl.fail_verify_san")]
    requests_upstream = (cluster, "upstream_rq_total")
    for i in range(requests):
        t = sc.trace(SLEEP, f"curl-{i}", counters=[(cluster, "ssl.handshake"), *fail_verify, requests_upstream])
        t.run(curl_command(URL))
        with sc.step(f"request {i + 1}: the gateway originates TLS"):
            verify(
                t,
                statuses([200]),
                via_gateway(listener, gateway_port),
                upstream_sni(HOST),
                upstream_tls(),
                upstream_header(VIA_HEADER, "istio-egressgateway"),
                nothing_on("http"),
                gateway_originated(cluster, 200),
                counter_grew(requests_upstream, 1),
                counters_unchanged(*fail_verify),
                *also,
            )
    with sc.step("the hop's TLS, and the gateway's own verification of the stand-in"):
        verify(t, hop_tls(sc.mode.hop_tls, lambda e: e.path == "/politics", sni=HOST))
        # The gateway itself checks the stand-in's certificate: its cluster has the CA and SAN.
        check_gateway_validates(sc, t, cluster)
    req = t.from_gateway()[-1]
    gw = t.log(t.gateway)
    sc.evidence.observe(
        status_chain=t.result.describe(),
        sni=req.sni,
        peer=req.peer_address,
        upstream_tls=next((e.get("upstream_tls_version") for e in reversed(gw) if e.path == "/politics"), None),
    )
    return t


def check_gateway_validates(sc: Scenario, t: Trace, name: str = CNN_443) -> None:
    """The gateway's cluster `name` (edition.cnn.com:443 or :8443) itself verifies the stand-in:
    its TLS transport socket sends SNI edition.cnn.com and has a validation context with a
    trusted CA and a SAN matcher for exactly edition.cnn.com (read by path in the cluster's
    config, not by searching the dump's text)."""
    admin = sc.backend.proxy_admin(t.gateway)
    dump = admin.config_dump("dynamic_active_clusters", name_regex=re.escape(name))
    # ?resource=dynamic_active_clusters: each config is one DynamicCluster, {"cluster": {...}}.
    clusters = [c.get("cluster", {}) for c in dump.get("configs") or []]
    cluster = next((c for c in clusters if c.get("name") == name), None)
    if cluster is None:
        t.fail(GATEWAY_UPSTREAM, f"the gateway has no cluster {name}")
    validation = upstream_validation(cluster)
    t.expect(
        validation.sni == HOST,
        GATEWAY_UPSTREAM,
        f"the gateway's {name} cluster sends SNI {validation.sni!r}, not {HOST}",
    )
    t.expect(
        validation.sans == [HOST],
        GATEWAY_UPSTREAM,
        f"the gateway's {name} cluster does not check exactly the stand-in's SAN {HOST} (matchers: {validation.sans})",
    )
    t.expect(validation.ca_source, GATEWAY_UPSTREAM, f"the gateway's {name} cluster has no trusted CA")
    ca_file = (sc.values.get("trust") or {}).get("ca_certificates")
    if ca_file:  # file trust (the local mesh): the CA is the very file the stage configured
        t.expect(
            validation.ca_source in (f"file-root:{ca_file}", "inline"),
            GATEWAY_UPSTREAM,
            f"the gateway's {name} cluster trusts {validation.ca_source}, not {ca_file}",
        )
    sc.evidence.observe(gateway_verifies=f"SNI {validation.sni}, SAN {validation.sans}, CA {validation.ca_source}")


@dataclass(frozen=True)
class UpstreamValidation:
    sans: list[str]  # the exact SAN matchers
    ca_source: str | None  # "inline", an SDS secret name (file-root:PATH, kubernetes://NAME), or None
    sni: str | None = None  # the server name the cluster's TLS sends


def upstream_validation(cluster: dict) -> UpstreamValidation:
    """How a cluster verifies its upstream, read at transport_socket.typed_config
    .common_tls_context: a plain validation_context, or Istio's combined form (a default context
    with the SAN matchers and an SDS secret with the CA)."""
    upstream_tls = (cluster.get("transport_socket") or {}).get("typed_config") or {}
    tls = upstream_tls.get("common_tls_context") or {}
    combined = tls.get("combined_validation_context") or {}
    context = combined.get("default_validation_context") or tls.get("validation_context") or {}
    matchers = [m.get("matcher", m) for m in context.get("match_typed_subject_alt_names", [])]
    matchers += context.get("match_subject_alt_names", [])
    sds = combined.get("validation_context_sds_secret_config") or tls.get("validation_context_sds_secret_config")
    ca_source = sds.get("name") if sds else ("inline" if context.get("trusted_ca") else None)
    return UpstreamValidation([m["exact"] for m in matchers if "exact" in m], ca_source, upstream_tls.get("sni"))


def check_wrong_ca(sc: Scenario) -> None:
    """Origination trusting a CA that did not sign the stand-in: 503 from the gateway, which
    opened TLS with SNI edition.cnn.com and refused the stand-in's certificate; no request at the
    stand-in."""
    cluster = upstream_cluster(sc)
    t = sc.trace(SLEEP, "curl", counters=[(cluster, "ssl.fail_verify_error")])
    t.run(curl_command(URL))
    verify(
        t,
        statuses([503]),
        reached_gateway(sc.values["gateway_port"]),
        upstream_handshake("https", HOST, failed=True),
        nothing_on("https", hop=GATEWAY_UPSTREAM),
    )
    t.expect(
        t.wait_counter_delta((cluster, "ssl.fail_verify_error"), 1) >= 1,
        GATEWAY_UPSTREAM,
        "the gateway did not count a verification failure",
    )
    gw = t.wait_log(t.gateway, 1, where=lambda e: e.path == "/politics")
    t.expect(
        gw and gw[-1].status == 503 and gw[-1].upstream_cluster == cluster,
        GATEWAY_UPSTREAM,
        f"gateway access log: {[e.summary() for e in gw]}",
    )
    sc.evidence.observe(status_chain=t.result.describe(), failure=gw[-1].get("upstream_transport_failure_reason"))


def check_mutual_origination(sc: Scenario) -> None:
    """Everything simple origination asserts, on the stand-in's mutual-TLS port (8443): 200, SNI
    edition.cnn.com from the gateway, which verified the stand-in itself; and on every request
    the stand-in saw the gateway's client certificate."""
    t = check_origination(sc, listener="mtls", also=(client_certificate(GATEWAY_CLIENT_SAN),))
    sc.evidence.observe(client_cert=t.from_gateway()[-1].client_cert_subject)


def check_mutual_origination_without_client_cert(sc: Scenario) -> None:
    """Without the client certificate the stand-in's mutual-TLS port refuses the gateway's
    handshake (SNI edition.cnn.com): 503, no request at the stand-in."""
    t = sc.trace(SLEEP, "curl")
    t.run(curl_command(URL))
    verify(
        t,
        statuses([503]),
        reached_gateway(sc.values["gateway_port"]),
        upstream_handshake("mtls", HOST, failed=True),
        nothing_on("mtls", hop=GATEWAY_UPSTREAM),
    )
    failed = [c for c in t.upstream_connections() if c.listener == "mtls" and c.handshake_error]
    sc.evidence.observe(status_chain=t.result.describe(), handshake_error=failed[0].handshake_error, sni=failed[0].sni)
