"""One real Envoy in the loop (issue 2): TLS origination from a plain-HTTP listener to the stand-in
edition.cnn.com (`python -m mock_upstream`), everything on 127.0.0.1 with ephemeral ports.

One Envoy serves three clusters that all point at the stand-in's TLS port, chosen per request by
the header `x-egress-case`:
  (none)     outbound|443||edition.cnn.com           trusts the public CA, SAN edition.cnn.com
  wrong-ca   outbound|443|wrong-ca|edition.cnn.com   trusts a CA that did not sign the stand-in
  wrong-san  outbound|443|wrong-san|edition.cnn.com  trusts the public CA, wants SAN www.example.com
Each cluster has its own stats, so one Envoy shows both the success and the two failures.
"""

from __future__ import annotations

import json
import os
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from harness.envoy_admin import EnvoyAdmin, exact_stat_regex
from harness.pki import Issued, RunPKI
from harness.upstream_client import UpstreamClient, UpstreamPorts, parse_ready_line
from mock_upstream.content import POLITICS_BYTES, POLITICS_MARKER
from tests.helpers.envoy_process import log_tail, running_envoy
from tests.helpers.stand_in import loopback_args

pytestmark = pytest.mark.envoy

REPO = Path(__file__).resolve().parents[1]
LOCALHOST = "127.0.0.1"
HOST = "edition.cnn.com"
N = 5

GOOD = "outbound|443||edition.cnn.com"
WRONG_CA = "outbound|443|wrong-ca|edition.cnn.com"
WRONG_SAN = "outbound|443|wrong-san|edition.cnn.com"
CASE_HEADER = "x-egress-case"
FAIL_VERIFY = ("fail_verify_error", "fail_verify_san", "fail_verify_no_cert", "fail_verify_cert_hash")

HCM_TYPE = "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"
ROUTER_TYPE = "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"
UPSTREAM_TLS_TYPE = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext"


# --- processes ----------------------------------------------------------------------------------


def _stop(proc: subprocess.Popen) -> int:
    """End `proc` by its pid: SIGTERM, then SIGKILL if it lingers; returns its exit code."""
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=5)
    return proc.returncode


@dataclass
class Certs:
    pki: RunPKI
    server: Issued
    other_ca_path: Path


@dataclass
class StandIn:
    proc: subprocess.Popen
    ports: UpstreamPorts
    client: UpstreamClient


@dataclass
class Envoy:
    proc: subprocess.Popen
    admin: EnvoyAdmin
    url: str  # the plain-HTTP listener
    log: Path


@pytest.fixture(scope="module")
def workdir():
    path = Path(tempfile.mkdtemp(prefix="egress-harness-one-envoy-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="module")
def certs(workdir: Path):
    pki = RunPKI(workdir / "pki")
    other = pki.other_public_ca()
    yield Certs(pki=pki, server=pki.public_ca.issue_server("edition-cnn", [HOST]), other_ca_path=other.cert_path)
    pki.cleanup()


@pytest.fixture(scope="module")
def stand_in(certs: Certs, workdir: Path):
    stderr_path = workdir / "mock_upstream.stderr"
    with stderr_path.open("wb") as stderr:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "mock_upstream",
                *loopback_args(certs.server.chain_path, certs.server.key_path, listen=LOCALHOST),
            ],
            cwd=REPO,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=stderr,
        )
    client = None
    try:
        with selectors.DefaultSelector() as sel:
            sel.register(proc.stdout, selectors.EVENT_READ)
            if not sel.select(10):
                pytest.fail(f"mock_upstream printed no ready line in 10s; stderr: {log_tail(stderr_path)}")
        line = proc.stdout.readline()
        if not line:
            pytest.fail(f"mock_upstream exited before its ready line; stderr: {log_tail(stderr_path)}")
        ports = parse_ready_line(line)
        client = UpstreamClient(f"http://{LOCALHOST}:{ports.control}")
        yield StandIn(proc, ports, client)
    finally:
        if client is not None:
            client.close()
        code = _stop(proc)
        proc.stdout.close()
    assert code == 0, f"mock_upstream exited {code} on SIGTERM; stderr: {log_tail(stderr_path)}"


def _tls_cluster(name: str, port: int, trusted_ca: Path, san: str) -> dict:
    endpoint = {"address": {"socket_address": {"address": LOCALHOST, "port_value": port}}}
    tls = {
        "@type": UPSTREAM_TLS_TYPE,
        "sni": HOST,
        "common_tls_context": {
            "validation_context": {
                "trusted_ca": {"filename": str(trusted_ca)},
                "match_typed_subject_alt_names": [{"san_type": "DNS", "matcher": {"exact": san}}],
            }
        },
    }
    return {
        "name": name,
        "type": "STATIC",
        "connect_timeout": "2s",
        "load_assignment": {"cluster_name": name, "endpoints": [{"lb_endpoints": [{"endpoint": endpoint}]}]},
        "transport_socket": {"name": "envoy.transport_sockets.tls", "typed_config": tls},
    }


def _bootstrap(certs: Certs, upstream_port: int) -> dict:
    def by_case(case: str, cluster: str) -> dict:
        header = {"name": CASE_HEADER, "string_match": {"exact": case}}
        return {"match": {"prefix": "/", "headers": [header]}, "route": {"cluster": cluster}}

    routes = [
        by_case("wrong-ca", WRONG_CA),
        by_case("wrong-san", WRONG_SAN),
        {"match": {"prefix": "/"}, "route": {"cluster": GOOD}},
    ]
    hcm = {
        "@type": HCM_TYPE,
        "stat_prefix": "egress_in",
        "route_config": {"name": "local", "virtual_hosts": [{"name": "all", "domains": ["*"], "routes": routes}]},
        "http_filters": [{"name": "envoy.filters.http.router", "typed_config": {"@type": ROUTER_TYPE}}],
    }
    listener = {
        "name": "http_in",
        "address": {"socket_address": {"address": LOCALHOST, "port_value": 0}},
        "filter_chains": [
            {"filters": [{"name": "envoy.filters.network.http_connection_manager", "typed_config": hcm}]}
        ],
    }
    public_ca = certs.pki.public_ca.cert_path
    return {
        "admin": {"address": {"socket_address": {"address": LOCALHOST, "port_value": 0}}},
        "node": {"id": "egress-harness-one-envoy", "cluster": "test"},
        "static_resources": {
            "listeners": [listener],
            "clusters": [
                _tls_cluster(GOOD, upstream_port, public_ca, HOST),
                _tls_cluster(WRONG_CA, upstream_port, certs.other_ca_path, HOST),
                _tls_cluster(WRONG_SAN, upstream_port, public_ca, "www.example.com"),
            ],
        },
    }


@pytest.fixture(scope="module")
def envoy(certs: Certs, stand_in: StandIn, workdir: Path):
    envoy_dir = workdir / "envoy"
    envoy_dir.mkdir()
    bootstrap = envoy_dir / "bootstrap.json"
    bootstrap.write_text(json.dumps(_bootstrap(certs, stand_in.ports.https), indent=2))
    with running_envoy(bootstrap, envoy_dir, log_level="info") as (proc, admin):
        host, port = admin.listener_addresses()["http_in"]
        yield Envoy(proc, admin, f"http://{host}:{port}", envoy_dir / "envoy.log")


@pytest.fixture(scope="module")
def http():
    with httpx.Client(trust_env=False, timeout=10) as client:
        yield client


def _get(http: httpx.Client, envoy: Envoy, case: str | None = None) -> httpx.Response:
    headers = {"host": HOST}
    if case:
        headers[CASE_HEADER] = case
    return http.get(f"{envoy.url}/politics", headers=headers)


def _ssl_stats(admin: EnvoyAdmin, cluster: str) -> dict[str, int]:
    """The cluster's ssl.* counters by short name ("handshake", "fail_verify_san", ...)."""
    prefix = f"cluster.{cluster}.ssl."
    found = admin.stats("^" + exact_stat_regex(prefix)[1:-1])
    return {name[len(prefix) :]: value for name, value in found.items() if name.startswith(prefix)}


# --- the working path ---------------------------------------------------------------------------


def test_requests_are_originated_over_verified_tls(envoy: Envoy, stand_in: StandIn, http: httpx.Client):
    admin = envoy.admin
    handshakes_before = admin.counter(f"cluster.{GOOD}.ssl.handshake")
    cx_before = admin.counter(f"cluster.{GOOD}.upstream_cx_total")
    mark = stand_in.client.mark()

    responses = [_get(http, envoy) for _ in range(N)]

    assert [r.status_code for r in responses] == [200] * N, [r.text[:200] for r in responses]
    for response in responses:
        assert len(response.content) == POLITICS_BYTES and POLITICS_MARKER in response.content

    # The stand-in: exactly N requests, all over TLS with SNI edition.cnn.com, from 127.0.0.1.
    requests = stand_in.client.wait_for_requests(N, since=mark, timeout=5)
    assert len(requests) == N, [r.summary() for r in requests]
    for req in requests:
        assert (req.listener, req.tls, req.sni, req.peer_address) == ("https", True, HOST, LOCALHOST), req.summary()
        assert (req.method, req.path, req.host, req.status) == ("GET", "/politics", HOST, 200), req.summary()

    # Envoy: handshakes on the good cluster, none of them failed verification.
    admin.wait_for_counter(f"cluster.{GOOD}.ssl.handshake", at_least=handshakes_before + 1, timeout=5)
    ssl_stats = _ssl_stats(admin, GOOD)
    assert {f: ssl_stats.get(f, "missing") for f in FAIL_VERIFY} == dict.fromkeys(FAIL_VERIFY, 0), ssl_stats

    # Each connection Envoy opened to the cluster is one the stand-in recorded, and vice versa.
    connections = stand_in.client.wait_for_connections(1, since=mark, timeout=5)
    assert all(c.sni == HOST and c.handshake_error is None for c in connections), [c.summary() for c in connections]
    assert {c.id for c in connections} == {r.connection_id for r in requests}
    cx_grew = admin.counter(f"cluster.{GOOD}.upstream_cx_total") - cx_before
    assert cx_grew == len(connections) >= 1, (cx_grew, [c.summary() for c in connections])
    handshakes = admin.counter(f"cluster.{GOOD}.ssl.handshake") - handshakes_before
    assert handshakes == len(connections), (handshakes, [c.summary() for c in connections])


def test_config_dump_shows_ca_and_san_verification(envoy: Envoy, certs: Certs):
    dump = envoy.admin.config_dump("static_clusters", name_regex=exact_stat_regex(GOOD))
    [entry] = dump["configs"]
    cluster = entry["cluster"]
    assert cluster["name"] == GOOD
    tls = cluster["transport_socket"]["typed_config"]
    assert tls["@type"] == UPSTREAM_TLS_TYPE and tls["sni"] == HOST
    validation = tls["common_tls_context"]["validation_context"]
    assert validation["trusted_ca"] == {"filename": str(certs.pki.public_ca.cert_path)}
    assert validation["match_typed_subject_alt_names"] == [{"san_type": "DNS", "matcher": {"exact": HOST}}]


# --- verification failures ----------------------------------------------------------------------


def _assert_refused(envoy: Envoy, stand_in: StandIn, http: httpx.Client, case: str, cluster: str, stat: str):
    admin = envoy.admin
    fail_before = admin.counter(f"cluster.{cluster}.ssl.{stat}")
    good_before = admin.counter(f"cluster.{GOOD}.upstream_rq_total")
    mark = stand_in.client.mark()

    response = _get(http, envoy, case)

    assert response.status_code == 503, response.text[:300]
    # Envoy 1.39 names no TLS reason in the body; the ssl.fail_verify_* counter below is the proof.
    assert "upstream connect error" in response.text, response.text[:300]
    admin.wait_for_counter(f"cluster.{cluster}.ssl.{stat}", at_least=fail_before + 1, timeout=5)
    # The request went to the case's cluster, not the good one.
    assert admin.counter(f"cluster.{GOOD}.upstream_rq_total") == good_before
    # Envoy reached the stand-in (a handshake is recorded) but no request got through.
    connections = stand_in.client.wait_for_connections(1, since=mark, timeout=5)
    assert all(c.requests == 0 for c in connections), [c.summary() for c in connections]
    assert stand_in.client.requests(since=mark) == []
    return _ssl_stats(admin, cluster)


def test_envoy_trusting_another_ca_gets_503_and_nothing_reaches_the_stand_in(
    envoy: Envoy, stand_in: StandIn, http: httpx.Client
):
    stats = _assert_refused(envoy, stand_in, http, "wrong-ca", WRONG_CA, "fail_verify_error")
    assert stats["fail_verify_error"] >= 1 and stats.get("handshake", 0) == 0, stats


def test_san_mismatch_gets_503_and_nothing_reaches_the_stand_in(envoy: Envoy, stand_in: StandIn, http: httpx.Client):
    stats = _assert_refused(envoy, stand_in, http, "wrong-san", WRONG_SAN, "fail_verify_san")
    # The chain was good (fail_verify_error stays 0): only the SAN check refused it.
    assert stats["fail_verify_san"] >= 1 and stats["fail_verify_error"] == 0, stats
    assert stats.get("handshake", 0) == 0, stats
