"""Named checks of what one party saw: the client (its final response, openssl's chain, a blocked
connect), the gateway (its access-log lines, its counters, its certificate) and the stand-in (the
headers it got). Each finds its own evidence from the trace, as hop_checks' do, so a suite's
test body is a list of them (`verify(t, …)`), and the first that does not hold names its hop.
"""

from __future__ import annotations

import re

from harness.checks.hop_checks import Check
from harness.stats import seed_name
from harness.trace import APP_UPSTREAM, GATEWAY_UPSTREAM, SIDECAR_GATEWAY, SIDECAR_UPSTREAM, Trace


# ------------------------------------------------------------------------------ the client
def final_response(*, content_type: str, min_length: int) -> Check:
    """The last response of the client's chain has `content_type` and at least `min_length` bytes
    (the stand-in's page, not an error page of a proxy on the way)."""

    def test(t: Trace) -> str | None:
        final = t.result.final_response
        if final is None:
            return "no final response"
        got_type, got_length = final.headers.get("content-type"), int(final.headers.get("content-length", "0"))
        if got_type == content_type and got_length >= min_length:
            return None
        return f"content-type {got_type!r}, content-length {got_length}"

    return Check(f"the final response is {content_type}, ≥ {min_length} bytes", APP_UPSTREAM, test)


def openssl_connected() -> Check:
    """openssl s_client got a TCP connection and a TLS session through the sidecar and gateway."""

    def test(t: Trace) -> str | None:
        out = t.result.stdout + t.result.stderr
        return None if "CONNECTED" in out else f"openssl did not connect: {t.result.stderr.strip()[-300:]}"

    return Check("openssl s_client connected", SIDECAR_GATEWAY, test)


def openssl_verified_chain(subject_cn: str, issuer: str) -> Check:
    """openssl's chain: certificate 0 is `subject_cn`'s, issued by `issuer`, and openssl verified it."""

    def test(t: Trace) -> str | None:
        out = t.result.stdout + t.result.stderr
        if not re.search(rf"0 s:.*CN ?= ?{re.escape(subject_cn)}", out):
            return f"certificate 0 of the chain is not {subject_cn}'s"
        if not re.search(rf"i:.*{re.escape(issuer)}", out):
            return f"the chain is not issued by {issuer}"
        return None if "Verify return code: 0 (ok)" in out else "openssl could not verify the chain"

    return Check(f"openssl verified the chain of {subject_cn} ({issuer})", APP_UPSTREAM, test)


def blocked_at_connect(*, within: float) -> Check:
    """The client's connect failed (curl exit 7 or 28, no response) within `within` seconds, and
    the stand-in saw no connection: something between the pod and the stand-in dropped it."""

    def test(t: Trace) -> str | None:
        if t.result.exit_code not in (7, 28) or t.result.responses:
            return f"not blocked: {t.result.describe()}"
        if t.elapsed >= within:
            return f"the blocked request took {t.elapsed:.1f}s"
        seen = [c.summary() for c in t.upstream_connections()]
        if seen:
            return f"the stand-in saw a connection: {seen}"
        t.evidence.observe(blocked=f"{t.result.describe()} after {t.elapsed:.1f}s")
        return None

    return Check(f"the connect is blocked (within {within:.0f} s)", APP_UPSTREAM, test)


# ------------------------------------------------------------------------------ the stand-in
def nothing_upstream(*, hop: str = SIDECAR_GATEWAY) -> Check:
    """No request reached the stand-in, on any of its listeners."""

    def test(t: Trace) -> str | None:
        seen = [r.summary() for r in t.upstream_requests()]
        return f"edition.cnn.com is reachable: {seen}" if seen else None

    return Check("no request at the stand-in", hop, test)


def no_upstream_header(name: str) -> Check:
    """No request the stand-in got carries header `name` (the gateway's route adds it: none of
    them passed the gateway)."""

    def test(t: Trace) -> str | None:
        carrying = [r.summary() for r in t.upstream_requests() if r.header(name)]
        return None if not carrying else f"{name} on {carrying}"

    return Check(f"no request at the stand-in carries {name}", SIDECAR_UPSTREAM, test)


# ------------------------------------------------------------------------------ the gateway
def gateway_untouched(*counters: tuple[str, str], hop: str = SIDECAR_UPSTREAM) -> Check:
    """The gateway logged nothing since the trace began and its `counters` did not move."""

    def test(t: Trace) -> str | None:
        lines = [e.summary() for e in t.log(t.gateway)]
        moved = {seed_name(*c): d for c in counters if (d := t.counter_delta(c))}
        return None if not lines and not moved else f"gateway access log {lines}, counters moved {moved}"

    return Check("the gateway saw nothing", hop, test)


def gateway_logged(path: str) -> Check:
    """The gateway has an access-log line for `path` (the request reached it)."""

    def test(t: Trace) -> str | None:
        lines = t.wait_log(t.gateway, 1, where=lambda e: e.path == path)
        return None if lines else f"no {path} line in the gateway's access log"

    return Check(f"the gateway logged {path}", SIDECAR_GATEWAY, test)


def gateway_log_line(
    path: str,
    *,
    cluster: str,
    status: int,
    method: str | None = None,
    authority: str | None = None,
    protocol: str | None = None,
    hop: str = GATEWAY_UPSTREAM,
) -> Check:
    """The gateway's last access-log line for `path` answered `status` from `cluster` (and, when
    given, has this method, authority and downstream protocol): the seed's log line."""
    want = {"status": status, "upstream_cluster": cluster, "method": method, "authority": authority}

    def test(t: Trace) -> str | None:
        lines = t.wait_log(t.gateway, 1, where=lambda e: e.path == path)
        if not lines:
            return f"no {path} line in the gateway's access log"
        line = lines[-1]
        wrong = [k for k, v in want.items() if v is not None and getattr(line, k) != v]
        if protocol is not None and line.get("protocol") != protocol:
            wrong.append(f"protocol {line.get('protocol')}")
        return None if not wrong else f"{line.summary()} (wrong: {', '.join(wrong)})"

    what = " ".join(str(v) for v in (method, path, status, authority, cluster, protocol) if v is not None)
    return Check(f"the gateway's access log shows {what}", hop, test)


def gateway_logged_tcp(*, sni: str, cluster: str) -> Check:
    """The gateway's last TCP access-log line carries `sni` and went to `cluster` (TLS passed
    through by SNI, not terminated)."""

    def test(t: Trace) -> str | None:
        lines = t.wait_log(t.gateway, 1, where=lambda e: e.is_tcp)
        if lines and lines[-1].sni == sni and lines[-1].upstream_cluster == cluster:
            return None
        return f"TCP lines: {[e.summary() for e in lines]}"

    return Check(f"the gateway's TCP access-log line carries SNI {sni} to {cluster}", SIDECAR_GATEWAY, test)


def counter_grew_at_least(counter: tuple[str, str], by: int) -> Check:
    """The gateway counter grew by `by` or more (a failed handshake may be retried, and counted, more than once)."""

    def test(t: Trace) -> str | None:
        delta = t.wait_counter_delta(counter, by)
        return None if delta >= by else f"grew by {delta}"

    return Check(f"{seed_name(*counter)} grows by at least {by}", GATEWAY_UPSTREAM, test)


def gateway_certificate_san() -> Check:
    """The gateway's workload certificate, read from the proxy itself, carries the gateway's SPIFFE
    SAN (istio-egressgateway's, or that of the ServiceAccount istiod made for a Gateway API Gateway)."""

    def test(t: Trace) -> str | None:
        sans = t.backend.proxy_admin(t.gateway).cert_sans()
        t.evidence.add_json("gateway-cert-sans", [s._asdict() if hasattr(s, "_asdict") else repr(s) for s in sans])
        uris = sorted({u for s in sans for u in s.uris})
        return None if t.gateway_spiffe in uris else f"URI SANs {uris}, expected {t.gateway_spiffe}"

    return Check("the gateway's certificate carries its SPIFFE SAN", SIDECAR_GATEWAY, test)
