"""Seed §1: HTTP to edition.cnn.com, direct and through the egress gateway."""

from __future__ import annotations

from harness.backend import GATEWAY, GATEWAY_SPIFFE, SLEEP, sleep_spiffe
from harness.curl_result import curl_command
from harness.manifests import VIA_HEADER
from harness.scenario import Scenario
from harness.stats import seed_name
from harness.trace import APP_UPSTREAM, GATEWAY_UPSTREAM, SIDECAR_GATEWAY, SIDECAR_UPSTREAM

URL = "http://edition.cnn.com/politics"
CNN_80 = ("outbound|80||edition.cnn.com", "upstream_rq_total")


def gateway_cluster(port: int) -> str:
    return f"outbound|{port}|cnn|istio-egressgateway.istio-system.svc.cluster.local"


def check_direct(sc: Scenario) -> None:
    """Only the ServiceEntry: 301 then 200, both requests straight from the sleep pod."""
    t = sc.trace(SLEEP, "curl")
    t.run(curl_command(URL))
    t.expect_statuses([301, 200])
    final = t.result.final_response
    t.expect(final.headers.get("content-type") == "text/html; charset=utf-8", APP_UPSTREAM,
             f"final content-type {final.headers.get('content-type')!r}")
    t.expect(int(final.headers.get("content-length", "0")) > 100_000, APP_UPSTREAM,
             f"final content-length {final.headers.get('content-length')}")
    reqs = t.wait_upstream_requests(2)
    sleep_ip = sc.backend.pod_address(SLEEP)
    by_listener = {r.listener: r for r in reqs}
    t.expect(set(by_listener) == {"http", "https"}, SIDECAR_UPSTREAM,
             f"the stand-in saw {sorted(by_listener)} requests, expected one on http and one on https")
    t.expect(all(r.peer_address == sleep_ip for r in reqs), SIDECAR_UPSTREAM,
             f"requests came from {sorted({r.peer_address for r in reqs})}, expected the sleep pod {sleep_ip}")
    t.expect(not any(r.header(VIA_HEADER) for r in reqs), SIDECAR_UPSTREAM, "a request carries the gateway's header")
    sc.evidence.observe(peer=sleep_ip, sni=by_listener["https"].sni)


def check_through_gateway(sc: Scenario, requests: int = 2) -> None:
    """Port 80 goes sidecar → gateway → stand-in (access log, counter, header, the hop's TLS per
    mode); the redirect to port 443 still goes direct from the pod."""
    gateway_port = 443 if sc.mode == "istio-mutual" else 80
    sleep_ip = sc.backend.pod_address(SLEEP)
    for i in range(requests):
        t = sc.trace(SLEEP, f"curl-{i}", counters=[CNN_80])
        t.run(curl_command(URL))
        t.expect_statuses([301, 200])
        [via_gw] = t.expect_through_gateway(listener="http", count=1, sidecar_cluster_prefix=gateway_cluster(gateway_port))
        t.expect(via_gw.header(VIA_HEADER) == "istio-egressgateway", GATEWAY_UPSTREAM,
                 f"the gateway route's header {VIA_HEADER} did not reach the stand-in: {via_gw.summary()}")
        https = [r for r in t.upstream_requests() if r.listener == "https"]
        t.expect(len(https) == 1 and https[0].peer_address == sleep_ip, SIDECAR_UPSTREAM,
                 f"port 443 should go direct from the sleep pod ({sleep_ip}); saw {[r.summary() for r in https]}")
        delta = t.wait_counter_delta(CNN_80, 1)
        t.expect(delta == 1, GATEWAY_UPSTREAM, f"{seed_name(*CNN_80)} grew by {delta} for one request")

    # The seed's log line: "GET /politics HTTP/1.1" 301 … "edition.cnn.com" on the gateway.
    gw_lines = [e for e in t.log(GATEWAY) if e.path == "/politics"]
    t.expect(gw_lines, SIDECAR_GATEWAY, "no GET /politics line in the gateway's access log")
    line = gw_lines[-1]
    t.expect(line.method == "GET" and line.status == 301 and line.authority == "edition.cnn.com", GATEWAY_UPSTREAM,
             f"gateway access log: {line.summary()}")
    t.expect(line.upstream_cluster == "outbound|80||edition.cnn.com", GATEWAY_UPSTREAM,
             f"gateway sent to {line.upstream_cluster}, expected outbound|80||edition.cnn.com")
    check_hop_tls(sc, t, line)
    sc.evidence.observe(peer_port80=sc.backend.pod_address(GATEWAY), counter_delta=delta,
                        hop_tls=line.get("downstream_tls_version") or "none",
                        gateway_peer=line.get("downstream_peer_uri_san") or "-")


def check_hop_tls(sc: Scenario, t, gateway_line) -> None:
    """istio-mutual: mutual TLS with both SPIFFE identities; plaintext: no TLS on the hop."""
    side = [e for e in t.log(SLEEP) if (e.upstream_cluster or "").startswith("outbound|") and "egressgateway" in (e.upstream_cluster or "")]
    t.expect(side, SIDECAR_GATEWAY, "no sidecar access-log line towards the gateway")
    if sc.mode == "istio-mutual":
        t.expect(side[-1].get("upstream_peer_uri_san") == GATEWAY_SPIFFE, SIDECAR_GATEWAY,
                 f"the gateway presented {side[-1].get('upstream_peer_uri_san')!r}, expected {GATEWAY_SPIFFE}")
        # The cluster backend maps the seed's "default" onto a namespace of its run (backends/kube.py ns()).
        want = sleep_spiffe(sc.backend.ns("default") if hasattr(sc.backend, "ns") else "default")
        t.expect(gateway_line.get("downstream_peer_uri_san") == want, SIDECAR_GATEWAY,
                 f"the gateway saw peer {gateway_line.get('downstream_peer_uri_san')!r}, expected {want}")
        t.expect(gateway_line.get("downstream_local_uri_san") == GATEWAY_SPIFFE, SIDECAR_GATEWAY,
                 f"the gateway's own identity was {gateway_line.get('downstream_local_uri_san')!r}")
    else:
        t.expect(side[-1].get("upstream_tls_version") is None and gateway_line.get("downstream_tls_version") is None,
                 SIDECAR_GATEWAY,
                 f"plaintext mode, but the hop used TLS: sidecar {side[-1].summary()}; gateway {gateway_line.summary()}")


def check_counter_counts_each_request(sc: Scenario, n: int = 4) -> None:
    t = sc.trace(SLEEP, "curl-burst", counters=[CNN_80])
    for _ in range(n):
        res = sc.backend.exec(SLEEP, curl_command(URL, follow=False))
        t.expect(res.exit_code == 0 and " 301" in (res.stdout.splitlines() or [""])[0], SIDECAR_GATEWAY,
                 f"curl: {res.stderr or res.stdout}")
    delta = t.wait_counter_delta(CNN_80, n)
    t.expect(delta == n, GATEWAY_UPSTREAM, f"{seed_name(*CNN_80)} grew by {delta}, expected exactly {n}")
    sc.evidence.observe(counter_delta=delta)
