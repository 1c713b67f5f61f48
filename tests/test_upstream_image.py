"""The stand-in's image, built and run for real on a Docker engine this test starts and stops.

The engine (Debian's docker.io) is started with its own data root, exec root and socket in a
temporary directory, with no default bridge, no iptables and no IP forwarding, inside a network
namespace of its own that has nothing but loopback: its bridges and containers live there, so
nothing they send can leave the machine (the test reaches them by opening its sockets in that
namespace). Nothing is pulled: the base image is a debootstrap'd Debian rootfs (cached under
cache_root()/rootfs, so only the first run takes a minute), imported, and mock_upstream/Dockerfile
is built on it. The container runs on an internal network of the test's own (TEST-NET-2 addresses,
no default route) and the test talks to it over TLS with SNI edition.cnn.com, verifying it with the
test CA, then reads what it saw through its control port on that network.

Skipped, with the reason, only when no engine can be started (no dockerd, not root, no overlay).
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import ssl
import subprocess
import tempfile
import time
from pathlib import Path

import httpx
import pytest

from harness import stand_in
from harness.backends import upstream_image
from harness.errors import HarnessError
from harness.local.netns import Netns
from harness.pki import RunPKI
from harness.upstream_client import UpstreamClient
from harness.wait import poll

pytestmark = pytest.mark.slow

NETWORK_SUBNET = "198.51.100.0/24"  # TEST-NET-2: documentation addresses, routed nowhere


class PrivateDockerd:
    """A dockerd owned by this test: own directories and socket, stopped by its pid."""

    def __init__(self) -> None:
        self.netns = Netns(f"eh-dockerd-{secrets.token_hex(3)}")
        # Short paths: containerd's sockets live under the exec root (unix socket paths ≤ 107 bytes).
        self.root = Path(tempfile.mkdtemp(prefix="eh-dockerd-", dir="/tmp"))
        self.socket = self.root / "docker.sock"
        self.log_path = self.root / "dockerd.log"
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 60.0) -> None:
        dockerd = shutil.which("dockerd")
        if dockerd is None:
            pytest.skip("no Docker engine: dockerd is not installed (apt-get install docker.io)")
        if os.geteuid() != 0:
            pytest.skip("no Docker engine: starting dockerd needs root")
        if not shutil.which("nsenter") or not shutil.which("ip"):
            pytest.skip(
                "no Docker engine: nsenter (util-linux) and ip (iproute2) are needed to give it its own network namespace"
            )
        try:
            self.netns.create()
        except (HarnessError, RuntimeError) as exc:
            pytest.skip(f"no Docker engine: cannot create a network namespace for it ({exc})")
        argv = [
            dockerd,
            f"--data-root={self.root / 'data'}",
            f"--exec-root={self.root / 'exec'}",
            f"--pidfile={self.root / 'dockerd.pid'}",
            f"--host=unix://{self.socket}",
            "--bridge=none",
            "--iptables=false",
            "--ip6tables=false",
            "--ip-forward=false",
            "--ip-masq=false",
            "--userland-proxy=true",
            "--log-level=warn",
        ]
        env = {k: v for k, v in os.environ.items() if not k.startswith("DOCKER_")}
        with open(self.log_path, "wb") as log:
            # nsenter --net only: `ip netns exec` would also remount /sys and hide the cgroups.
            self.proc = subprocess.Popen(
                ["nsenter", f"--net={self.netns.path}", *argv],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                tail = self.log_path.read_text(errors="replace").strip().splitlines()[-3:]
                self.stop()
                pytest.skip(f"no Docker engine: dockerd exited with {self.proc.returncode}: {' | '.join(tail)}")
            if self.socket.exists() and self.ping():
                return
            time.sleep(0.2)
        self.stop()
        pytest.skip(f"no Docker engine: dockerd did not answer on {self.socket} within {timeout:.0f}s")

    def ping(self) -> bool:
        try:
            with httpx.Client(transport=httpx.HTTPTransport(uds=str(self.socket)), timeout=2, trust_env=False) as c:
                return c.get("http://docker/_ping").status_code == 200
        except httpx.HTTPError:
            return False

    def client(self):
        import docker

        return docker.DockerClient(base_url=f"unix://{self.socket}", timeout=300)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)  # dockerd stops its own containerd and shims
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        # Whatever the engine left mounted under its data root goes before the directory does.
        mounts = [
            line.split()[1]
            for line in Path("/proc/self/mounts").read_text().splitlines()
            if line.split()[1].startswith(str(self.root))
        ]
        for mnt in sorted(mounts, key=len, reverse=True):
            subprocess.run(["umount", "-l", mnt], capture_output=True)
        shutil.rmtree(self.root, ignore_errors=True)
        self.netns.delete()


@pytest.fixture(scope="module")
def engine():
    pytest.importorskip("docker", reason="the docker SDK is in the [kind] extra: pip install -e '.[kind]'")
    d = PrivateDockerd()
    try:
        d.start()
        yield d
    finally:
        d.stop()


@pytest.fixture(scope="module")
def pki():
    p = RunPKI(Path(tempfile.mkdtemp(prefix="eh-image-pki-")))
    yield p
    p.cleanup()


@pytest.fixture(scope="module")
def built(engine):
    """(client, base tag, upstream tag, timings)."""
    client = engine.client()
    timings = {}
    t0 = time.monotonic()
    tarball, built_now = upstream_image.ensure_rootfs_tarball()
    timings["rootfs"] = (time.monotonic() - t0, "debootstrap" if built_now else "cached tarball")
    t1 = time.monotonic()
    base = upstream_image.ensure_base_image(client, tarball)
    timings["import"] = (time.monotonic() - t1, "")
    t2 = time.monotonic()
    tag = upstream_image.build_upstream_image(client, base)
    timings["build"] = (time.monotonic() - t2, "")
    print("\nimage timings: " + ", ".join(f"{k} {v:.1f}s {how}".strip() for k, (v, how) in timings.items()))
    yield client, base, tag, timings
    client.close()


@pytest.fixture(scope="module")
def upstream(built, pki):
    client, _base, tag, _ = built
    import docker

    network = client.networks.create(
        "eh-internet-test",
        driver="bridge",
        internal=True,
        ipam=docker.types.IPAMConfig(pool_configs=[docker.types.IPAMPool(subnet=NETWORK_SUBNET)]),
        labels={"egress-harness": "test"},
    )
    server = stand_in.issue_upstream_certificate(pki.public_ca)
    running = None
    try:
        running = upstream_image.run_upstream(
            client,
            tag,
            network.name,
            name="eh-mock-upstream-test",
            cert_chain_pem=server.chain_path.read_bytes(),
            key_pem=server.key_pem,
            client_ca_pem=pki.public_ca.cert_pem,
            publish_control=False,
        )
        yield running
    finally:
        if running is not None:
            running.remove()
        network.remove()


def _tls_get(
    ns: Netns,
    address: str,
    port: int,
    ca_pem: bytes,
    *,
    sni: str = "edition.cnn.com",
    client_cert: tuple[Path, Path] | None = None,
) -> tuple[str, bytes, dict]:
    ctx = ssl.create_default_context(cadata=ca_pem.decode())
    ctx.set_alpn_protocols(["http/1.1"])
    if client_cert:
        ctx.load_cert_chain(str(client_cert[0]), str(client_cert[1]))
    raw = ns.socket()
    raw.settimeout(10)
    raw.connect((address, port))
    with raw, ctx.wrap_socket(raw, server_hostname=sni) as tls:
        peer = tls.getpeercert()
        tls.sendall(
            f"GET /politics HTTP/1.1\r\nHost: {sni}\r\nConnection: close\r\nx-probe: image-test\r\n\r\n".encode()
        )
        chunks = []
        while True:
            data = tls.recv(65536)
            if not data:
                break
            chunks.append(data)
    body = b"".join(chunks)
    status_line = body.split(b"\r\n", 1)[0].decode()
    return status_line, body, peer


def test_base_image_has_what_the_pods_need(built):
    client, base, _tag, _ = built
    out = client.containers.run(
        base,
        [
            "sh",
            "-c",
            "python3 -c 'import ssl, sys; print(sys.version_info[:2] >= (3, 9))'"
            " && command -v curl && command -v openssl && command -v getent",
        ],
        network_mode="none",
        remove=True,
    )
    lines = out.decode().split()
    assert lines[0] == "True"
    assert [Path(p).name for p in lines[1:]] == ["curl", "openssl", "getent"]
    # The sleep image is the base under its own name (what kind loads for the sleep pods).
    assert client.images.get(upstream_image.sleep_tag()).id == client.images.get(base).id


def test_image_contents_are_only_the_package(built):
    client, _base, tag, _ = built
    image = client.images.get(tag)
    assert image.attrs["Config"]["Entrypoint"] == ["python3", "-m", "mock_upstream"]
    out = (
        client.containers.run(
            tag, [], entrypoint=["sh", "-c", "ls /opt/mock-upstream/mock_upstream"], network_mode="none", remove=True
        )
        .decode()
        .split()
    )
    assert "cli.py" in out and "server.py" in out and "Dockerfile" not in out
    assert not any(name.startswith("test") for name in out)


def test_nothing_the_engine_runs_can_leave_the_machine(engine, upstream):
    """The engine's namespace has no default route and no interface but loopback, its bridges and
    their veths: whatever the container sends stops there."""
    routes = engine.netns.ip("route", "show").stdout.splitlines()
    assert not [r for r in routes if r.startswith("default")], routes
    links = engine.netns.ip("-o", "link", "show").stdout.splitlines()
    kinds = {line.split(":")[1].strip().split("@")[0] for line in links}
    assert all(k == "lo" or k.startswith(("br-", "veth")) for k in kinds), kinds
    assert upstream.address.startswith("198.51.100.")


def test_tls_with_sni_verified_by_the_test_ca(engine, upstream, pki):
    with UpstreamClient(
        upstream.control_url, transport=engine.netns.http_transport(), token=upstream.control_token
    ) as control:
        mark = control.mark()
        status, body, peer = _tls_get(
            engine.netns, upstream.address, stand_in.UPSTREAM_PORTS["https"], pki.public_ca.cert_pem
        )
        assert status == "HTTP/1.1 200 OK", body[:300]
        assert ("DNS", "edition.cnn.com") in peer["subjectAltName"]
        [req] = control.wait_for_requests(1, since=mark)
    assert req.listener == "https" and req.sni == "edition.cnn.com" and req.path == "/politics"
    assert req.alpn == "http/1.1" and req.header("x-probe") == "image-test"
    assert req.status == 200


def test_a_client_that_trusts_another_ca_is_refused(engine, upstream, pki):
    other = pki.other_public_ca()
    with pytest.raises(ssl.SSLCertVerificationError):
        _tls_get(engine.netns, upstream.address, stand_in.UPSTREAM_PORTS["https"], other.cert_pem)


def test_http_port_redirects_like_the_seed(engine, upstream):
    with httpx.Client(transport=engine.netns.http_transport(), trust_env=False, timeout=10) as http:
        r = http.get(f"http://{upstream.address}/politics", headers={"Host": "edition.cnn.com"})
    assert r.status_code == 301
    assert r.headers["location"] == "https://edition.cnn.com/politics"


def test_mutual_tls_port_records_the_client_certificate(engine, upstream, pki):
    client_cert = pki.public_ca.issue_client(
        "gateway-client",
        "istio-egressgateway",
        uris=["spiffe://cluster.local/ns/istio-system/sa/istio-egressgateway-service-account"],
    )
    with UpstreamClient(
        upstream.control_url, transport=engine.netns.http_transport(), token=upstream.control_token
    ) as control:
        mark = control.mark()
        status, _body, _peer = _tls_get(
            engine.netns,
            upstream.address,
            stand_in.UPSTREAM_PORTS["mtls"],
            pki.public_ca.cert_pem,
            client_cert=(client_cert.cert_path, client_cert.key_path),
        )
        assert status == "HTTP/1.1 200 OK"
        [req] = control.wait_for_requests(1, since=mark)
        assert req.listener == "mtls"
        assert "spiffe://cluster.local/ns/istio-system/sa/istio-egressgateway-service-account" in req.client_cert_sans

        # Without a client certificate the handshake fails, and the stand-in says so.
        mark = control.mark()
        with pytest.raises((ssl.SSLError, ConnectionError, OSError)):
            _tls_get(engine.netns, upstream.address, stand_in.UPSTREAM_PORTS["mtls"], pki.public_ca.cert_pem)
        [conn] = control.wait_for_connections(1, since=mark)
    assert conn.listener == "mtls" and conn.state == "failed" and conn.handshake_error


def test_control_port_answers_on_the_internal_network(engine, upstream):
    assert upstream.control_url == f"http://{upstream.address}:9901"
    with UpstreamClient(
        upstream.control_url, transport=engine.netns.http_transport(), token=upstream.control_token
    ) as control:
        health = poll("the stand-in's healthz", control.healthz)
    assert health["ok"] is True
    assert health["ports"] == {"http": 80, "https": 443, "mtls": 8443, "control": 9901, "extra": []}
    # What else is on the network (a pod on kind's) reaches the port but not the records.
    with (
        UpstreamClient(upstream.control_url, transport=engine.netns.http_transport()) as stranger,
        pytest.raises(HarnessError, match="refused the harness's token"),
    ):
        stranger.reset()


def test_on_a_kind_like_network_the_control_port_is_published_on_loopback(engine, built, pki):
    """What the kind backend does: a plain bridge network named "kind" (safe here: the engine's
    namespace has no way out), the control port published on 127.0.0.1 of the engine's host."""
    client, _base, tag, _ = built
    network = client.networks.create("kind", driver="bridge", labels={"egress-harness": "test"})
    server = pki.public_ca.issue_server("edition.cnn.com-kind", ["edition.cnn.com"])
    running = None
    try:
        running = upstream_image.run_upstream(
            client,
            tag,
            "kind",
            name="egress-harness-upstream-test",
            cert_chain_pem=server.chain_path.read_bytes(),
            key_pem=server.key_pem,
            client_ca_pem=pki.public_ca.cert_pem,
            publish_control=True,
        )
        assert running.control_url.startswith("http://127.0.0.1:")
        binding = running.container.attrs["NetworkSettings"]["Ports"]["9901/tcp"]
        assert [b["HostIp"] for b in binding] == ["127.0.0.1"]
        with UpstreamClient(
            running.control_url, transport=engine.netns.http_transport(), token=running.control_token
        ) as control:
            mark = control.mark()
            status, _body, _peer = _tls_get(engine.netns, running.address, 443, pki.public_ca.cert_pem)
            assert status == "HTTP/1.1 200 OK"
            [req] = control.wait_for_requests(1, since=mark)
        assert req.sni == "edition.cnn.com"
    finally:
        if running is not None:
            running.remove()
        network.remove()
