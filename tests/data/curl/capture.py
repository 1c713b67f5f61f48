"""Recreate the captured curl outputs that tests/test_curl_result.py parses.

    cd /work/main && .venv/bin/python tests/data/curl/capture.py

For each case it runs the real curl against real servers started here on 127.0.0.1 (a Python HTTP
server, a TLS server with a self-signed certificate, a real Envoy for HTTP/2 and Envoy's own 503)
and writes <case>.argv (the command, for reading), <case>.stdout, <case>.stderr and <case>.rc
byte for byte. Ports differ on every run, so the tests never assert a port.

"resolve_failure" runs curl in a fresh network namespace (`unshare -n`, needs root) so the lookup
fails locally instead of asking a DNS server; without unshare that case is left as it is.
"""

from __future__ import annotations

import datetime
import ipaddress
import json
import os
import shlex
import shutil
import socket
import ssl
import struct
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[2]))

from cryptography import x509  # noqa: E402
from cryptography.hazmat.primitives import hashes, serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ec  # noqa: E402
from cryptography.x509.oid import NameOID  # noqa: E402

from harness.curl_result import curl_command  # noqa: E402
from harness.envoy_admin import EnvoyAdmin  # noqa: E402
from harness.envoy_binary import find_envoy_binary  # noqa: E402
from harness.wait import poll  # noqa: E402

LOCALHOST = "127.0.0.1"
HCM_TYPE = "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"


class Upstream(BaseHTTPRequestHandler):
    """Plays edition.cnn.com and its failure modes; the paths name what each one does."""

    protocol_version = "HTTP/1.1"
    server_version = "capture-upstream"
    sys_version = ""

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - stdlib signature
        pass

    def do_GET(self) -> None:
        port = self.server.server_address[1]
        closed = self.server.closed_port  # type: ignore[attr-defined]
        if self.path == "/ok":
            self._reply(200, b"hello\n", [("X-Egress-Test", "ok"), ("Set-Cookie", "a=1"), ("Set-Cookie", "b=2")])
        elif self.path == "/politics":
            # Like the http→https redirect in Istio's egress docs, but to a port that does not speak TLS.
            self._reply(301, b"", [("Location", f"https://{LOCALHOST}:{port}/politics")])
        elif self.path == "/to-closed-port":
            self._reply(301, b"", [("Location", f"http://{LOCALHOST}:{closed}/")])
        elif self.path == "/chain":
            self._reply(302, b"", [("Location", "/chain-2")])
        elif self.path == "/chain-2":
            self._reply(301, b"", [("Location", "/ok")])
        elif self.path == "/empty":
            self.close_connection = True  # no bytes at all: curl's "Empty reply from server"
        elif self.path == "/truncated":
            # Fewer body bytes than promised, then FIN: curl's "transfer closed with N bytes remaining".
            self.wfile.write(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\npartial")
            self.close_connection = True
        elif self.path == "/reset":
            self.wfile.write(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\npartial")
            # Linger 0 makes close() send RST instead of FIN: curl's "Recv failure". The socket only
            # really closes once the handler's file objects on it are closed too.
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.rfile.close()
            self.connection.close()
            self.close_connection = True
        elif self.path == "/slow":
            time.sleep(3)
            try:
                self._reply(200, b"too late\n", [])
            except OSError:
                pass
        else:
            self._reply(404, b"not found\n", [])

    def do_POST(self) -> None:
        # BaseHTTPRequestHandler already sent "100 Continue" for "Expect: 100-continue".
        length = int(self.headers.get("Content-Length", "0"))
        self.rfile.read(length)
        self._reply(200, f"got {length} bytes\n".encode(), [])

    def _reply(self, status: int, body: bytes, headers: list[tuple[str, str]]) -> None:
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def start_server(closed_port: int, tls: ssl.SSLContext | None = None) -> ThreadingHTTPServer:
    server = ThreadingHTTPServer((LOCALHOST, 0), Upstream)
    server.daemon_threads = True
    server.closed_port = closed_port  # type: ignore[attr-defined]
    if tls is not None:
        server.socket = tls.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def unused_port() -> int:
    with socket.socket() as sock:
        sock.bind((LOCALHOST, 0))
        return sock.getsockname()[1]


def self_signed_context(workdir: Path) -> ssl.SSLContext:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "capture self-signed")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(LOCALHOST))]), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = workdir / "cert.pem", workdir / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_file, key_file)
    return context


def envoy_bootstrap() -> dict:
    """One listener: a direct 200 on /, and /dead routed to a cluster nobody listens for."""
    dead = "outbound|443||edition.cnn.com"
    hcm = {
        "@type": HCM_TYPE,
        "stat_prefix": "capture",
        "route_config": {
            "virtual_hosts": [
                {
                    "name": "all",
                    "domains": ["*"],
                    "routes": [
                        {"match": {"prefix": "/dead"}, "route": {"cluster": dead}},
                        {"match": {"prefix": "/"},
                         "direct_response": {"status": 200, "body": {"inline_string": "hi\n"}}},
                    ],
                }
            ]
        },
        "http_filters": [
            {
                "name": "envoy.filters.http.router",
                "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"},
            }
        ],
    }
    return {
        "admin": {"address": {"socket_address": {"address": LOCALHOST, "port_value": 0}}},
        "static_resources": {
            "listeners": [
                {
                    "name": "capture",
                    "address": {"socket_address": {"address": LOCALHOST, "port_value": 0}},
                    "filter_chains": [
                        {"filters": [{"name": "envoy.filters.network.http_connection_manager", "typed_config": hcm}]}
                    ],
                }
            ],
            "clusters": [
                {
                    "name": dead,
                    "type": "STATIC",
                    "connect_timeout": "1s",
                    "load_assignment": {
                        "cluster_name": dead,
                        "endpoints": [
                            {"lb_endpoints": [
                                {"endpoint": {"address": {"socket_address": {"address": LOCALHOST, "port_value": 1}}}}
                            ]}
                        ],
                    },
                }
            ],
        },
    }


def start_envoy(workdir: Path) -> tuple[subprocess.Popen, int]:
    bootstrap = workdir / "envoy.json"
    bootstrap.write_text(json.dumps(envoy_bootstrap()))
    address_file = workdir / "admin-address"
    process = subprocess.Popen(
        [str(find_envoy_binary()), "-c", str(bootstrap), "--disable-hot-restart", "--concurrency", "1",
         "-l", "warning", "--admin-address-path", str(address_file), "--log-path", str(workdir / "envoy.log")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    address = poll("Envoy admin address file", lambda: address_file.exists() and address_file.read_text().strip())
    with EnvoyAdmin(f"http://{address}") as admin:
        admin.wait_ready()
        port = admin.listener_addresses()["capture"][1]
    return process, port


def capture(case: str, argv: list[str]) -> None:
    env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
    done = subprocess.run(argv, capture_output=True, env=env, timeout=30, check=False)
    # Drop "unshare -n": the file records the curl command a suite would run.
    shown = argv[argv.index("curl"):]
    (HERE / f"{case}.argv").write_text(shlex.join(shown) + "\n")
    (HERE / f"{case}.stdout").write_bytes(done.stdout)
    (HERE / f"{case}.stderr").write_bytes(done.stderr)
    (HERE / f"{case}.rc").write_text(f"{done.returncode}\n")
    print(f"{case}: exit {done.returncode}, {len(done.stdout)} bytes of headers")


def main() -> None:
    if shutil.which("curl") is None:
        sys.exit("curl is not installed: apt-get install -y curl")
    workdir = Path(tempfile.mkdtemp(prefix="curl-capture-"))
    envoy = None
    try:
        closed = unused_port()
        plain = start_server(closed)
        secure = start_server(closed, tls=self_signed_context(workdir))
        envoy, envoy_port = start_envoy(workdir)
        http = f"http://{LOCALHOST}:{plain.server_address[1]}"
        https = f"https://{LOCALHOST}:{secure.server_address[1]}"
        via_envoy = f"http://{LOCALHOST}:{envoy_port}"
        upload = workdir / "upload.bin"
        upload.write_bytes(b"x" * 2048)

        capture("ok_200", curl_command(f"{http}/ok"))
        capture("redirect_chain_200", curl_command(f"{http}/chain"))
        capture("redirect_not_followed", curl_command(f"{http}/politics", follow=False))
        capture("redirect_then_tls_error", curl_command(f"{http}/politics"))
        capture("redirect_then_refused", curl_command(f"{http}/to-closed-port"))
        capture("connect_refused", curl_command(f"http://{LOCALHOST}:{closed}/"))
        capture("self_signed_cert", curl_command(f"{https}/ok"))
        capture("empty_reply", curl_command(f"{http}/empty"))
        capture("truncated_body", curl_command(f"{http}/truncated"))
        capture("reset_mid_body", curl_command(f"{http}/reset"))
        capture("timeout", curl_command(f"{http}/slow", max_time=1))
        capture(
            "continue_100",
            curl_command(f"{http}/upload", extra=["-H", "Expect: 100-continue", "--data-binary", f"@{upload}"]),
        )
        capture("write_out_http_code", curl_command(f"{http}/ok", extra=["-w", "%{http_code}"]))
        # The other idiom of the Istio docs: only the status code, no header dump.
        status_only = ["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "10"]
        capture("write_out_only", [*status_only, f"{http}/ok"])
        capture("write_out_only_refused", [*status_only, f"http://{LOCALHOST}:{closed}/"])
        capture("verbose_redirect_then_tls_error", curl_command(f"{http}/politics", extra=["-v"]))
        capture("verbose_without_header_dump",
                ["curl", "-sS", "-v", "-L", "-o", "/dev/null", "--max-time", "10", f"{http}/chain"])
        capture("http2_envoy_200", curl_command(f"{via_envoy}/", extra=["--http2-prior-knowledge"]))
        capture("envoy_503_dead_upstream", curl_command(f"{via_envoy}/dead"))
        if shutil.which("unshare") and os.geteuid() == 0:
            capture("resolve_failure", ["unshare", "-n", *curl_command("http://edition.cnn.com.invalid/")])
        else:
            print("resolve_failure: skipped (needs root and unshare); kept the old capture")
        plain.shutdown()
        secure.shutdown()
    finally:
        if envoy is not None:
            envoy.terminate()
            try:
                envoy.wait(timeout=10)
            except subprocess.TimeoutExpired:
                envoy.kill()
                envoy.wait()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
