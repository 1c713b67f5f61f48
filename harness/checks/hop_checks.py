"""Composable hop checks: small values, each saying what it verifies about one traced exchange and
which hop it blames, run in order by one `verify` (Istio's echo `check.And`/`check.Each` idea).

A seed section's check is then a list: `verify(t, statuses([200]), via_gateway("https", port),
upstream_sni("edition.cnn.com"), counter_grew(CNN_443_RQ, 1))`. The first check that does not
hold raises a HopFailure naming its hop, with every hop's evidence (Trace.fail). Checks that
need the exchange to have reached the stand-in wait for it (bounded polls), never sleep.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from harness.backend import GATEWAY, GATEWAY_SPIFFE, SLEEP, sleep_spiffe
from harness.stats import seed_name
from harness.trace import GATEWAY_UPSTREAM, SIDECAR_GATEWAY, SIDECAR_UPSTREAM, Trace


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
    prefix = gateway_cluster(gateway_port)

    def test(t: Trace) -> str | None:
        kwargs = {"sidecar_entry": sidecar_entry} if sidecar_entry else {}
        t.via_gateway = t.expect_through_gateway(
            listener=listener, count=count, sidecar_cluster_prefix=prefix, **kwargs
        )
        return None

    return Check(f"{count} {listener} request(s) through the gateway", SIDECAR_GATEWAY, test)


def _last_via_gateway(t: Trace):
    requests = getattr(t, "via_gateway", None)
    return requests[-1] if requests else None


def upstream_header(name: str, value: str) -> Check:
    """The request the gateway sent carries `name: value` (the gateway route added it)."""

    def test(t: Trace) -> str | None:
        req = _last_via_gateway(t)
        got = req.header(name) if req else None
        return None if got == value else f"{name}={got!r} on {req.summary() if req else 'no request'}"

    return Check(f"the stand-in got header {name}: {value}", GATEWAY_UPSTREAM, test)


def upstream_sni(sni: str) -> Check:
    def test(t: Trace) -> str | None:
        req = _last_via_gateway(t)
        return None if req and req.sni == sni else f"SNI {req.sni if req else None!r}"

    return Check(f"the gateway's TLS carried SNI {sni}", GATEWAY_UPSTREAM, test)


def upstream_tls() -> Check:
    def test(t: Trace) -> str | None:
        req = _last_via_gateway(t)
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


def direct_from(pod: str, listener: str) -> Check:
    """Exactly one request on `listener`, straight from `pod` (not through the gateway)."""

    def test(t: Trace) -> str | None:
        address = t.backend.pod_address(pod)
        reqs = [r for r in t.upstream_requests() if r.listener == listener]
        return None if len(reqs) == 1 and reqs[0].peer_address == address else f"saw {[r.summary() for r in reqs]}"

    return Check(f"port {listener} goes direct from {pod}", SIDECAR_UPSTREAM, test)


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


def hop_tls(hop_is_tls: bool, gateway_line_where=lambda e: True) -> Check:
    """The sidecar → gateway hop, from both ends' access logs: mutual TLS with both SPIFFE
    identities when the mode says so, no TLS at all otherwise."""

    def test(t: Trace) -> str | None:
        # Access logs are flushed every 0.1 s: wait (bounded) for the hop's line at both ends.
        side = t.wait_log(SLEEP, 1, where=lambda e: "egressgateway" in (e.upstream_cluster or ""))
        gateway = t.wait_log(GATEWAY, 1, where=gateway_line_where)
        if not side or not gateway:
            return f"sidecar lines towards the gateway: {len(side)}, gateway lines: {len(gateway)}"
        s, g = side[-1], gateway[-1]
        if hop_is_tls:
            # The cluster backend maps the seed's "default" onto a namespace of its run (kube.py ns()).
            mapped = getattr(t.backend, "ns", None)
            sleep_id = sleep_spiffe(mapped("default") if mapped else "default")
            seen = {
                "gateway presented": (s.get("upstream_peer_uri_san"), GATEWAY_SPIFFE),
                "gateway saw peer": (g.get("downstream_peer_uri_san"), sleep_id),
                "gateway's own identity": (g.get("downstream_local_uri_san"), GATEWAY_SPIFFE),
            }
            wrong = {k: got for k, (got, want) in seen.items() if got != want}
            return f"{wrong} (expected {GATEWAY_SPIFFE} ↔ {sleep_id})" if wrong else None
        tls = (s.get("upstream_tls_version"), g.get("downstream_tls_version"))
        return None if tls == (None, None) else f"TLS on the hop: sidecar {tls[0]}, gateway {tls[1]}"

    what = "mutual TLS with SPIFFE identities" if hop_is_tls else "no TLS"
    return Check(f"the sidecar → gateway hop has {what}", SIDECAR_GATEWAY, test)


def gateway_cluster(port: int) -> str:
    """The sidecar's cluster for the gateway's `cnn` subset on `port`."""
    return f"outbound|{port}|cnn|istio-egressgateway.istio-system.svc.cluster.local"
