"""Composable hop checks: small values, each saying what it verifies about one traced exchange and
which hop it blames, run in order by one `verify` (Istio's echo `check.And`/`check.Each` idea).

A seed section's check is then a list: `verify(t, statuses([200]), via_gateway("https", port),
upstream_sni("edition.cnn.com"), counter_grew(CNN_443_RQ, 1))`. The first check that does not
hold raises a HopFailure naming its hop, with every hop's evidence (Trace.fail). Checks that
need the exchange to have reached the stand-in wait for it (bounded polls), never sleep.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from harness.backend import SLEEP, sleep_spiffe
from harness.stats import seed_name
from harness.trace import APP_UPSTREAM, GATEWAY_UPSTREAM, SIDECAR_GATEWAY, SIDECAR_UPSTREAM, Trace
from harness.wait import WaitTimeout, poll


@dataclass(frozen=True)
class Check:
    """What is verified (`name`), the hop blamed when it does not hold, and the test itself:
    a function of the trace returning None when it holds, else what was seen."""

    name: str
    hop: str
    test: Callable[[Trace], str | None]


def verify(t: Trace, *checks: Check) -> None:
    """Run `checks` in order; the first that does not hold fails the exchange at its hop."""
    for check in checks:
        seen = check.test(t)
        if seen is not None:
            t.fail(check.hop, f"{check.name}: {seen}")


def statuses(expected: list[int], *, exit_code: int = 0) -> Check:
    """The client's status chain (and curl's exit code). Its hop is diagnosed from the evidence:
    the first hop that does not show the request."""

    def test(t: Trace) -> str | None:
        t.expect_statuses(expected, exit_code=exit_code)  # names the hop itself
        return None

    return Check(f"statuses {expected}, exit {exit_code}", "diagnosed", test)


def via_gateway(listener: str, gateway_port: int, *, count: int = 1, sidecar_entry=None) -> Check:
    """Each of `count` requests to the stand-in's `listener` went sidecar → gateway (on
    `gateway_port`) → stand-in; checked hop by hop by Trace.expect_through_gateway."""

    def test(t: Trace) -> str | None:
        prefix = t.gateway_cluster(gateway_port)
        kwargs = {"sidecar_entry": sidecar_entry} if sidecar_entry else {}
        t.expect_through_gateway(listener=listener, count=count, sidecar_cluster_prefix=prefix, **kwargs)
        return None

    return Check(f"{count} {listener} request(s) through the gateway", SIDECAR_GATEWAY, test)


def reached_gateway(gateway_port: int, *, path: str = "/politics") -> Check:
    """The request for `path` went sidecar → gateway, whatever came back: the sidecar sent it to
    the gateway's cluster and the gateway logged it (a 503 is then the gateway's, not the
    sidecar's)."""

    def test(t: Trace) -> str | None:
        prefix = t.gateway_cluster(gateway_port)
        side = t.wait_log(t.source, 1, where=lambda e: e.path == path)
        gw = t.wait_log(t.gateway, 1, where=lambda e: e.path == path)
        if side and (side[-1].upstream_cluster or "").startswith(prefix) and gw:
            return None
        return f"sidecar: {[e.summary() for e in side]}; gateway: {[e.summary() for e in gw]}"

    return Check(f"the {path} request went through the gateway", SIDECAR_GATEWAY, test)


def _last_from_gateway(t: Trace):
    requests = t.from_gateway()
    return requests[-1] if requests else None


def upstream_header(name: str, value: str) -> Check:
    """The request the gateway sent carries `name: value` (the gateway route added it)."""

    def test(t: Trace) -> str | None:
        req = _last_from_gateway(t)
        got = req.header(name) if req else None
        return None if got == value else f"{name}={got!r} on {req.summary() if req else 'no request'}"

    return Check(f"the stand-in got header {name}: {value}", GATEWAY_UPSTREAM, test)


def upstream_sni(sni: str) -> Check:
    """Every request the gateway sent (as the stand-in recorded them) came on TLS with SNI `sni`."""

    def test(t: Trace) -> str | None:
        seen = [r.sni for r in t.from_gateway()]
        return None if seen and all(s == sni for s in seen) else f"SNI {seen or None}"

    return Check(f"the gateway's TLS carried SNI {sni}", GATEWAY_UPSTREAM, test)


def upstream_tls() -> Check:
    def test(t: Trace) -> str | None:
        req = _last_from_gateway(t)
        version = req.tls_version if req else None
        return None if version and version.startswith("TLSv1.") else f"TLS version {version!r}"

    return Check("the gateway spoke TLS to the stand-in", GATEWAY_UPSTREAM, test)


def nothing_on(listener: str, *, hop: str = SIDECAR_UPSTREAM) -> Check:
    """No request reached the stand-in's `listener` (e.g. no plain port-80 request when the
    gateway originates TLS)."""

    def test(t: Trace) -> str | None:
        seen = [r.summary() for r in t.upstream_requests() if r.listener == listener]
        return f"saw {seen}" if seen else None

    return Check(f"no {listener} request at the stand-in", hop, test)


def direct_from(pod: str, listener: str, *, sni: str | None = None, hop: str = SIDECAR_UPSTREAM) -> Check:
    """Exactly one request on `listener`, straight from `pod` (not through the gateway); with
    `sni`, on TLS the application itself opened with that server name."""

    def test(t: Trace) -> str | None:
        address = t.backend.pod_address(pod)
        reqs = [r for r in t.upstream_requests() if r.listener == listener]
        if not (len(reqs) == 1 and reqs[0].peer_address == address):
            return f"saw {[r.summary() for r in reqs]}"
        return None if sni is None or reqs[0].sni == sni else f"SNI {reqs[0].sni!r} on {reqs[0].summary()}"

    what = f" with SNI {sni}" if sni else ""
    return Check(f"port {listener} goes direct from {pod}{what}", hop, test)


def gateway_originated(cluster: str, status: int, *, path: str = "/politics") -> Check:
    """The gateway itself opened TLS to the upstream: its access-log line for `path` answered
    `status`, went to `cluster`, and its upstream hop used TLS (a TLS the application opened
    would pass the gateway as TCP, with no HTTP line and no upstream TLS of the gateway's)."""

    def test(t: Trace) -> str | None:
        gw = t.wait_log(t.gateway, 1, where=lambda e: e.path == path)
        if not gw:
            return f"no {path} line in the gateway's access log"
        line = gw[-1]
        if line.status == status and line.upstream_cluster == cluster and line.get("upstream_tls_version"):
            return None
        return f"gateway access log: {line.summary()}"

    return Check(f"the gateway originated TLS on {cluster} ({status})", GATEWAY_UPSTREAM, test)


def upstream_handshake(listener: str, sni: str, *, failed: bool, source: str | None = None) -> Check:
    """The stand-in saw TLS handshake(s) on `listener` from `source`, every one with SNI `sni`,
    and every one failed (`failed`: the gateway refused the stand-in's certificate, or the
    stand-in the gateway's) or none did. Waits (bounded) for the handshakes to settle."""

    def test(t: Trace) -> str | None:
        pod = source or t.gateway
        address = t.backend.pod_address(pod)

        def from_source() -> list:
            return [c for c in t.upstream_connections() if c.listener == listener and c.peer_address == address]

        try:
            conns = poll(
                f"a settled {listener} handshake from {pod} at the stand-in",
                from_source,
                ok=lambda cs: bool(cs) and all(c.state != "handshaking" for c in cs),
                timeout=5.0,
            )
        except WaitTimeout:
            conns = from_source()
        if not conns:
            return f"no {listener} connection from {pod}; the stand-in saw {[c.summary() for c in t.upstream_connections()]}"
        wrong = [c.summary() for c in conns if c.sni != sni or (c.state == "failed") != failed]
        return f"{wrong}" if wrong else None

    what = "failed" if failed else "completed"
    return Check(
        f"{listener} handshake(s) from {source or 'the gateway'} with SNI {sni}, {what}", GATEWAY_UPSTREAM, test
    )


def client_certificate(san: str) -> Check:
    """The stand-in's mutual-TLS listener saw, on every request the gateway sent, a client
    certificate carrying `san`."""

    def test(t: Trace) -> str | None:
        reqs = t.from_gateway()
        wrong = [
            f"{r.client_cert_subject!r} with SANs {list(r.client_cert_sans)}"
            for r in reqs
            if san not in r.client_cert_sans
        ]
        return None if reqs and not wrong else f"client certificate(s) {wrong or 'none'}"

    return Check(f"the gateway presented a client certificate with SAN {san}", GATEWAY_UPSTREAM, test)


def client_saw_certificate(subject: str, issuer: str) -> Check:
    """curl -v saw the upstream's own certificate (subject and issuer contain the given words):
    the application's TLS reached the stand-in, nobody on the way terminated it."""

    def test(t: Trace) -> str | None:
        stderr = t.result.stderr
        got_subject = re.search(r"subject: (.*)", stderr)
        got_issuer = re.search(r"issuer: (.*)", stderr)
        s = got_subject.group(1) if got_subject else None
        i = got_issuer.group(1) if got_issuer else None
        if s and subject in s and i and issuer in i:
            t.evidence.observe(certificate=s)
            return None
        return f"curl saw subject {s!r}, issuer {i!r}: TLS was terminated on the way"

    return Check(f"the client saw the upstream's certificate ({subject}, {issuer})", APP_UPSTREAM, test)


def refused_by_sidecar(*, route: str = "block_all") -> Check:
    """The source's sidecar answered the request itself from `route` (REGISTRY_ONLY's
    `block_all`: a host the mesh does not know), with no upstream cluster."""

    def test(t: Trace) -> str | None:
        side = t.wait_log(t.source, 1)
        if side and side[-1].get("route_name") == route and side[-1].upstream_cluster in (None, "BlackHoleCluster"):
            return None
        return f"sidecar access log: {[e.summary() + ' route=' + str(e.get('route_name')) for e in side]}"

    return Check(f"the sidecar refused the request ({route})", SIDECAR_UPSTREAM, test)


def counter_grew(counter: tuple[str, str], by: int) -> Check:
    """The gateway counter grew by exactly `by` (waits until it has grown by at least that)."""

    def test(t: Trace) -> str | None:
        delta = t.wait_counter_delta(counter, by)
        t.evidence.observe(counter_delta=delta)
        return None if delta == by else f"grew by {delta}"

    return Check(f"{seed_name(*counter)} grows by {by}", GATEWAY_UPSTREAM, test)


def counters_unchanged(*counters: tuple[str, str]) -> Check:
    def test(t: Trace) -> str | None:
        moved = {seed_name(*c): t.counter_delta(c) for c in counters if t.counter_delta(c)}
        return f"moved: {moved}" if moved else None

    return Check(f"{', '.join(seed_name(*c) for c in counters)} unchanged", GATEWAY_UPSTREAM, test)


def hop_tls(
    hop_is_tls: bool, gateway_line_where=lambda e: True, *, source: str = SLEEP, sni: str | None = None
) -> Check:
    """The sidecar → gateway hop, from both ends' access logs: mutual TLS with both SPIFFE
    identities (and, with `sni`, the server name the gateway's filter chain matched) when the
    mode says so, no TLS at all otherwise."""

    def test(t: Trace) -> str | None:
        # Access logs are flushed every 0.1 s: wait (bounded) for the hop's line at both ends.
        side = t.wait_log(source, 1, where=lambda e: t.gateway_route[1] in (e.upstream_cluster or ""))
        gateway = t.wait_log(t.gateway, 1, where=gateway_line_where)
        if not side or not gateway:
            return f"sidecar lines towards the gateway: {len(side)}, gateway lines: {len(gateway)}"
        s, g = side[-1], gateway[-1]
        if hop_is_tls:
            # The cluster backend maps the seed's namespaces onto namespaces of its run.
            source_id = sleep_spiffe(t.backend.namespace(source.split("/", 1)[0]))
            seen = {
                "gateway presented": (s.get("upstream_peer_uri_san"), t.gateway_spiffe),
                "gateway saw peer": (g.get("downstream_peer_uri_san"), source_id),
                "gateway's own identity": (g.get("downstream_local_uri_san"), t.gateway_spiffe),
            }
            if sni is not None:
                seen["gateway saw SNI"] = (g.sni, sni)
            wrong = {k: got for k, (got, want) in seen.items() if got != want}
            return f"{wrong} (expected {t.gateway_spiffe} ↔ {source_id}, SNI {sni})" if wrong else None
        tls = (s.get("upstream_tls_version"), g.get("downstream_tls_version"))
        return None if tls == (None, None) else f"TLS on the hop: sidecar {tls[0]}, gateway {tls[1]}"

    what = "mutual TLS with SPIFFE identities" if hop_is_tls else "no TLS"
    return Check(f"the {source} sidecar → gateway hop has {what}", SIDECAR_GATEWAY, test)


def gateway_cluster(
    port: int, subset: str = "cnn", host: str = "istio-egressgateway.istio-system.svc.cluster.local"
) -> str:
    """The sidecar's cluster for the gateway on `port`: the Istio API's `cnn` subset of
    istio-egressgateway, or (no subset) the Service istiod deployed for a Gateway API Gateway."""
    return f"outbound|{port}|{subset}|{host}"
