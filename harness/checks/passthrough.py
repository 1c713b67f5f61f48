"""Seed §3 and §5: HTTPS passthrough by SNI through the egress gateway; troubleshooting checks."""

from __future__ import annotations

import re

from harness.backend import SLEEP
from harness.checks.hop_checks import (
    client_saw_certificate,
    counter_grew,
    direct_from,
    hop_tls,
    statuses,
    upstream_handshake,
    upstream_sni,
    verify,
    via_gateway,
)
from harness.curl_result import curl_command
from harness.errors import HopFailure
from harness.scenario import Scenario
from harness.stats import seed_name
from harness.trace import APP_UPSTREAM, SIDECAR_GATEWAY, SIDECAR_UPSTREAM

HTTPS_URL = "https://edition.cnn.com/politics"
HOST = "edition.cnn.com"
STAND_IN_ISSUER = "Test Public Root CA"
CNN_443_CX = ("outbound|443||edition.cnn.com", "upstream_cx_total")


def _is_cnn_tls(entry) -> bool:
    return entry.sni == "edition.cnn.com" or "edition.cnn.com" in (entry.upstream_cluster or "")


def check_direct_https(sc: Scenario) -> None:
    """Only the ServiceEntry: 200 over the application's own TLS, from the pod itself, the
    gateway untouched."""
    t = sc.trace(SLEEP, "curl", counters=[CNN_443_CX])
    t.run(curl_command(HTTPS_URL, extra=["-v"]))
    t.wait_upstream_requests(1)
    verify(t, statuses([200]), direct_from(SLEEP, "https", sni=HOST), client_saw_certificate(HOST, STAND_IN_ISSUER))
    reqs = t.upstream_requests()
    sleep_ip = sc.backend.pod_address(SLEEP)
    t.expect(
        not t.log(t.gateway) and t.counter_delta(CNN_443_CX) == 0,
        SIDECAR_UPSTREAM,
        "the request passed the gateway although only the ServiceEntry is applied",
    )
    sc.evidence.observe(status_chain=t.result.describe(), peer=sleep_ip, sni=reqs[0].sni)


def check_passthrough(sc: Scenario, requests: int = 3, source: str = SLEEP) -> None:
    """The application's own TLS reaches the stand-in untouched: 200, curl saw the stand-in's
    certificate, the stand-in saw SNI edition.cnn.com from the gateway, and the gateway's
    upstream_cx_total grows by exactly one per request."""
    for i in range(requests):
        t = sc.trace(source, f"curl-{i}", counters=[CNN_443_CX])
        t.run(curl_command(HTTPS_URL, extra=["-v"]))
        with sc.step(f"request {i + 1}: TLS by SNI through the gateway, not terminated"):
            verify(
                t,
                statuses([200]),
                client_saw_certificate(HOST, STAND_IN_ISSUER),
                via_gateway("https", sc.values["gateway_port"], sidecar_entry=_is_cnn_tls),
                upstream_sni(HOST),
                counter_grew(CNN_443_CX, 1),
            )
    with sc.step("the gateway's TCP access-log line carries the SNI"):
        gw = t.wait_log(t.gateway, 1, where=lambda e: e.is_tcp)
        t.expect(
            gw and gw[-1].sni == "edition.cnn.com" and gw[-1].upstream_cluster == "outbound|443||edition.cnn.com",
            SIDECAR_GATEWAY,
            f"no TCP line with SNI edition.cnn.com in the gateway's access log: {[e.summary() for e in gw]}",
        )
        verify(t, hop_tls(sc.mode.hop_tls, lambda e: e.is_tcp, source=source, sni=HOST))
    req = t.from_gateway()[-1]
    sc.evidence.observe(
        status_chain=t.result.describe() if t.result else "-",
        sni=req.sni,
        peer=req.peer_address,
        counter=f"{seed_name(*CNN_443_CX)} +1 per request",
    )


def check_openssl_s_client(sc: Scenario) -> None:
    """The seed's troubleshooting step: openssl s_client from the pod shows the stand-in's chain."""
    t = sc.trace(SLEEP, "openssl", counters=[CNN_443_CX])
    # Through Trace.run (not its curl parsing, only its client evidence and its retry after the
    # sidecar's UH toward a just-deployed gateway).
    res = t.run(
        ["openssl", "s_client", "-connect", "edition.cnn.com:443", "-servername", "edition.cnn.com", "-showcerts"],
        timeout=15,
    )
    out = res.stdout + res.stderr
    t.expect("CONNECTED" in out, SIDECAR_GATEWAY, f"openssl did not connect: {res.stderr.strip()[-300:]}")
    t.expect(
        re.search(r"0 s:.*CN ?= ?edition\.cnn\.com", out),
        APP_UPSTREAM,
        "certificate 0 of the chain is not the stand-in's edition.cnn.com",
    )
    t.expect(re.search(r"i:.*Test Public Root CA", out), APP_UPSTREAM, "the chain is not issued by the stand-in's CA")
    t.expect("Verify return code: 0 (ok)" in out, APP_UPSTREAM, "openssl could not verify the chain")
    # openssl's TLS went through the gateway untouched: the stand-in completed a handshake from
    # the gateway with openssl's SNI, and the gateway counted the connection once.
    verify(t, upstream_handshake("https", HOST, failed=False), counter_grew(CNN_443_CX, 1))
    sc.evidence.observe(openssl="chain: CN=edition.cnn.com issued by Test Public Root CA", sni=HOST)


def check_gateway_certificate(sc: Scenario) -> None:
    """The gateway's workload certificate, read from the proxy itself, carries its SPIFFE SAN; an
    HTTP request through the gateway shows whether the hop presented it (the mode decides)."""
    from harness.checks.http_gateway import URL

    t = sc.trace(SLEEP, "curl")
    with sc.step("the gateway's certificate carries its SPIFFE SAN"):
        # The gateway of the mode: istio-egressgateway's SAN (Istio API), or the one of the
        # ServiceAccount istiod made for the Gateway API Gateway (…/sa/cnn-egress-gateway-istio).
        sans = sc.backend.proxy_admin(t.gateway).cert_sans()
        uris = sorted({u for s in sans for u in s.uris})
        sc.evidence.add_json("gateway-cert-sans", [s._asdict() if hasattr(s, "_asdict") else repr(s) for s in sans])
        if t.gateway_spiffe not in uris:
            raise HopFailure(
                SIDECAR_GATEWAY, f"the gateway's certificates carry URI SANs {uris}, expected {t.gateway_spiffe}"
            )
    with sc.step("the hop presents it only in istio-mutual mode"):
        t.run(curl_command(URL, follow=False))
        verify(t, statuses([301]), hop_tls(sc.mode.hop_tls, lambda e: e.path == "/politics"))
    sc.evidence.observe(gateway_san=t.gateway_spiffe, presented_on_hop=sc.mode.hop_tls)
