"""The stand-in edition.cnn.com, run for real: a `python -m mock_upstream` process on 127.0.0.1 with
ephemeral ports and certificates from the harness PKI, spoken to over real TCP and TLS."""

from __future__ import annotations

import http.client
import json
import os
import selectors
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from harness.errors import HarnessError
from harness.pki import Issued, RunPKI, spiffe_id
from harness.upstream_client import ConnectionRecord, UpstreamClient, UpstreamPorts, parse_ready_line
from harness.wait import WaitTimeout, poll
from mock_upstream.content import POLITICS_BYTES, POLITICS_MARKER, politics_page
from mock_upstream.jsonout import dumps
from tests.helpers.stand_in import loopback_args

REPO = Path(__file__).resolve().parents[1]
HOST = "edition.cnn.com"
CLIENT_URI = spiffe_id("istio-system", "istio-egressgateway-service-account")
CLIENT_DNS = "egressgateway.istio-system.svc.cluster.local"
# Declared sites: --site-cert names (an exact one, a wildcard, and an exact one the wildcard would
# also cover) and a host that only ever arrives as a Host header.
API = "api.example.net"
APPS = "*.apps.example.net"
EXACT_APP = "exact.apps.example.net"
TEAM = "team.example.org"


@dataclass
class Certs:
    pki: RunPKI
    server: Issued
    client: Issued
    untrusted_client: Issued
    untrusted_ca_path: Path
    sites: dict[str, Issued]  # by --site-cert NAME


@dataclass
class Upstream:
    proc: subprocess.Popen
    ports: UpstreamPorts
    client: UpstreamClient
    stderr_path: Path
    ready: dict  # the whole ready line, with what UpstreamPorts leaves out ("extra")


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    pki = RunPKI(tmp_path_factory.mktemp("pki") / "run")
    untrusted = pki.other_public_ca()
    certs = Certs(
        pki=pki,
        server=pki.public_ca.issue_server("edition-cnn", [HOST]),
        client=pki.public_ca.issue_client("egress-client", "egress-gateway", [CLIENT_DNS], [CLIENT_URI]),
        untrusted_client=untrusted.issue_client("stranger", "stranger", [], []),
        untrusted_ca_path=untrusted.cert_path,
        sites={
            API: pki.public_ca.issue_server("api-site", [API]),
            APPS: pki.public_ca.issue_server("apps-wildcard", [APPS]),
            EXACT_APP: pki.public_ca.issue_server("exact-app", [EXACT_APP]),
        },
    )
    yield certs
    pki.cleanup()


def server_args(certs: Certs, *extra: str) -> list[str]:
    return loopback_args(certs.server.chain_path, certs.server.key_path, *extra)


def site_cert_args(certs: Certs) -> list[str]:
    args = []
    for name, issued in certs.sites.items():
        args += ["--site-cert", f"{name}={issued.chain_path},{issued.key_path}"]
    return args


MODULE = ("-m", "mock_upstream")


def spawn(args: list[str], stderr_path: Path, python_args: tuple[str, ...] = MODULE) -> subprocess.Popen:
    with open(stderr_path, "wb") as stderr:
        return subprocess.Popen(
            [sys.executable, *python_args, *args],
            cwd=REPO,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=stderr,
        )


def read_ready(proc: subprocess.Popen, stderr_path: Path, timeout: float = 10.0) -> tuple[UpstreamPorts, dict]:
    """The ready line (parsed, and as JSON), or a failure that shows what the server said on stderr."""
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ)
        if not sel.select(timeout):
            stop(proc)
            pytest.fail(f"mock_upstream printed no ready line in {timeout}s; stderr: {stderr_path.read_text()!r}")
    line = proc.stdout.readline()
    if not line:
        proc.wait(5)
        pytest.fail(f"mock_upstream exited {proc.returncode} before ready; stderr: {stderr_path.read_text()!r}")
    return parse_ready_line(line), json.loads(line)


def stop(proc: subprocess.Popen, sig: int = signal.SIGTERM) -> int:
    if proc.poll() is None:
        os.kill(proc.pid, sig)
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(5)
    if proc.stdout:
        proc.stdout.close()
    return proc.returncode


def start(certs: Certs, tmp: Path, *extra: str, python_args: tuple[str, ...] = MODULE) -> Upstream:
    stderr_path = tmp / "mock_upstream.stderr"
    proc = spawn(server_args(certs, *extra), stderr_path, python_args)
    ports, ready = read_ready(proc, stderr_path)
    client = UpstreamClient(f"http://127.0.0.1:{ports.control}")
    return Upstream(proc, ports, client, stderr_path, ready)


def serving(certs: Certs, directory: Path, *extra: str):
    """A stand-in with an mtls port (and `extra` arguments) while the caller's fixture lasts;
    it must exit 0 when stopped."""
    running = start(certs, directory, "--mtls-port", "0", "--client-ca", str(certs.pki.public_ca.cert_path), *extra)
    yield running
    running.client.close()
    assert stop(running.proc) == 0, running.stderr_path.read_text()


@pytest.fixture(scope="module")
def upstream(certs: Certs, tmp_path_factory: pytest.TempPathFactory) -> Upstream:
    yield from serving(certs, tmp_path_factory.mktemp("upstream"))


def client_context(ca: Path, cert: Issued | None = None, alpn: list[str] | None = None) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(ca))
    if cert is not None:
        ctx.load_cert_chain(str(cert.cert_path), str(cert.key_path))
    if alpn:
        ctx.set_alpn_protocols(alpn)
    return ctx


def open_tls(port: int, ctx: ssl.SSLContext, sni: str = HOST) -> http.client.HTTPConnection:
    """An HTTP/1.1 connection to 127.0.0.1:port whose TLS carries SNI `sni` and checks that name."""
    raw = socket.create_connection(("127.0.0.1", port), timeout=10)
    conn = http.client.HTTPConnection(sni, port, timeout=10)
    conn.sock = ctx.wrap_socket(raw, server_hostname=sni)
    return conn


def get(conn: http.client.HTTPConnection, path: str, **headers: str) -> tuple[http.client.HTTPResponse, bytes]:
    conn.request("GET", path, headers={"Host": HOST, **headers})
    response = conn.getresponse()
    return response, response.read()


# --- plain HTTP -------------------------------------------------------------------------------


def test_plain_http_answers_301_to_https_and_records_the_request(upstream: Upstream) -> None:
    mark = upstream.client.mark()
    response = httpx.get(
        f"http://127.0.0.1:{upstream.ports.http}/politics",
        headers={"Host": HOST, "X-Trace": "plain-1"},
        follow_redirects=False,
        trust_env=False,
    )
    assert response.status_code == 301
    assert response.headers["location"] == "https://edition.cnn.com/politics"
    assert int(response.headers["content-length"]) == len(response.content) > 0
    assert b"https://edition.cnn.com/politics" in response.content

    [req] = upstream.client.wait_for_requests(1, since=mark)
    assert (req.listener, req.method, req.path, req.host) == ("http", "GET", "/politics", HOST)
    assert req.http_version == "HTTP/1.1"
    assert req.peer_address == "127.0.0.1" and req.peer_port > 0
    assert req.local_port == upstream.ports.http
    assert req.status == 301 and not req.tls and req.sni is None
    assert req.header("x-trace") == req.header("X-TRACE") == "plain-1"
    assert str(req.id) == response.headers["x-upstream-request-id"]
    [conn] = upstream.client.connections(since=mark)
    assert conn.id == req.connection_id and conn.peer_port == req.peer_port


def test_pipelined_bodies_head_and_http10_on_one_connection(upstream: Upstream) -> None:
    mark = upstream.client.mark()
    with socket.create_connection(("127.0.0.1", upstream.ports.http), timeout=10) as sock:
        sock.sendall(
            # edition.cnn.com in three spellings: a port and the case do not make it another site.
            b"POST /chunked HTTP/1.1\r\nHost: edition.cnn.com\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"
            b"HEAD /head HTTP/1.1\r\nHost: edition.cnn.com:80\r\n\r\n"
            b"GET /last HTTP/1.0\r\nHost: Edition.CNN.com\r\n\r\n"
        )
        data = b""
        while chunk := sock.recv(65536):  # HTTP/1.0 without keep-alive: the server closes
            data += chunk
    assert data.count(b"HTTP/1.1 301 Moved Permanently\r\n") == 3
    assert data.count(b"<html>") == 2, "a HEAD response carried a body"
    assert data.rsplit(b"HTTP/1.1 301", 1)[1].count(b"connection: close\r\n") == 1

    post, head, last = upstream.client.wait_for_requests(3, since=mark)
    assert (post.method, post.body_bytes, post.header("transfer-encoding")) == ("POST", 11, "chunked")
    assert (head.method, head.response_bytes, head.host) == ("HEAD", 0, "edition.cnn.com:80")
    assert (last.http_version, last.path, last.seq) == ("HTTP/1.0", "/last", 3)
    assert post.connection_id == head.connection_id == last.connection_id


def test_tls_bytes_on_the_plain_port_are_recorded_as_an_error(upstream: Upstream, certs: Certs) -> None:
    mark = upstream.client.mark()
    with pytest.raises((ssl.SSLError, OSError)):
        get(open_tls(upstream.ports.http, client_context(certs.pki.public_ca.cert_path)), "/politics")
    [conn] = poll(
        "the plain listener to record the TLS attempt",
        lambda: upstream.client.connections(since=mark),
        ok=lambda conns: len(conns) == 1 and conns[0].error is not None,
    )
    assert "TLS handshake bytes on a plain-HTTP listener" in conn.error, conn
    assert upstream.client.requests(since=mark) == []


# --- TLS --------------------------------------------------------------------------------------


def test_https_serves_politics_with_sni_verified_against_the_public_ca(upstream: Upstream, certs: Certs) -> None:
    mark = upstream.client.mark()
    ctx = client_context(certs.pki.public_ca.cert_path, alpn=["h2", "http/1.1"])
    bodies = []
    for _ in range(2):
        conn = open_tls(upstream.ports.https, ctx)
        response, body = get(conn, "/politics")
        assert conn.sock.selected_alpn_protocol() == "http/1.1"
        conn.close()
        assert response.status == 200
        assert response.getheader("content-type") == "text/html; charset=utf-8"
        assert int(response.getheader("content-length")) == len(body) == POLITICS_BYTES
        assert response.getheader("x-upstream-sni") == HOST
        bodies.append(body)
    assert bodies[0] == bodies[1] == politics_page()
    assert POLITICS_MARKER in bodies[0] and bodies[0].endswith(b"</html>\n")

    requests = upstream.client.wait_for_requests(2, since=mark)
    for req in requests:
        assert (req.listener, req.path, req.status, req.response_bytes) == ("https", "/politics", 200, POLITICS_BYTES)
        assert req.sni == HOST and req.alpn == "http/1.1" and req.tls_version in ("TLSv1.2", "TLSv1.3")
    for conn in upstream.client.connections(since=mark):
        assert conn.state in ("open", "closed")
        assert conn.alpn_offered == ("h2", "http/1.1")
        assert conn.cipher and conn.handshake_error is None
        assert conn.client_cert_subject is None  # only the mtls listener asks for one


def test_keep_alive_serves_several_requests_on_one_connection(upstream: Upstream, certs: Certs) -> None:
    mark = upstream.client.mark()
    conn = open_tls(upstream.ports.https, client_context(certs.pki.public_ca.cert_path))
    first, _ = get(conn, "/politics", **{"X-Seq": "1"})
    missing, missing_body = get(conn, "/elsewhere?x=1", **{"X-Seq": "2"})
    conn.close()
    assert first.status == 200 and missing.status == 404 and b"/elsewhere" in missing_body

    one, two = upstream.client.wait_for_requests(2, since=mark)
    assert one.connection_id == two.connection_id
    assert (one.seq, two.seq) == (1, 2)
    assert (two.path, two.status, two.header("x-seq")) == ("/elsewhere?x=1", 404, "2")
    [record] = upstream.client.connections(since=mark)
    assert record.requests == 2 and record.id == one.connection_id


def test_client_trusting_another_ca_rejects_the_server(upstream: Upstream, certs: Certs) -> None:
    mark = upstream.client.mark()
    with pytest.raises(ssl.SSLCertVerificationError, match="certificate verify failed"):
        open_tls(upstream.ports.https, client_context(certs.untrusted_ca_path))
    [conn] = upstream.client.wait_for_connections(1, since=mark)
    assert conn.state == "failed" and "unknown ca" in conn.handshake_error, conn
    assert conn.sni == HOST


# --- mutual TLS -------------------------------------------------------------------------------


def test_mtls_with_a_client_certificate_records_its_subject_and_sans(upstream: Upstream, certs: Certs) -> None:
    mark = upstream.client.mark()
    conn = open_tls(upstream.ports.mtls, client_context(certs.pki.public_ca.cert_path, cert=certs.client))
    response, body = get(conn, "/politics")
    conn.close()
    assert response.status == 200 and len(body) == POLITICS_BYTES

    [req] = upstream.client.wait_for_requests(1, since=mark)
    assert req.listener == "mtls" and req.client_cert_uri_sans == (CLIENT_URI,)
    [record] = upstream.client.connections(since=mark)
    assert record.client_cert_subject == "CN=egress-gateway"
    assert "Test Public Root CA" in (record.client_cert_issuer or "")
    assert record.client_cert_sans == (CLIENT_URI, CLIENT_DNS)
    assert record.client_cert_dns_sans == (CLIENT_DNS,)


@pytest.mark.parametrize("who", ["no client certificate", "certificate from an untrusted CA"])
def test_mtls_refuses_a_client_without_a_trusted_certificate(upstream: Upstream, certs: Certs, who: str) -> None:
    mark = upstream.client.mark()
    cert = certs.untrusted_client if who.startswith("certificate") else None
    ctx = client_context(certs.pki.public_ca.cert_path, cert=cert)
    # With TLS 1.3 the client may finish its side of the handshake and hear of the refusal only
    # when it reads; either way no response comes back.
    with pytest.raises((ssl.SSLError, ConnectionError, http.client.RemoteDisconnected)):
        get(open_tls(upstream.ports.mtls, ctx), "/politics")
    [conn] = upstream.client.wait_for_connections(1, since=mark)
    assert conn.state == "failed" and conn.listener == "mtls", conn
    expected = "PEER_DID_NOT_RETURN_A_CERTIFICATE" if cert is None else "CERTIFICATE_VERIFY_FAILED"
    assert expected in conn.handshake_error
    assert conn.sni == HOST and conn.client_cert_subject is None
    assert upstream.client.requests(since=mark) == []


# --- control API ------------------------------------------------------------------------------


def test_healthz_reports_the_bound_ports(upstream: Upstream) -> None:
    health = upstream.client.healthz()
    assert health["ok"] is True and health["pid"] == upstream.proc.pid
    assert upstream.client.ports() == upstream.ports
    ports = upstream.ports
    assert ports.mtls is not None and len({ports.http, ports.https, ports.mtls, ports.control}) == 4


def test_reset_clears_records_and_since_filters(upstream: Upstream) -> None:
    url = f"http://127.0.0.1:{upstream.ports.http}/a"
    httpx.get(url, trust_env=False)
    assert upstream.client.records(), "the request above left no record"
    before_reset = upstream.client.mark()
    upstream.client.reset()
    assert upstream.client.records() == [] and upstream.client.requests() == []

    httpx.get(url, trust_env=False)
    mark = upstream.client.mark()
    httpx.get(url.replace("/a", "/b"), trust_env=False)
    assert [r.path for r in upstream.client.requests()] == ["/a", "/b"]
    [after] = upstream.client.requests(since=mark)
    assert after.path == "/b" and after.id > mark
    assert all(r.id > before_reset for r in upstream.client.records()), "ids restarted after reset"
    assert [c.id for c in upstream.client.connections(since=mark)] == [after.connection_id]


def test_wait_for_requests_times_out_with_what_it_saw(upstream: Upstream) -> None:
    mark = upstream.client.mark()
    httpx.get(f"http://127.0.0.1:{upstream.ports.http}/only-one", trust_env=False)
    expected = r"(?s)waiting for 2 request\(s\).*1 request\(s\), 1 connection\(s\).*/only-one"
    with pytest.raises(WaitTimeout, match=expected):
        upstream.client.wait_for_requests(2, since=mark, timeout=0.3)


def test_json_output_matches_the_standard_library() -> None:
    tricky = {"s": 'q"b\\s\n\t\x00\x7f é \u2028 \U0001f600', "n": [0, -1, 2.5, 1e300, True, False, None], "e": {}}
    assert dumps(tricky) == json.dumps(tricky)


# --- load -------------------------------------------------------------------------------------


def test_200_concurrent_tls_connections_lose_no_record(upstream: Upstream, certs: Certs) -> None:
    count = 200
    ctx = client_context(certs.pki.public_ca.cert_path)
    # Every client holds its connection open until all 200 are up, so the server really has
    # 200 at once; then each sends one request.
    all_connected = threading.Barrier(count, timeout=20)
    mark = upstream.client.mark()

    def one(i: int) -> tuple[int, int, int]:
        conn = open_tls(upstream.ports.https, ctx)
        try:
            port = conn.sock.getsockname()[1]
            all_connected.wait()
            response, body = get(conn, "/politics", **{"X-Client": str(i), "Connection": "close"})
            return response.status, len(body), port
        finally:
            conn.close()

    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=count) as pool:
        results = list(pool.map(one, range(count)))
    assert {(status, size) for status, size, _ in results} == {(200, POLITICS_BYTES)}
    assert time.monotonic() - started < 10

    requests = upstream.client.wait_for_requests(count, since=mark)
    connections = upstream.client.connections(since=mark)
    assert len(requests) == count and len(connections) == count
    assert len({r.peer_port for r in requests}) == count
    assert {r.peer_port for r in requests} == {port for _, _, port in results}
    assert sorted(int(r.header("x-client")) for r in requests) == list(range(count))
    assert {r.connection_id for r in requests} == {c.id for c in connections}
    assert all(isinstance(c, ConnectionRecord) and c.handshake_error is None for c in connections)


# --- declared sites: certificates by SNI, extra listeners, answers by Host -------------------


EXTRA_PROTOS = ("https", "tcp", "http", "mtls")


@pytest.fixture(scope="module")
def sites(certs: Certs, tmp_path_factory: pytest.TempPathFactory) -> Upstream:
    """A stand-in with every --site-cert of `certs`, an mtls port, and one extra listener of
    each kind (ephemeral ports: 0 may repeat, each gets a port of its own)."""
    extra_ports = [arg for proto in EXTRA_PROTOS for arg in ("--port", f"{proto}:0")]
    yield from serving(certs, tmp_path_factory.mktemp("sites"), *site_cert_args(certs), *extra_ports)


def extra_port(upstream: Upstream, proto: str) -> int:
    [port] = [item["port"] for item in upstream.ready["extra"] if item["proto"] == proto]
    return port


def listener_port(upstream: Upstream, listener: str) -> int:
    """A fixed listener's port ("https"), or an extra one's ("extra https")."""
    if listener.startswith("extra "):
        return extra_port(upstream, listener.removeprefix("extra "))
    return getattr(upstream.ports, listener)


def served_names(certs: Certs, port: int, sni: str | None, client_cert: Issued | None = None) -> list[str]:
    """The DNS SANs of the certificate the server presents for `sni` (None: no SNI at all)."""
    ctx = client_context(certs.pki.public_ca.cert_path, cert=client_cert)
    ctx.check_hostname = False  # the chain is still verified; the odd SNIs below name no certificate
    with (
        socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
        ctx.wrap_socket(raw, server_hostname=sni) as tls,
    ):
        return [value for kind, value in tls.getpeercert()["subjectAltName"] if kind == "DNS"]


def raw_connections(upstream: Upstream, since: int) -> list[dict]:
    """Connection records as the control API sends them (ConnectionRecord has no bytes_received)."""
    url = f"http://127.0.0.1:{upstream.ports.control}/connections?since={since}"
    return httpx.get(url, trust_env=False).json()["records"]


@pytest.mark.parametrize(
    "sni, names",
    [
        (API, [API]),
        ("x.apps.example.net", [APPS]),
        (EXACT_APP, [EXACT_APP]),  # an exact name wins over the wildcard that covers it too
        ("a.b.apps.example.net", [HOST]),  # a wildcard covers one label, not two
        ("apps.example.net", [HOST]),  # nor none
        ("other.example.org", [HOST]),
        (HOST, [HOST]),
        (None, [HOST]),
    ],
    ids=["exact", "wildcard", "exact-over-wildcard", "two-labels", "bare-suffix", "unknown", "default", "no-sni"],
)
def test_sni_chooses_the_site_certificate(sites: Upstream, certs: Certs, sni: str | None, names: list[str]) -> None:
    mark = sites.client.mark()
    assert served_names(certs, sites.ports.https, sni) == names
    [conn] = sites.client.wait_for_connections(1, since=mark)
    assert conn.sni == sni and conn.handshake_error is None, conn


@pytest.mark.parametrize("listener", ["extra https", "mtls", "extra mtls"])
def test_every_tls_listener_chooses_by_sni(sites: Upstream, certs: Certs, listener: str) -> None:
    port = listener_port(sites, listener)
    client_cert = certs.client if "mtls" in listener else None
    mark = sites.client.mark()
    assert served_names(certs, port, API, client_cert) == [API]
    assert served_names(certs, port, "y.apps.example.net", client_cert) == [APPS]
    assert served_names(certs, port, "nobody.example.org", client_cert) == [HOST]
    conns = sites.client.wait_for_connections(3, since=mark)
    assert [c.sni for c in conns] == [API, "y.apps.example.net", "nobody.example.org"]
    assert {(c.listener, c.local_port, c.handshake_error) for c in conns} == {(listener.split()[-1], port, None)}
    if client_cert is not None:  # the site's context asked for and verified the client certificate too
        assert {c.client_cert_subject for c in conns} == {"CN=egress-gateway"}


def test_mtls_with_a_site_certificate_still_refuses_a_client_without_one(sites: Upstream, certs: Certs) -> None:
    mark = sites.client.mark()
    with pytest.raises((ssl.SSLError, ConnectionError, http.client.RemoteDisconnected)):
        get(open_tls(sites.ports.mtls, client_context(certs.pki.public_ca.cert_path), sni=API), "/", Host=API)
    [conn] = sites.client.wait_for_connections(1, since=mark)
    assert conn.state == "failed" and "PEER_DID_NOT_RETURN_A_CERTIFICATE" in conn.handshake_error, conn
    assert conn.sni == API


def test_a_site_answers_200_over_its_own_verified_certificate(sites: Upstream, certs: Certs) -> None:
    mark = sites.client.mark()
    conn = open_tls(sites.ports.https, client_context(certs.pki.public_ca.cert_path), sni=API)  # checks the name
    response, body = get(conn, "/v1/things?page=2", Host=API)
    conn.close()
    assert response.status == 200 and body == b"mock_upstream: api.example.net /v1/things?page=2\n"
    assert response.getheader("content-type") == "text/plain; charset=utf-8"
    assert response.getheader("x-upstream-sni") == API
    [req] = sites.client.wait_for_requests(1, since=mark)
    assert (req.listener, req.host, req.sni, req.status, req.response_bytes) == ("https", API, API, 200, len(body))


def test_extra_listeners_are_in_the_ready_line_and_healthz(sites: Upstream) -> None:
    extra = sites.ready["extra"]
    assert [item["proto"] for item in extra] == list(EXTRA_PROTOS)
    fixed = [sites.ports.http, sites.ports.https, sites.ports.mtls, sites.ports.control]
    assert len({*fixed, *(item["port"] for item in extra)}) == 8 and all(item["port"] > 0 for item in extra)
    health_ports = sites.client.healthz()["ports"]
    assert health_ports["extra"] == extra
    assert {k: v for k, v in health_ports.items() if k != "extra"} == {
        k: sites.ready[k] for k in ("http", "https", "mtls", "control")
    }


def test_the_seed_has_no_extra_listeners(upstream: Upstream) -> None:
    assert upstream.ready["extra"] == [] and upstream.client.healthz()["ports"]["extra"] == []


def test_an_extra_https_port_serves_politics_like_the_fixed_one(sites: Upstream, certs: Certs) -> None:
    port = extra_port(sites, "https")
    mark = sites.client.mark()
    conn = open_tls(port, client_context(certs.pki.public_ca.cert_path))
    response, body = get(conn, "/politics")
    missing, _ = get(conn, "/elsewhere")
    conn.close()
    assert response.status == 200 and body == politics_page() and missing.status == 404
    assert response.getheader("x-upstream-listener") == "https"
    assert response.getheader("x-upstream-port") == str(port)
    politics, elsewhere = sites.client.wait_for_requests(2, since=mark)
    assert (politics.listener, politics.local_port, politics.tls, politics.sni) == ("https", port, True, HOST)
    assert (politics.status, elsewhere.status) == (200, 404)


def test_an_extra_http_port_redirects_like_the_fixed_one(sites: Upstream) -> None:
    port = extra_port(sites, "http")
    response = httpx.get(f"http://127.0.0.1:{port}/politics", headers={"Host": HOST}, trust_env=False)
    assert response.status_code == 301 and response.headers["location"] == "https://edition.cnn.com/politics"
    assert response.headers["x-upstream-listener"] == "http" and response.headers["x-upstream-port"] == str(port)


def test_a_tcp_port_echoes_every_byte_and_counts_them(sites: Upstream) -> None:
    port = extra_port(sites, "tcp")
    mark = sites.client.mark()
    payload = bytes(range(256)) * 4096  # 1 MiB, more than the socket buffers hold at once
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(b"hello\n")
        assert sock.recv(6) == b"hello\n"
        # Written from another thread: the echo comes back while the rest is still being sent.
        writer = threading.Thread(target=sock.sendall, args=(payload,))
        writer.start()
        echoed = bytearray()
        while len(echoed) < len(payload):
            chunk = sock.recv(65536)
            assert chunk, f"the echo stopped after {len(echoed)} bytes"
            echoed += chunk
        writer.join(10)
        sock.shutdown(socket.SHUT_WR)
        assert sock.recv(1) == b"", "the server did not close after the client's side closed"
    assert bytes(echoed) == payload
    [record] = poll(
        "the tcp connection record to close",
        lambda: raw_connections(sites, mark),
        ok=lambda records: len(records) == 1 and records[0]["state"] == "closed",
    )
    assert (record["listener"], record["tls"], record["local_port"]) == ("tcp", False, port)
    assert record["bytes_received"] == len(payload) + 6
    assert (record["requests"], record["error"], record["sni"]) == (0, None, None)
    assert sites.client.requests(since=mark) == []


def test_bytes_received_is_only_on_tcp_records(sites: Upstream) -> None:
    mark = sites.client.mark()
    httpx.get(f"http://127.0.0.1:{sites.ports.http}/", trust_env=False)
    [record] = raw_connections(sites, mark)
    assert record["listener"] == "http" and "bytes_received" not in record


def plain(upstream: Upstream, method: str, path: str, host: str) -> httpx.Response:
    url = f"http://127.0.0.1:{upstream.ports.http}{path}"
    return httpx.request(method, url, headers={"Host": host}, follow_redirects=False, trust_env=False)


@pytest.mark.parametrize("listener", ["http", "https", "mtls", "extra http", "extra https", "extra mtls"])
def test_another_host_gets_200_and_the_status_it_asks_on_every_listener(
    sites: Upstream, certs: Certs, listener: str
) -> None:
    port = listener_port(sites, listener)
    mark = sites.client.mark()
    if listener.endswith("http"):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    else:
        cert = certs.client if listener.endswith("mtls") else None
        conn = open_tls(port, client_context(certs.pki.public_ca.cert_path, cert=cert))
    ok, ok_body = get(conn, "/some/path?x=1", Host=TEAM)
    teapot, teapot_body = get(conn, "/status/418", Host=f"{TEAM}:8080")
    conn.close()
    assert ok.status == 200 and ok_body == b"mock_upstream: team.example.org /some/path?x=1\n"
    assert ok.getheader("content-type") == "text/plain; charset=utf-8"
    assert teapot.status == 418 and teapot_body == b"mock_upstream: team.example.org /status/418\n"
    first, second = sites.client.wait_for_requests(2, since=mark)
    assert (first.listener, first.local_port) == (listener.split()[-1], port)
    assert (first.host, first.status, second.host, second.status) == (TEAM, 200, f"{TEAM}:8080", 418)
    assert second.response_bytes == len(teapot_body)


@pytest.mark.parametrize(
    "method, path, status, body",
    [
        ("HEAD", "/status/503", 503, b""),
        ("HEAD", "/anything", 200, b""),
        ("POST", "/status/201", 201, b"mock_upstream: team.example.org /status/201\n"),
        ("GET", "/status/204", 204, b""),
        ("GET", "/status/099", 200, b"mock_upstream: team.example.org /status/099\n"),  # not a status: a path
        ("GET", "/status/150", 200, b"mock_upstream: team.example.org /status/150\n"),  # 1xx is not final
        ("GET", "/status/600", 200, b"mock_upstream: team.example.org /status/600\n"),
        ("GET", "/status/404/more", 200, b"mock_upstream: team.example.org /status/404/more\n"),
    ],
)
def test_another_hosts_status_paths(sites: Upstream, method: str, path: str, status: int, body: bytes) -> None:
    response = plain(sites, method, path, TEAM)
    assert (response.status_code, response.content) == (status, body)
    if status == 204:
        assert "content-length" not in response.headers
    elif method == "HEAD":
        assert int(response.headers["content-length"]) == len(f"mock_upstream: {TEAM} {path}\n")


@pytest.mark.parametrize(
    "host",
    ["edition.cnn.com", "edition.cnn.com:80", "EDITION.cnn.com", "127.0.0.1:80", "[::1]:80", "127.0.0.1", ""],
)
def test_edition_cnn_com_an_address_or_no_name_keeps_the_seed_answers(sites: Upstream, certs: Certs, host: str) -> None:
    """The seed's answers stay for its own host, for clients that name the stand-in by address,
    and for requests without a name: 301 on plain HTTP, /politics or 404 over TLS, even for paths
    a declared site would answer."""
    redirect = plain(sites, "GET", "/status/418", host)
    assert redirect.status_code == 301 and redirect.headers["location"] == "https://edition.cnn.com/status/418"
    conn = open_tls(sites.ports.https, client_context(certs.pki.public_ca.cert_path))
    politics, body = get(conn, "/politics", Host=host)
    missing, _ = get(conn, "/status/418", Host=host)
    conn.close()
    assert (politics.status, len(body), missing.status) == (200, POLITICS_BYTES, 404)


def test_a_request_without_host_keeps_the_seed_answers(sites: Upstream) -> None:
    with socket.create_connection(("127.0.0.1", sites.ports.http), timeout=10) as sock:
        sock.sendall(b"GET /status/418 HTTP/1.0\r\n\r\n")
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    assert data.startswith(b"HTTP/1.1 301 Moved Permanently\r\n")
    assert b"location: https://edition.cnn.com/status/418\r\n" in data


def test_redirect_host_is_the_host_served_as_edition_cnn_com(certs: Certs, tmp_path: Path) -> None:
    running = start(certs, tmp_path, "--redirect-host", "www.example.com:8443")
    try:
        moved = plain(running, "GET", "/x", "www.example.com")
        other = plain(running, "GET", "/x", HOST)
        assert moved.status_code == 301 and moved.headers["location"] == "https://www.example.com:8443/x"
        assert other.status_code == 200 and other.content == b"mock_upstream: edition.cnn.com /x\n"
    finally:
        running.client.close()
        assert stop(running.proc) == 0


# --- process behaviour ------------------------------------------------------------------------


def run_to_exit(args: list[str], tmp_path: Path) -> tuple[int, str, list[str]]:
    stderr_path = tmp_path / "stderr"
    proc = spawn(args, stderr_path)
    try:
        stdout, _ = proc.communicate(timeout=10)
    finally:
        stop(proc)
    return proc.returncode, stdout.decode(), stderr_path.read_text().splitlines()


def test_unreadable_certificate_is_one_error_line(certs: Certs, tmp_path: Path) -> None:
    missing = tmp_path / "no-such-cert.pem"
    args = server_args(certs)
    args[args.index("--cert") + 1] = str(missing)
    code, stdout, stderr = run_to_exit(args, tmp_path)
    assert code != 0 and stdout == ""
    assert len(stderr) == 1 and stderr[0].startswith("mock_upstream: error: "), stderr
    assert str(missing) in stderr[0] and "No such file" in stderr[0]


def test_file_that_is_not_a_certificate_is_one_error_line(certs: Certs, tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("this is not PEM\n")
    args = server_args(certs)
    args[args.index("--cert") + 1] = str(garbage)
    code, stdout, stderr = run_to_exit(args, tmp_path)
    assert code != 0 and stdout == ""
    assert stderr == [f"mock_upstream: error: --cert {garbage} holds no PEM certificate"]


def test_key_of_another_certificate_is_one_error_line(certs: Certs, tmp_path: Path) -> None:
    args = server_args(certs)
    args[args.index("--key") + 1] = str(certs.client.key_path)
    code, _, stderr = run_to_exit(args, tmp_path)
    assert code != 0
    assert len(stderr) == 1 and "is not the key of the certificate" in stderr[0], stderr


def site_cert_error(certs: Certs, tmp_path: Path, cert: Path, key: Path) -> tuple[int, list[str]]:
    code, stdout, stderr = run_to_exit(server_args(certs, "--site-cert", f"{API}={cert},{key}"), tmp_path)
    assert stdout == ""
    return code, stderr


def test_unreadable_site_certificate_is_one_error_line(certs: Certs, tmp_path: Path) -> None:
    missing = tmp_path / "no-such-site.pem"
    code, stderr = site_cert_error(certs, tmp_path, missing, certs.sites[API].key_path)
    assert code == 1
    assert stderr == [f"mock_upstream: error: cannot read --site-cert {API} {missing}: No such file or directory"]


@pytest.mark.parametrize("which, what", [("cert", "certificate"), ("key", "private key")])
def test_site_file_that_is_not_pem_is_one_error_line(certs: Certs, tmp_path: Path, which: str, what: str) -> None:
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("this is not PEM\n")
    files = {"cert": certs.sites[API].chain_path, "key": certs.sites[API].key_path, which: garbage}
    code, stderr = site_cert_error(certs, tmp_path, files["cert"], files["key"])
    assert code == 1
    assert stderr == [f"mock_upstream: error: --site-cert {API} {garbage} holds no PEM {what}"]


def test_site_key_of_another_certificate_is_one_error_line(certs: Certs, tmp_path: Path) -> None:
    chain, key = certs.sites[API].chain_path, certs.sites[APPS].key_path
    code, stderr = site_cert_error(certs, tmp_path, chain, key)
    assert code == 1
    assert stderr == [
        f"mock_upstream: error: --site-cert {API} {key} is not the key of the certificate in --site-cert {API} {chain}"
    ]


def test_extra_port_in_use_is_one_error_line_naming_the_flag(certs: Certs, tmp_path: Path) -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        code, stdout, stderr = run_to_exit(server_args(certs, "--port", f"tcp:{port}"), tmp_path)
    assert code == 1 and stdout == ""
    assert stderr == [
        f"mock_upstream: error: cannot bind 127.0.0.1:{port}: address already in use (choose another --port tcp:{port})"
    ]


def test_port_in_use_is_one_error_line_naming_the_flag(certs: Certs, tmp_path: Path) -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        args = server_args(certs)
        args[args.index("--https-port") + 1] = str(port)
        code, stdout, stderr = run_to_exit(args, tmp_path)
    assert code != 0 and stdout == ""
    assert stderr == [
        f"mock_upstream: error: cannot bind 127.0.0.1:{port}: address already in use (choose another --https-port)"
    ]


@pytest.mark.parametrize(
    "extra, expected",
    [
        (["--no-such-flag"], "unrecognized arguments: --no-such-flag"),
        (["--mtls-port", "0"], "--mtls-port needs --client-ca"),
        (["--https-port", "70000"], "port out of range"),
        (["--site-cert", API], "argument --site-cert: expected NAME=CERT,KEY"),
        (["--site-cert", f"{API}=only-a-cert.pem"], "argument --site-cert: expected NAME=CERT,KEY"),
        (["--site-cert", f"{API}=a.pem,b.key,c"], "argument --site-cert: expected NAME=CERT,KEY"),
        (["--site-cert", "bad_name=a.pem,a.key"], "argument --site-cert: not a DNS name or *.wildcard: 'bad_name'"),
        (["--site-cert", "a.*.example.net=a.pem,a.key"], "not a DNS name or *.wildcard"),
        (["--site-cert", "*=a.pem,a.key"], "not a DNS name or *.wildcard"),
        (["--site-cert", f"{API}=a,b", "--site-cert", f"{API.upper()}=c,d"], f"--site-cert {API} is given twice"),
        (["--port", "ftp:21"], "argument --port: expected PROTO:PORT with PROTO one of http, https, mtls, tcp"),
        (["--port", "443"], "argument --port: expected PROTO:PORT"),
        (["--port", "tcp:70000"], "argument --port: port out of range 0-65535: 70000"),
        (["--port", "tcp:seven"], "argument --port: not a port number: 'seven'"),
        (["--port", "tcp:40001", "--port", "https:40001"], "--port https:40001: port 40001 is given twice"),
        (["--http-port", "40002", "--port", "tcp:40002"], "--port tcp:40002: port 40002 is already --http-port's"),
        (["--control-port", "40003", "--port", "http:40003"], "port 40003 is already --control-port's"),
        (["--port", "mtls:0"], "--port mtls:PORT needs --client-ca"),
        (["--client-ca", "ca.pem"], "--client-ca is only used by the mutual-TLS listeners"),
    ],
)
def test_bad_flags_are_one_error_line(certs: Certs, tmp_path: Path, extra: list[str], expected: str) -> None:
    code, stdout, stderr = run_to_exit(server_args(certs, *extra), tmp_path)
    assert code == 2 and stdout == ""
    assert len(stderr) == 1 and stderr[0].startswith("mock_upstream: error: ") and expected in stderr[0], stderr


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_exits_zero_quickly_even_with_an_open_connection(certs: Certs, tmp_path: Path, sig: int) -> None:
    running = start(certs, tmp_path)
    conn = open_tls(running.ports.https, client_context(certs.pki.public_ca.cert_path))
    try:
        response, _ = get(conn, "/politics")  # keep-alive: the connection stays open
        assert response.status == 200
        started = time.monotonic()
        os.kill(running.proc.pid, sig)
        assert running.proc.wait(5) == 0, running.stderr_path.read_text()
        assert time.monotonic() - started < 2
        assert running.stderr_path.read_text() == ""
        with pytest.raises((OSError, http.client.HTTPException)):
            get(conn, "/politics")  # the server closed the kept-alive connection on its way out
    finally:
        conn.close()
        running.client.close()
        stop(running.proc, signal.SIGKILL)


# Top-level modules of Debian bookworm's python3.11-minimal and libpython3.11-minimal (dpkg -L),
# plus the extension modules its interpreter has built in. The container image has only these.
# gettext is not among them, but upstream argparse imports it unconditionally where Debian's
# patched argparse falls back without it; it is allowed so this test runs on any CPython.
PYTHON3_MINIMAL_MODULES = set(
    [
        "gettext",
        "__future__",
        "_collections_abc",
        "_compat_pickle",
        "_py_abc",
        "_sitebuiltins",
        "_strptime",
        "_threading_local",
        "_weakrefset",
        "abc",
        "argparse",
        "ast",
        "base64",
        "bisect",
        "calendar",
        "codecs",
        "collections",
        "compileall",
        "configparser",
        "contextlib",
        "copy",
        "copyreg",
        "csv",
        "datetime",
        "dis",
        "email",
        "encodings",
        "enum",
        "filecmp",
        "fnmatch",
        "functools",
        "genericpath",
        "getopt",
        "glob",
        "hashlib",
        "heapq",
        "imp",
        "importlib",
        "inspect",
        "io",
        "ipaddress",
        "keyword",
        "linecache",
        "locale",
        "logging",
        "opcode",
        "operator",
        "optparse",
        "os",
        "pathlib",
        "pickle",
        "pkgutil",
        "platform",
        "posixpath",
        "py_compile",
        "quopri",
        "random",
        "re",
        "reprlib",
        "runpy",
        "selectors",
        "signal",
        "site",
        "sitecustomize",
        "socket",
        "sre_compile",
        "sre_constants",
        "sre_parse",
        "ssl",
        "stat",
        "string",
        "stringprep",
        "struct",
        "subprocess",
        "sysconfig",
        "tempfile",
        "textwrap",
        "threading",
        "token",
        "tokenize",
        "traceback",
        "tracemalloc",
        "types",
        "typing",
        "urllib",
        "uu",
        "warnings",
        "weakref",
        "zipfile",
        "zipimport",
        "_ssl",
        "_hashlib",
        "_abc",
        "_ast",
        "_bisect",
        "_blake2",
        "_codecs",
        "_collections",
        "_csv",
        "_datetime",
        "_elementtree",
        "_functools",
        "_heapq",
        "_imp",
        "_io",
        "_locale",
        "_md5",
        "_opcode",
        "_operator",
        "_pickle",
        "_posixsubprocess",
        "_random",
        "_sha1",
        "_sha256",
        "_sha3",
        "_sha512",
        "_signal",
        "_socket",
        "_sre",
        "_stat",
        "_statistics",
        "_string",
        "_struct",
        "_symtable",
        "_thread",
        "_tokenize",
        "_tracemalloc",
        "_warnings",
        "_weakref",
        "array",
        "atexit",
        "binascii",
        "builtins",
        "cmath",
        "errno",
        "faulthandler",
        "fcntl",
        "gc",
        "grp",
        "itertools",
        "marshal",
        "math",
        "posix",
        "pwd",
        "pyexpat",
        "select",
        "spwd",
        "sys",
        "syslog",
        "time",
        "unicodedata",
        "zlib",
    ]
)  # noqa: SIM905 -- a word list reads and diffs better than 150 quoted items

_MINIMAL_ONLY_BOOT = f"""
import sys
allowed = {sorted(PYTHON3_MINIMAL_MODULES)!r}
class OnlyMinimal:
    def find_spec(self, name, path=None, target=None):
        top = name.partition(".")[0]
        if top not in allowed and top != "mock_upstream":
            raise ModuleNotFoundError(f"{{name}} is not in Debian's python3-minimal", name=name)
        return None
sys.meta_path.insert(0, OnlyMinimal())
import runpy
sys.argv[0] = "mock_upstream"
runpy.run_module("mock_upstream", run_name="__main__", alter_sys=True)
"""


def test_runs_on_the_modules_of_python3_minimal(certs: Certs, tmp_path: Path) -> None:
    running = start(
        certs,
        tmp_path,
        "--mtls-port",
        "0",
        "--client-ca",
        str(certs.pki.public_ca.cert_path),
        *site_cert_args(certs),
        "--port",
        "tcp:0",
        python_args=("-c", _MINIMAL_ONLY_BOOT),
    )
    try:
        conn = open_tls(running.ports.mtls, client_context(certs.pki.public_ca.cert_path, cert=certs.client))
        response, body = get(conn, "/politics")
        conn.close()
        assert response.status == 200 and len(body) == POLITICS_BYTES
        assert httpx.get(f"http://127.0.0.1:{running.ports.http}/politics", trust_env=False).status_code == 301
        mtls, plain = running.client.wait_for_requests(2)
        assert mtls.client_cert_uri_sans == (CLIENT_URI,) and plain.status == 301
        assert running.client.connections()[0].alpn_offered == ()
        site = open_tls(running.ports.https, client_context(certs.pki.public_ca.cert_path), sni=API)
        response, body = get(site, "/status/418", Host=API)
        site.close()
        assert response.status == 418 and body == b"mock_upstream: api.example.net /status/418\n"
        with socket.create_connection(("127.0.0.1", extra_port(running, "tcp")), timeout=10) as sock:
            sock.sendall(b"echo")
            assert sock.recv(4) == b"echo"
    finally:
        running.client.close()
        assert stop(running.proc) == 0
    assert running.stderr_path.read_text() == "", "the server hit a module python3-minimal lacks"


def test_the_control_api_answers_only_the_runs_token(
    certs: Certs, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With MOCK_UPSTREAM_CONTROL_TOKEN set (the harness sets a random one per run), a control
    request without that bearer token is refused and does nothing: a pod cannot reset the records."""
    monkeypatch.setenv("MOCK_UPSTREAM_CONTROL_TOKEN", "the-runs-token")
    running = start(certs, tmp_path)
    base = f"http://127.0.0.1:{running.ports.control}"
    try:
        assert httpx.get(f"http://127.0.0.1:{running.ports.http}/politics", trust_env=False).status_code == 301
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic the-runs-token"}):
            for method, path in (("POST", "/reset"), ("GET", "/records"), ("GET", "/healthz")):
                r = httpx.request(method, base + path, headers=headers, trust_env=False)
                assert r.status_code == 401, (method, path, headers, r.text)
                assert "token" in r.json()["error"]
        with UpstreamClient(base, token="the-runs-token") as control:
            [request] = control.wait_for_requests(1)
            assert request.status == 301, "the refused /reset erased nothing"
            control.reset()
            assert control.requests() == []
        with pytest.raises(HarnessError, match="refused the harness's token"):
            running.client.mark()  # the fixture's client has no token
    finally:
        running.client.close()
        assert stop(running.proc) == 0


def test_the_control_api_listens_on_its_own_address(certs: Certs, tmp_path: Path) -> None:
    running = start(certs, tmp_path, "--control-listen", "127.0.0.2")
    try:
        with socket.socket() as probe, pytest.raises(ConnectionRefusedError):
            probe.connect(("127.0.0.1", running.ports.control))
        with UpstreamClient(f"http://127.0.0.2:{running.ports.control}") as control:
            assert control.healthz()["ok"] is True
        assert httpx.get(f"http://127.0.0.1:{running.ports.http}/", trust_env=False).status_code == 301
    finally:
        running.client.close()
        assert stop(running.proc) == 0
