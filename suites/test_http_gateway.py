"""Seed §1: HTTP to edition.cnn.com routed sidecar → egress gateway → edition.cnn.com."""

from __future__ import annotations

from harness.backend import GATEWAY, GATEWAY_SPIFFE, SLEEP, sleep_spiffe
from harness.curl_result import curl_command
from harness.manifests import VIA_HEADER
from harness.stats import seed_name
from harness.trace import APP_UPSTREAM, GATEWAY_UPSTREAM, SIDECAR_GATEWAY, SIDECAR_UPSTREAM

URL = "http://edition.cnn.com/politics"
GATEWAY_CLUSTER = "outbound|{port}|cnn|istio-egressgateway.istio-system.svc.cluster.local"
CNN_80 = ("outbound|80||edition.cnn.com", "upstream_rq_total")


def test_serviceentry_only_goes_direct(scenario, mode):
    """Step 2 of the seed: with only the ServiceEntry, 301 then 200, both straight from the pod."""
    scenario.apply("http/serviceentry")
    t = scenario.trace(SLEEP, "curl")
    t.run(curl_command(URL))
    t.expect_statuses([301, 200])
    final = t.result.final_response
    t.expect(final.headers.get("content-type") == "text/html; charset=utf-8", APP_UPSTREAM,
             f"final content-type {final.headers.get('content-type')!r}")
    t.expect(int(final.headers.get("content-length", "0")) > 100_000, APP_UPSTREAM,
             f"final content-length {final.headers.get('content-length')}")
    reqs = t.wait_upstream_requests(2)
    sleep_ip = scenario.backend.pod_address(SLEEP)
    by_listener = {r.listener: r for r in reqs}
    t.expect(set(by_listener) == {"http", "https"}, SIDECAR_UPSTREAM,
             f"the stand-in saw {sorted(by_listener)} requests, expected one on http and one on https")
    t.expect(all(r.peer_address == sleep_ip for r in reqs), SIDECAR_UPSTREAM,
             f"requests came from {sorted({r.peer_address for r in reqs})}, expected the sleep pod {sleep_ip}")
    t.expect(not any(r.header(VIA_HEADER) for r in reqs), SIDECAR_UPSTREAM, "a request carries the gateway's header")
    scenario.evidence.observe(peer=sleep_ip, sni=by_listener["https"].sni)


def test_http_through_gateway(scenario, mode):
    """Steps 3–6: with Gateway, DestinationRule and VirtualService, port 80 goes through the
    gateway (access log, counters, header, mTLS per mode); port 443 still goes direct."""
    scenario.apply("http/gateway")
    gateway_port = 443 if mode == "istio-mutual" else 80
    requests = 3
    for i in range(requests):
        t = scenario.trace(SLEEP, f"curl-{i}", counters=[CNN_80])
        t.run(curl_command(URL))
        t.expect_statuses([301, 200])
        [via_gw] = t.expect_through_gateway(listener="http", count=1,
                                            sidecar_cluster_prefix=GATEWAY_CLUSTER.format(port=gateway_port))
        t.expect(via_gw.header(VIA_HEADER) == "istio-egressgateway", GATEWAY_UPSTREAM,
                 f"the gateway route's header {VIA_HEADER} did not reach the stand-in: {via_gw.summary()}")
        https = [r for r in t.upstream_requests() if r.listener == "https"]
        sleep_ip = scenario.backend.pod_address(SLEEP)
        t.expect(len(https) == 1 and https[0].peer_address == sleep_ip, SIDECAR_UPSTREAM,
                 f"port 443 should go direct from the sleep pod ({sleep_ip}); saw {[r.summary() for r in https]}")

    # The seed's log line: "GET /politics HTTP/1.1" 301 … "edition.cnn.com" on the gateway.
    gw_lines = [e for e in t.log(GATEWAY) if e.path == "/politics"]
    t.expect(gw_lines, SIDECAR_GATEWAY, "no GET /politics line in the gateway's access log")
    line = gw_lines[-1]
    t.expect(line.method == "GET" and line.status == 301 and line.authority == "edition.cnn.com", GATEWAY_UPSTREAM,
             f"gateway access log: {line.summary()}")
    t.expect(line.upstream_cluster == "outbound|80||edition.cnn.com", GATEWAY_UPSTREAM,
             f"gateway sent to {line.upstream_cluster}, expected outbound|80||edition.cnn.com")
    delta = t.counter_delta(CNN_80)
    t.expect(delta == 1, GATEWAY_UPSTREAM, f"{seed_name(*CNN_80)} grew by {delta} for one request")

    # The sidecar → gateway hop, per mode, from both ends' access logs.
    side = [e for e in t.log(SLEEP) if e.path == "/politics" and (e.upstream_cluster or "").startswith("outbound|")]
    t.expect(side, SIDECAR_GATEWAY, "no sidecar access-log line for the request")
    if mode == "istio-mutual":
        t.expect(side[-1].get("upstream_peer_uri_san") == GATEWAY_SPIFFE, SIDECAR_GATEWAY,
                 f"the gateway presented {side[-1].get('upstream_peer_uri_san')!r}, expected {GATEWAY_SPIFFE}")
        t.expect(line.get("downstream_peer_uri_san") == sleep_spiffe(), SIDECAR_GATEWAY,
                 f"the gateway saw peer {line.get('downstream_peer_uri_san')!r}, expected {sleep_spiffe()}")
        t.expect(line.get("downstream_local_uri_san") == GATEWAY_SPIFFE, SIDECAR_GATEWAY,
                 f"the gateway's own identity was {line.get('downstream_local_uri_san')!r}")
    else:
        t.expect(side[-1].get("upstream_tls_version") is None and line.get("downstream_tls_version") is None,
                 SIDECAR_GATEWAY, f"plaintext mode, but the hop used TLS: sidecar {side[-1].summary()}; gateway {line.summary()}")
    scenario.evidence.observe(peer_port80=scenario.backend.pod_address(GATEWAY), counter_delta=delta,
                              hop_tls=line.get("downstream_tls_version") or "none",
                              gateway_peer=line.get("downstream_peer_uri_san") or "-")


def test_gateway_counter_counts_each_request(scenario, mode):
    """The gateway's outbound|80||edition.cnn.com counters grow by exactly the requests sent."""
    scenario.apply("http/gateway")
    n = 4
    t = scenario.trace(SLEEP, "curl-burst", counters=[CNN_80])
    for _ in range(n):
        res = scenario.backend.exec(SLEEP, curl_command(URL, follow=False))
        t.expect(res.exit_code == 0 and "301" in res.stdout.splitlines()[0], SIDECAR_GATEWAY, f"curl: {res.stderr or res.stdout}")
    delta = t.wait_counter_delta(CNN_80, n)
    t.expect(delta == n, GATEWAY_UPSTREAM, f"{seed_name(*CNN_80)} grew by {delta}, expected exactly {n}")
    scenario.evidence.observe(counter_delta=delta)
