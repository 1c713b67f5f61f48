"""Seed §2: the application speaks HTTP, the egress gateway originates TLS to edition.cnn.com, in the
Istio API and (tests marked gateway_api) the Gateway API. Each test body is its specification: the
traffic it sends and the checks (harness/checks) each exchange must pass, hop by hop."""

from __future__ import annotations

import pytest

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
from harness.checks.origination import GATEWAY_CLIENT_SAN, HOST, gateway_verifies_upstream, upstream_cluster
from harness.checks.seen_checks import counter_grew_at_least, gateway_log_line
from harness.curl_result import curl_command
from harness.manifests import VIA_HEADER
from harness.scenario import Scenario
from harness.trace import GATEWAY_UPSTREAM, Trace


def test_before_origination_301_then_exit_35(scenario, mode):
    """Only the ServiceEntry (443 declared HTTP): 301, then curl exits 35, as the seed shows; only
    the port-80 request reaches the stand-in, from the sleep pod itself."""
    scenario.apply("origination/serviceentry")
    t = scenario.trace(SLEEP, "curl")
    t.run(curl_command(URL))
    t.wait_upstream_requests(1)
    verify(t, statuses([301], exit_code=35), direct_from(SLEEP, "http"), nothing_on("https"), nothing_on("mtls"))


def originates(scenario: Scenario, *, listener: str, also: tuple[Check, ...] = ()) -> Trace:
    """Two requests, each 200 at once with no redirect: the application spoke HTTP, the gateway
    opened TLS (SNI edition.cnn.com) to the stand-in's `listener` and verified its certificate
    (CA and SAN) itself; `also`: further checks of each request. The cluster and port are the
    stage's (443, or 8443 for mutual TLS)."""
    cluster = upstream_cluster(scenario.values["upstream_port"])
    fail_verify = [(cluster, "ssl.fail_verify_error"), (cluster, "ssl.fail_verify_san")]
    requests_upstream = (cluster, "upstream_rq_total")
    for i in range(2):
        t = scenario.trace(SLEEP, f"curl-{i}", counters=[(cluster, "ssl.handshake"), *fail_verify, requests_upstream])
        t.run(curl_command(URL))
        with scenario.step(f"request {i + 1}: the gateway originates TLS"):
            verify(
                t,
                statuses([200]),
                via_gateway(listener, scenario.values["gateway_port"]),
                upstream_sni(HOST),
                upstream_tls(),
                upstream_header(VIA_HEADER, "istio-egressgateway"),
                nothing_on("http"),
                gateway_originated(cluster, 200),
                counter_grew(requests_upstream, 1),
                counters_unchanged(*fail_verify),
                *also,
            )
    with scenario.step("the hop's TLS, and the gateway's own verification of the stand-in"):
        ca_file = (scenario.values.get("trust") or {}).get("ca_certificates")
        verify(
            t,
            hop_tls(scenario.mode.hop_tls, lambda e: e.path == "/politics", sni=HOST),
            gateway_verifies_upstream(cluster, ca_file=ca_file),
        )
    req = t.from_gateway()[-1]
    scenario.evidence.observe(
        status_chain=t.result.describe(),
        sni=req.sni,
        peer=req.peer_address,
        upstream_tls=next(
            (e.get("upstream_tls_version") for e in reversed(t.log(t.gateway)) if e.path == "/politics"), None
        ),
    )
    return t


@pytest.mark.gateway_api
def test_gateway_originates_tls(scenario, mode):
    scenario.apply("origination/simple")
    originates(scenario, listener="https")


@pytest.mark.gateway_api
def test_origination_trusting_wrong_ca_fails(scenario, mode):
    """Origination trusting a CA that did not sign the stand-in: 503 from the gateway, which
    opened TLS with SNI edition.cnn.com and refused the stand-in's certificate; no request at the
    stand-in."""
    scenario.apply("origination/wrong-ca")
    cluster = upstream_cluster(scenario.values["upstream_port"])
    t = scenario.trace(SLEEP, "curl", counters=[(cluster, "ssl.fail_verify_error")])
    t.run(curl_command(URL))
    verify(
        t,
        statuses([503]),
        reached_gateway(scenario.values["gateway_port"]),
        upstream_handshake("https", HOST, failed=True),
        nothing_on("https", hop=GATEWAY_UPSTREAM),
        counter_grew_at_least((cluster, "ssl.fail_verify_error"), 1),
        gateway_log_line("/politics", status=503, cluster=cluster),
    )
    gw = [e for e in t.log(t.gateway) if e.path == "/politics"]
    scenario.evidence.observe(status_chain=t.result.describe(), failure=gw[-1].get("upstream_transport_failure_reason"))


@pytest.mark.gateway_api
def test_mutual_tls_origination(scenario, mode):
    """Everything simple origination asserts, on the stand-in's mutual-TLS port (8443), and on
    every request the stand-in saw the gateway's client certificate."""
    scenario.apply("origination/mutual")
    t = originates(scenario, listener="mtls", also=(client_certificate(GATEWAY_CLIENT_SAN),))
    scenario.evidence.observe(client_cert=t.from_gateway()[-1].client_cert_subject)


@pytest.mark.gateway_api
def test_mutual_tls_origination_without_client_cert_fails(scenario, mode):
    """Without the client certificate the stand-in's mutual-TLS port refuses the gateway's
    handshake (SNI edition.cnn.com): 503, no request at the stand-in."""
    scenario.apply("origination/mutual-without-client-cert")
    t = scenario.trace(SLEEP, "curl")
    t.run(curl_command(URL))
    verify(
        t,
        statuses([503]),
        reached_gateway(scenario.values["gateway_port"]),
        upstream_handshake("mtls", HOST, failed=True),
        nothing_on("mtls", hop=GATEWAY_UPSTREAM),
    )
    failed = [c for c in t.upstream_connections() if c.listener == "mtls" and c.handshake_error]
    scenario.evidence.observe(
        status_chain=t.result.describe(), handshake_error=failed[0].handshake_error, sni=failed[0].sni
    )
