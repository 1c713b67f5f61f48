"""Seed §1: HTTP to edition.cnn.com routed sidecar → egress gateway → edition.cnn.com, in the
Istio API and (tests marked gateway_api) the Gateway API. Each test body is its specification: the
traffic it sends and the checks (harness/checks) each exchange must pass, hop by hop."""

from __future__ import annotations

import pytest

from harness.backend import SLEEP
from harness.checks.hop_checks import counter_grew, direct_from, hop_tls, statuses, upstream_header, verify, via_gateway
from harness.checks.http_gateway import CNN_80, HOST, URL
from harness.checks.seen_checks import final_response, gateway_log_line, gateway_logged, no_upstream_header
from harness.curl_result import curl_command
from harness.manifests import VIA_HEADER
from harness.trace import SIDECAR_GATEWAY


def test_serviceentry_only_goes_direct(scenario, mode):
    """Step 2: with only the ServiceEntry, 301 then 200, both requests straight from the pod."""
    scenario.apply("http/serviceentry")
    t = scenario.trace(SLEEP, "curl")
    t.run(curl_command(URL))
    t.wait_upstream_requests(2)
    verify(
        t,
        statuses([301, 200]),
        final_response(content_type="text/html; charset=utf-8", min_length=100_001),
        # The redirect's TLS is curl's own (the sidecar passes it through): its SNI is the URL's host.
        direct_from(SLEEP, "http"),
        direct_from(SLEEP, "https", sni=HOST),
        no_upstream_header(VIA_HEADER),
    )
    https = [r.sni for r in t.upstream_requests() if r.listener == "https"]
    scenario.evidence.observe(peer=scenario.backend.pod_address(SLEEP), sni=https[0])


@pytest.mark.gateway_api
def test_http_through_gateway(scenario, mode):
    """Steps 3–6: port 80 goes through the gateway (access log, counters, header, the hop's TLS
    per mode); port 443 still goes direct."""
    scenario.apply("http/gateway")
    for i in range(2):
        t = scenario.trace(SLEEP, f"curl-{i}", counters=[CNN_80])
        t.run(curl_command(URL))
        with scenario.step(f"request {i + 1}: port 80 through the gateway, 443 direct"):
            verify(
                t,
                statuses([301, 200]),
                via_gateway("http", scenario.values["gateway_port"]),
                upstream_header(VIA_HEADER, "istio-egressgateway"),
                direct_from(SLEEP, "https", sni=HOST),
                counter_grew(CNN_80, 1),
            )
    with scenario.step("the gateway's access log and the hop's TLS"):
        # The seed's log line: "GET /politics HTTP/1.1" 301 … "edition.cnn.com" on the gateway.
        verify(
            t,
            gateway_logged("/politics"),
            gateway_log_line(
                "/politics", method="GET", status=301, authority=HOST, cluster="outbound|80||edition.cnn.com"
            ),
            hop_tls(scenario.mode.hop_tls, lambda e: e.path == "/politics", sni=HOST),
        )
        if scenario.mode.api == "gateway-api":
            # istio.io's Gateway API tab shows "GET /politics HTTP/1.1" at the deployed gateway:
            # its Service's port is plain `http`, where istio-egressgateway's is `http2`.
            verify(
                t,
                gateway_log_line(
                    "/politics",
                    status=301,
                    cluster="outbound|80||edition.cnn.com",
                    protocol="HTTP/1.1",
                    hop=SIDECAR_GATEWAY,
                ),
            )
    line = [e for e in t.log(t.gateway) if e.path == "/politics"][-1]
    scenario.evidence.observe(
        peer_port80=scenario.backend.pod_address(t.gateway),
        gateway=t.gateway,
        gateway_protocol=line.get("protocol") or "-",
        hop_tls=line.get("downstream_tls_version") or "none",
        gateway_peer=line.get("downstream_peer_uri_san") or "-",
    )


@pytest.mark.gateway_api
def test_gateway_counter_counts_each_request(scenario, mode):
    """The gateway's outbound|80||edition.cnn.com counter grows by exactly the requests sent: n
    requests without following the redirect, each 301, each through the gateway (the stand-in saw
    n port-80 requests from it, with the gateway route's header)."""
    scenario.apply("http/gateway")
    n = 4
    t = scenario.trace(SLEEP, "curl-burst", counters=[CNN_80])
    for _ in range(n):  # Trace.run: the first request may be retried after UH (the marks taken again)
        t.run(curl_command(URL, follow=False))
        verify(t, statuses([301]))
    verify(
        t,
        via_gateway("http", scenario.values["gateway_port"], count=n),
        upstream_header(VIA_HEADER, "istio-egressgateway"),
        counter_grew(CNN_80, n),
    )
