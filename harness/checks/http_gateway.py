"""Seed §1: HTTP to edition.cnn.com, direct and through the egress gateway."""

from __future__ import annotations

from harness.backend import SLEEP
from harness.checks.hop_checks import (
    counter_grew,
    direct_from,
    gateway_cluster,
    hop_tls,
    statuses,
    upstream_header,
    verify,
    via_gateway,
)
from harness.curl_result import curl_command
from harness.manifests import VIA_HEADER
from harness.scenario import Scenario
from harness.trace import APP_UPSTREAM, GATEWAY_UPSTREAM, SIDECAR_GATEWAY, SIDECAR_UPSTREAM

URL = "http://edition.cnn.com/politics"
HOST = "edition.cnn.com"
CNN_80 = ("outbound|80||edition.cnn.com", "upstream_rq_total")

__all__ = [
    "CNN_80",
    "URL",
    "check_counter_counts_each_request",
    "check_direct",
    "check_through_gateway",
    "gateway_cluster",
]


def check_direct(sc: Scenario) -> None:
    """Only the ServiceEntry: 301 then 200, both requests straight from the sleep pod."""
    t = sc.trace(SLEEP, "curl")
    t.run(curl_command(URL))
    t.expect_statuses([301, 200])
    final = t.result.final_response
    if final is None:
        t.fail(APP_UPSTREAM, "no final response")
    headers = final.headers
    t.expect(
        headers.get("content-type") == "text/html; charset=utf-8",
        APP_UPSTREAM,
        f"final content-type {headers.get('content-type')!r}",
    )
    t.expect(
        int(headers.get("content-length", "0")) > 100_000,
        APP_UPSTREAM,
        f"final content-length {headers.get('content-length')}",
    )
    t.wait_upstream_requests(2)
    # The redirect's TLS is curl's own (the sidecar passes it through): its SNI is the URL's host.
    verify(t, direct_from(SLEEP, "http"), direct_from(SLEEP, "https", sni=HOST))
    reqs = t.upstream_requests()
    t.expect(not any(r.header(VIA_HEADER) for r in reqs), SIDECAR_UPSTREAM, "a request carries the gateway's header")
    sc.evidence.observe(peer=sc.backend.pod_address(SLEEP), sni=[r.sni for r in reqs if r.listener == "https"][0])


def check_through_gateway(sc: Scenario, requests: int = 2) -> None:
    """Port 80 goes sidecar → gateway → stand-in (access log, counter, header, the hop's TLS per
    mode); the redirect to port 443 still goes direct from the pod."""
    gateway_port = sc.values["gateway_port"]
    for i in range(requests):
        t = sc.trace(SLEEP, f"curl-{i}", counters=[CNN_80])
        t.run(curl_command(URL))
        with sc.step(f"request {i + 1}: port 80 through the gateway, 443 direct"):
            verify(
                t,
                statuses([301, 200]),
                via_gateway("http", gateway_port),
                upstream_header(VIA_HEADER, "istio-egressgateway"),
                direct_from(SLEEP, "https", sni=HOST),
                counter_grew(CNN_80, 1),
            )

    # The seed's log line: "GET /politics HTTP/1.1" 301 … "edition.cnn.com" on the gateway.
    with sc.step("the gateway's access log and the hop's TLS"):
        gw_lines = [e for e in t.log(t.gateway) if e.path == "/politics"]
        t.expect(gw_lines, SIDECAR_GATEWAY, "no GET /politics line in the gateway's access log")
        line = gw_lines[-1]
        t.expect(
            line.method == "GET" and line.status == 301 and line.authority == "edition.cnn.com",
            GATEWAY_UPSTREAM,
            f"gateway access log: {line.summary()}",
        )
        t.expect(
            line.upstream_cluster == "outbound|80||edition.cnn.com",
            GATEWAY_UPSTREAM,
            f"gateway sent to {line.upstream_cluster}, expected outbound|80||edition.cnn.com",
        )
        verify(t, hop_tls(sc.mode.hop_tls, lambda e: e.path == "/politics", sni=HOST))
        if sc.mode.api == "gateway-api":
            # istio.io's Gateway API tab shows "GET /politics HTTP/1.1" at the deployed gateway:
            # its Service's port is plain `http`, where istio-egressgateway's is `http2`.
            t.expect(
                line.get("protocol") == "HTTP/1.1",
                SIDECAR_GATEWAY,
                f"the deployed gateway logged {line.get('protocol')}, istio.io's task shows HTTP/1.1",
            )
    sc.evidence.observe(
        peer_port80=sc.backend.pod_address(t.gateway),
        gateway=t.gateway,
        gateway_protocol=line.get("protocol") or "-",
        hop_tls=line.get("downstream_tls_version") or "none",
        gateway_peer=line.get("downstream_peer_uri_san") or "-",
    )


def check_counter_counts_each_request(sc: Scenario, n: int = 4) -> None:
    """n requests without following the redirect: each 301, each through the gateway (the
    stand-in saw n port-80 requests from it, with the gateway route's header), and the counter
    grew by exactly n."""
    t = sc.trace(SLEEP, "curl-burst", counters=[CNN_80])
    for _ in range(n):  # Trace.run: the first request may be retried after UH (the marks taken again)
        res = t.run(curl_command(URL, follow=False))
        t.expect(res.ok and res.statuses == [301], SIDECAR_GATEWAY, f"curl: {res.describe()}")
    verify(
        t,
        via_gateway("http", sc.values["gateway_port"], count=n),
        upstream_header(VIA_HEADER, "istio-egressgateway"),
        counter_grew(CNN_80, n),
    )
