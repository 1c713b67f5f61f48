"""One expectation of an egress spec, run and checked hop by hop.

The client's command runs in the source pod inside a Trace (harness/trace.py), so the marks, the
evidence and the hop names are the suites'. Each clause of the expectation is a named Check
(harness/checks/hop_checks.py's vocabulary): it finds its own evidence (the source's sidecar log,
the gateway's log, what the stand-in saw since the mark, the counters of the host's clusters) and
blames the hop where the evidence stops matching. Checks run in path order (the status, then the
route, then what the host saw), so the first red one is the first hop that went wrong.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from harness.access_log import AccessLogEntry
from harness.backend import Backend
from harness.checks.hop_checks import Check, verify
from harness.curl_result import curl_command
from harness.evidence import Evidence
from harness.pki import spiffe_id
from harness.pod_table import GATEWAY, GATEWAY_SPIFFE, PODS
from harness.spec.model import Expectation
from harness.spec.preflight import ACCESS_LOG, Gaps, counters_clause
from harness.trace import APP_SIDECAR, APP_UPSTREAM, GATEWAY_UPSTREAM, SIDECAR_GATEWAY, SIDECAR_UPSTREAM, Trace
from harness.upstream_client import ConnectionRecord, RequestRecord
from harness.wait import WaitTimeout, poll

# What a tcp:// expectation sends; the stand-in's tcp listener echoes it back. curl's telnet ends
# only when the connection does, so it runs for TCP_SECONDS and ends with exit 28 whatever came back:
# the echo on its stdout is the answer.
TCP_PROBE = "egress-harness-probe"
TCP_SECONDS = 1.5
GATEWAY_SERVICE = "istio-egressgateway.istio-system.svc.cluster.local"
_REFUSED_EXITS = {
    # curl's exit codes: a reset or a closed connection (REGISTRY_ONLY's TLS/TCP refusal) ...
    "registry-only": {35, 52, 56},
    # ... and a connection that never opens (a NetworkPolicy drops the SYN, or it is refused).
    "network-policy": {7, 28},
}


def client_command(e: Expectation) -> list[str]:
    """curl in the pod: the URL as the spec gives it (http/https), or for tcp:// one line sent
    and the echo read back."""
    if e.target.scheme == "tcp":
        return [
            "sh",
            "-c",
            f"printf '{TCP_PROBE}\\n' | curl -sS --max-time {TCP_SECONDS:g} telnet://{e.target.host}:{e.target.port}",
        ]
    # A NetworkPolicy's refusal is a connection that never opens: 3 s shows it (the SYN is dropped).
    return curl_command(str(e.target), follow=False, max_time=3 if e.refused == "network-policy" else 10)


@dataclass
class Exchange:
    """An expectation's trace and what the checks read beside it: the counters of the host's
    clusters on the proxy that sends it out, before the command."""

    e: Expectation
    t: Trace
    counters_before: dict[str, int] = field(default_factory=dict)

    @property
    def sender(self) -> str:
        """The pod whose proxy sends the exchange to the host."""
        return sender_of(self.e)

    @property
    def last_hop(self) -> str:
        """The hop into the host: the gateway's, or the source's own on a direct exchange."""
        return GATEWAY_UPSTREAM if self.e.via == "gateway" else SIDECAR_UPSTREAM

    def source_has_sidecar(self) -> bool:
        return self.t.backend.has_sidecar(self.e.source)


def run(backend: Backend, evidence: Evidence, e: Expectation, gaps: Gaps | None = None) -> None:
    """Run `e`'s client command and check every clause it states (but those `gaps` says this
    mesh's config cannot show); HopFailure at the first that does not hold."""
    gaps = gaps or Gaps()
    t = Trace(backend, evidence, e.source, "client").begin()
    ex = Exchange(e, t, _counters(sender_of(e), e, backend) if e.counters else {})
    t.run(client_command(e), timeout=30)
    evidence.observe(expectation=e.id, spec_line=str(e.where))
    checks, skipped = checks_for(ex, gaps)
    if skipped:
        evidence.observe(not_verified=skipped)
    verify(t, *checks)


def sender_of(e: Expectation) -> str:
    return GATEWAY if e.via == "gateway" else e.source


def checks_for(ex: Exchange, gaps: Gaps) -> tuple[list[Check], list[str]]:
    """The expectation's checks in path order, and the clauses this mesh's config cannot show."""
    e = ex.e
    logs = gaps.allows(ACCESS_LOG)
    skipped = []
    if e.refused:
        return [refused(ex, logs=logs)], ([] if logs else [f"how it was refused ({e.refused}): no access logs"])
    out = [outcome(ex)]
    if not logs:
        skipped = [k for k in ("via", "hop_mtls", "tls_by") if getattr(e, k) is not None]
        out += _stand_in_checks(ex, gaps)
        return out, skipped + ([] if gaps.allows(counters_clause(e.host.name)) or not e.counters else ["counters"])
    if e.via == "gateway":
        out.append(via_gateway(ex))
    elif e.via == "direct":
        out.append(direct(ex))
    if e.hop_mtls is not None:
        out.append(hop_mtls(ex, e.hop_mtls))
    if e.tls_by:
        out.append(tls_by(ex, e.tls_by))
    out += _stand_in_checks(ex, gaps)
    if e.counters and not gaps.allows(counters_clause(e.host.name)):
        skipped.append("counters")
    return out, skipped


def _stand_in_checks(ex: Exchange, gaps: Gaps) -> list[Check]:
    """What the host saw (its own records, whatever the mesh config), and the counters if kept."""
    e, out = ex.e, []
    if e.sni:
        out.append(sni(ex, e.sni))
    if e.client_certificate is not None:
        out.append(client_certificate(ex, e.client_certificate))
    if e.counters and gaps.allows(counters_clause(e.host.name)):
        out.append(counters_grew(ex))
    return out


# ---------------------------------------------------------------------------------- evidence


def _log(ex: Exchange, pod: str, timeout: float = 5.0) -> list[AccessLogEntry]:
    """The pod's access-log lines about this exchange's host (by :authority or SNI), since the
    mark. By host, not only by the mark: a TCP line is written when its connection closes, so the
    previous exchange's line can arrive after this one's mark."""
    if pod != GATEWAY and not ex.source_has_sidecar():
        return []
    host = ex.e.target.host
    return [x for x in ex.t.wait_log(pod, 1, timeout=timeout, where=lambda x: _about(x, host)) if _about(x, host)]


def _gateway_lines(ex: Exchange, timeout: float = 5.0) -> list[AccessLogEntry]:
    return _log(ex, GATEWAY, timeout)


def _about(line: AccessLogEntry, host: str) -> bool:
    """The line is about `host`: its :authority or SNI names it, or (a TCP line has neither) its
    upstream cluster is the host's own."""
    cluster = (line.upstream_cluster or "").rsplit("|", 1)[-1]
    return (line.authority or "").split(":")[0] == host or line.sni == host or cluster == host


Arrival = ConnectionRecord | RequestRecord


def _arrivals(ex: Exchange, *, wait: bool = True) -> list[Arrival]:
    """What reached the stand-in since the mark: each request (it may ride a connection a proxy
    opened earlier and keeps pooled), and each connection that carried no request of them (TLS,
    TCP, a failed handshake). Both kinds carry the peer, the SNI, TLS and the client certificate.
    Waits (bounded) for one, with settled handshakes, when asked."""

    def seen() -> list[Arrival]:
        requests = ex.t.upstream_requests()
        carried = {r.connection_id for r in requests}
        return [*requests, *(c for c in ex.t.upstream_connections() if c.id not in carried)]

    if not wait:
        return seen()
    try:
        return poll(
            "a request or a settled connection at the stand-in",
            seen,
            ok=lambda xs: bool(xs) and all(getattr(x, "state", "") != "handshaking" for x in xs),
            timeout=5.0,
        )
    except WaitTimeout:
        return seen()


def _from(ex: Exchange, pod: str) -> list[Arrival]:
    address = ex.t.backend.pod_address(pod)
    return [x for x in _arrivals(ex) if x.peer_address == address]


def _source_identity(ex: Exchange) -> str:
    namespace, _, _name = ex.e.source.partition("/")
    # The cluster backend maps the seed's namespaces onto its run's.
    return spiffe_id(ex.t.backend.namespace(namespace), PODS[ex.e.source].service_account)


def _cluster_pattern(e: Expectation) -> str:
    names = {e.host.name, e.target.host}
    hosts = "|".join(re.escape(n) for n in sorted(names))
    return rf"^cluster\.outbound\|\d+\|[^|]*\|({hosts});?\.(upstream_rq_total|upstream_cx_total)$"


def _counters(pod: str, e: Expectation, backend: Backend) -> dict[str, int]:
    if not backend.has_sidecar(pod):
        return {}
    return backend.proxy_admin(pod).stats(_cluster_pattern(e))


# ---------------------------------------------------------------------------------- checks


def _diagnose(ex: Exchange) -> str:
    """The hop of a wrong answer: the trace's diagnosis on the gateway's path; on a direct one,
    the source's own hop to the host (its sidecar's, when it logged the exchange)."""
    if ex.e.via != "direct":
        return ex.t.diagnose()
    if not ex.source_has_sidecar():
        return APP_UPSTREAM
    return SIDECAR_UPSTREAM if _log(ex, ex.e.source, timeout=1.0) else APP_SIDECAR


def outcome(ex: Exchange) -> Check:
    """The client's answer: the status (http/https), or the echo (tcp://)."""
    e = ex.e

    def test(t: Trace) -> str | None:
        r = t.result
        if e.target.scheme == "tcp":
            if r.exit_code in (0, 28) and TCP_PROBE in r.stdout:
                return None
            t.fail(
                _diagnose(ex),
                f"expected the stand-in's echo of {TCP_PROBE!r}, got exit {r.exit_code}: {r.stderr.strip() or r.stdout.strip()!r}",
            )
        want = e.expected_status
        if r.exit_code == 0 and r.final_status == want:
            return None
        t.fail(_diagnose(ex), f"expected status {want}, got {r.describe()}")

    what = "the echo" if e.target.scheme == "tcp" else f"status {e.expected_status}"
    return Check(f"the client gets {what}", "diagnosed", test)


def via_gateway(ex: Exchange) -> Check:
    """source's sidecar → the gateway (any subset or port of its Service) → the host, and the
    stand-in saw it from the gateway, never from the source."""

    def test(t: Trace) -> str | None:
        if ex.source_has_sidecar():
            side = _log(ex, ex.e.source)
            if not side:
                t.fail(APP_SIDECAR, f"{ex.e.source}'s sidecar logged nothing: the traffic was not intercepted")
            if not any(GATEWAY_SERVICE in (x.upstream_cluster or "") for x in side):
                t.fail(
                    SIDECAR_GATEWAY,
                    f"the sidecar sent it to {sorted({str(x.upstream_cluster) for x in side})}, not to the gateway "
                    f"({GATEWAY_SERVICE}): the mesh route does not point at the gateway",
                )
        if not _gateway_lines(ex):
            t.fail(SIDECAR_GATEWAY, f"the gateway logged nothing for {ex.e.target.host}")
        direct = _from(ex, ex.e.source)
        if direct:
            t.fail(
                SIDECAR_UPSTREAM, f"the stand-in saw it straight from {ex.e.source}: {[c.summary() for c in direct]}"
            )
        if not _from(ex, GATEWAY):
            t.fail(
                GATEWAY_UPSTREAM, f"nothing reached the stand-in from the gateway ({t.backend.pod_address(GATEWAY)})"
            )
        return None

    return Check(f"through the gateway {ex.e.gateway}", SIDECAR_GATEWAY, test)


def direct(ex: Exchange) -> Check:
    """The source's own connection reached the host; the gateway saw nothing of it."""
    hop = SIDECAR_UPSTREAM if ex.source_has_sidecar() else APP_UPSTREAM

    def test(t: Trace) -> str | None:
        lines = [x for x in t.log(GATEWAY) if _about(x, ex.e.target.host)]
        if lines:
            t.fail(SIDECAR_GATEWAY, f"the gateway carried it: {[x.summary() for x in lines]}")
        if not _from(ex, ex.e.source):
            t.fail(hop, f"nothing reached the stand-in from {ex.e.source} ({t.backend.pod_address(ex.e.source)})")
        return None

    return Check(f"direct from {ex.e.source}", hop, test)


def hop_mtls(ex: Exchange, wanted: bool) -> Check:
    """The sidecar → gateway hop from both ends' access logs: mutual TLS with both SPIFFE
    identities, or no TLS of the mesh's at all."""

    def test(t: Trace) -> str | None:
        side = [x for x in _log(ex, ex.e.source) if GATEWAY_SERVICE in (x.upstream_cluster or "")]
        gw = _gateway_lines(ex)
        if not side or not gw:
            return f"sidecar lines towards the gateway: {len(side)}, gateway lines: {len(gw)}"
        s, g = side[-1], gw[-1]
        source_id = _source_identity(ex)
        if wanted:
            seen = {
                "the gateway presented": (s.get("upstream_peer_uri_san"), GATEWAY_SPIFFE),
                "the gateway saw the peer": (g.get("downstream_peer_uri_san"), source_id),
            }
            wrong = {k: got for k, (got, want) in seen.items() if got != want}
            return f"{wrong} (expected {GATEWAY_SPIFFE} ↔ {source_id})" if wrong else None
        tls = (s.get("upstream_peer_uri_san"), g.get("downstream_peer_uri_san"))
        return (
            None if tls == (None, None) else f"mesh identities on the hop: sidecar saw {tls[0]}, gateway saw {tls[1]}"
        )

    what = "mutual TLS with SPIFFE identities" if wanted else "no mesh TLS"
    return Check(f"the sidecar → gateway hop has {what}", SIDECAR_GATEWAY, test)


def tls_by(ex: Exchange, who: str) -> Check:
    """Who opened the TLS the host saw: the application (its proxies pass it through as TCP), the
    source's sidecar, or the gateway (its access log shows its own upstream TLS)."""
    hop = GATEWAY_UPSTREAM if who == "gateway" else ex.last_hop

    def test(t: Trace) -> str | None:
        sender = GATEWAY if who == "gateway" else ex.sender
        conns = _from(ex, sender)
        if not conns or not all(c.tls for c in conns):
            return f"the stand-in saw from {sender}: {[c.summary() for c in conns] or 'nothing'} (TLS expected)"
        proxy = GATEWAY if who == "gateway" else ex.e.source
        if who in ("gateway", "sidecar"):
            lines = _gateway_lines(ex) if who == "gateway" else _log(ex, proxy)
            if not any(x.get("upstream_tls_version") for x in lines):
                return f"{proxy} did not open TLS upstream: {[x.summary() for x in lines]}"
        if who == "app" and ex.e.via == "gateway":
            terminated = [x for x in _gateway_lines(ex) if x.get("upstream_tls_version")]
            if terminated:
                return (
                    f"the gateway opened its own TLS upstream, so it terminated the app's: {terminated[-1].summary()}"
                )
        return None

    return Check(f"TLS to the host opened by the {who}", hop, test)


def sni(ex: Exchange, name: str) -> Check:
    def test(t: Trace) -> str | None:
        conns = _from(ex, ex.sender)
        seen = [c.sni for c in conns]
        return (
            None if seen and all(s == name for s in seen) else f"the stand-in saw SNI {seen or None} from {ex.sender}"
        )

    hop = ex.last_hop
    return Check(f"the host saw SNI {name}", hop, test)


def client_certificate(ex: Exchange, wanted: bool) -> Check:
    def test(t: Trace) -> str | None:
        conns = _from(ex, ex.sender)
        subjects = [c.client_cert_subject for c in conns]
        if not conns:
            return "nothing reached the stand-in"
        ok = all(s is not None for s in subjects) if wanted else all(s is None for s in subjects)
        return None if ok else f"client certificate(s) the stand-in saw: {subjects}"

    hop = ex.last_hop
    return Check(f"the host {'saw' if wanted else 'saw no'} client certificate", hop, test)


def counters_grew(ex: Exchange) -> Check:
    """The host's cluster counters (requests or connections) grew on the proxy that sent it out."""
    pod = ex.sender

    def delta() -> int:
        after = _counters(pod, ex.e, ex.t.backend)
        return sum(v - ex.counters_before.get(k, 0) for k, v in after.items())

    def test(t: Trace) -> str | None:
        if not t.backend.has_sidecar(pod):
            return f"{pod} has no proxy to count"
        try:
            grown = poll(f"{pod}'s counters for {ex.e.target.host} to grow", delta, ok=lambda d: d > 0, timeout=5.0)
        except WaitTimeout:
            grown = delta()
        t.evidence.observe(counter_delta=grown)
        return None if grown > 0 else f"no outbound|…|{ex.e.host.name} counter grew on {pod}"

    hop = ex.last_hop
    return Check(f"{pod}'s counters for {ex.e.host.name} grew", hop, test)


def refused(ex: Exchange, *, logs: bool = True) -> Check:
    """The exchange was refused by what the spec says, and nothing reached the host (without
    access logs: only that, and the status)."""
    e = ex.e
    why = e.refused or ""

    def test(t: Trace) -> str | None:
        r = t.result
        reached = _arrivals(ex, wait=False)
        if not logs:
            if reached:
                t.fail(
                    GATEWAY_UPSTREAM if why == "authorization-policy" else SIDECAR_UPSTREAM,
                    f"it reached the host: {[c.summary() for c in reached]}",
                )
            if why == "authorization-policy" and r.final_status != 403:
                t.fail(t.diagnose(), f"expected 403, got {r.describe()}")
            return None
        if why == "authorization-policy":
            gw = _gateway_lines(ex)
            if reached:
                t.fail(GATEWAY_UPSTREAM, f"the gateway let it through to the host: {[c.summary() for c in reached]}")
            if not gw:
                t.fail(
                    SIDECAR_GATEWAY,
                    f"the gateway logged nothing for {e.target.host}: the refusal was not the gateway's",
                )
            line = gw[-1]
            if r.final_status != 403 or line.status != 403 or "rbac" not in (line.get("response_code_details") or ""):
                t.fail(
                    GATEWAY_UPSTREAM, f"expected the gateway's RBAC 403, got {r.describe()}; gateway: {line.summary()}"
                )
            return None
        if reached:
            hop = SIDECAR_UPSTREAM if ex.source_has_sidecar() else APP_UPSTREAM
            t.fail(hop, f"it reached the host: {[c.summary() for c in reached]}")
        if why == "registry-only":
            side = _log(ex, e.source)
            blocked = [
                x
                for x in side
                if x.upstream_cluster in (None, "BlackHoleCluster") or x.get("route_name") == "block_all"
            ]
            if not blocked:
                t.fail(
                    SIDECAR_UPSTREAM, f"the sidecar did not refuse it (REGISTRY_ONLY): {[x.summary() for x in side]}"
                )
            if r.final_status not in (None, 502) or r.final_status is None and r.exit_code not in _REFUSED_EXITS[why]:
                t.fail(SIDECAR_UPSTREAM, f"expected 502 or a reset, got {r.describe()}")
            return None
        # network-policy: the connection never opened, and no proxy carried it.
        if r.exit_code not in _REFUSED_EXITS[why]:
            t.fail(APP_SIDECAR, f"expected a timeout or a refused connection, got {r.describe()}")
        if [x for x in t.log(GATEWAY) if _about(x, e.target.host)]:
            t.fail(SIDECAR_GATEWAY, "the gateway carried it")
        return None

    return Check(f"refused by {why}", SIDECAR_UPSTREAM, test)
