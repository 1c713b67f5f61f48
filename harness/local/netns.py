"""Named network namespaces: create, delete, run commands in them, and open sockets inside them.

The harness process itself stays in the host namespace. To talk to a port that only exists inside
a pod (Envoy's admin on 127.0.0.1:15000, the stand-in's control port), a short-lived thread enters
the namespace, creates the socket there and leaves; a socket belongs to the namespace it was
created in, so it can be used from any thread afterwards and nothing pins the namespace.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import socket
import subprocess
import threading
from pathlib import Path

import httpcore
import httpx
from httpcore._backends.sync import SyncStream

from harness.errors import HarnessError, HarnessFault
from harness.exec_result import ExecResult
from harness.system_packages import host_path

NETNS_DIR = Path("/var/run/netns")
ETC_NETNS_DIR = Path("/etc/netns")
_CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)


# The PATH a container runtime gives a container whose image sets none (containerd's default).
POD_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def pod_env(hostname: str, **extra: str) -> dict[str, str]:
    """The environment of a process in a pod: what Kubernetes gives a container (PATH, HOSTNAME,
    HOME) plus what its spec sets, and nothing of the user's shell. DRY_RUN would put
    istio-iptables in dry-run mode, http_proxy or CURL_CA_BUNDLE would change what curl does."""
    return {"PATH": POD_PATH, "HOSTNAME": hostname, "HOME": "/root", **extra}


def host_env() -> dict[str, str]:
    """For the host's own commands (ip, iptables-restore): a PATH with sbin, nothing else."""
    return {"PATH": host_path(), "LC_ALL": "C"}


def run_host(argv: list[str], *, check: bool = True, timeout: float = 30.0, input: str | None = None) -> ExecResult:
    """Run a host command (ip, iptables-restore …); on failure raise with its stderr."""
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, input=input, env=host_env())
    except FileNotFoundError:
        raise HarnessError(
            f"command not found: {argv[0]} (install it, e.g. apt-get install iproute2 iptables)"
        ) from None
    result = ExecResult(tuple(argv), proc.returncode, proc.stdout, proc.stderr)
    if check and proc.returncode != 0:
        raise HarnessFault(f"{' '.join(argv)} failed with exit {proc.returncode}: {proc.stderr.strip()}")
    return result


class Netns:
    """One named network namespace (`ip netns add`), with its own /etc/netns/<name>/ files.
    Commands run in it get `env` (a pod's environment), never the harness's own."""

    def __init__(self, name: str, hostname: str | None = None):
        self.name = name
        self.env = pod_env(hostname or name)

    @property
    def path(self) -> Path:
        return NETNS_DIR / self.name

    @property
    def etc_dir(self) -> Path:
        return ETC_NETNS_DIR / self.name

    def create(self) -> None:
        run_host(["ip", "netns", "add", self.name])
        self.ip("link", "set", "lo", "up")

    def exists(self) -> bool:
        return self.path.exists()

    def delete(self) -> None:
        if self.exists():
            run_host(["ip", "netns", "delete", self.name], check=False)
        shutil.rmtree(self.etc_dir, ignore_errors=True)

    def write_etc(self, filename: str, content: str) -> None:
        """Files here are bind-mounted over /etc/<filename> by `ip netns exec` (hosts, resolv.conf)."""
        self.etc_dir.mkdir(parents=True, exist_ok=True)
        (self.etc_dir / filename).write_text(content)

    def ip(self, *args: str) -> ExecResult:
        return run_host(["ip", "-n", self.name, *args])

    def sysctl(self, key: str, value: str) -> None:
        # /proc/sys/net is per network namespace: write it from inside.
        result = self.exec(["sysctl", "-q", "-w", f"{key}={value}"])
        if not result.ok:
            raise HarnessFault(f"sysctl {key}={value} in netns {self.name} failed: {result.stderr.strip()}")

    def wrap(self, argv: list[str], *, uid: int | None = None) -> list[str]:
        """The argv that runs `argv` inside this namespace (optionally as uid/gid `uid`)."""
        prefix = ["ip", "netns", "exec", self.name]
        if uid is not None:
            prefix += ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups", "--"]
        return prefix + list(argv)

    def exec(
        self, argv: list[str], *, timeout: float = 30.0, uid: int | None = None, input: str | None = None
    ) -> ExecResult:
        try:
            proc = subprocess.run(
                self.wrap(argv, uid=uid), capture_output=True, text=True, timeout=timeout, input=input, env=self.env
            )
        except subprocess.TimeoutExpired as exc:
            out = exc.stdout.decode(errors="replace") if isinstance(exc.stdout, bytes) else (exc.stdout or "")
            err = exc.stderr.decode(errors="replace") if isinstance(exc.stderr, bytes) else (exc.stderr or "")
            return ExecResult(tuple(argv), 124, out, err + f"\n[harness] killed after {timeout}s")
        return ExecResult(tuple(argv), proc.returncode, proc.stdout, proc.stderr)

    def socket(self, family: int = socket.AF_INET, type: int = socket.SOCK_STREAM) -> socket.socket:
        return socket_in_netns(self.path, family, type)

    def http_transport(self) -> httpx.HTTPTransport:
        return netns_transport(self)


def socket_in_netns(ns_path: Path, family: int = socket.AF_INET, type: int = socket.SOCK_STREAM) -> socket.socket:
    box: dict[str, object] = {}

    def enter_and_create() -> None:
        try:
            fd = os.open(ns_path, os.O_RDONLY)
            try:
                if _libc.setns(fd, _CLONE_NEWNET) != 0:
                    err = ctypes.get_errno()
                    raise OSError(err, f"setns({ns_path}): {os.strerror(err)}")
            finally:
                os.close(fd)
            box["sock"] = socket.socket(family, type)
        except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread
            box["error"] = exc

    t = threading.Thread(target=enter_and_create, name=f"netns-socket:{ns_path.name}")
    t.start()
    t.join()
    if "error" in box:
        raise box["error"]  # type: ignore[misc]
    return box["sock"]  # type: ignore[return-value]


class _NetnsNetworkBackend(httpcore.NetworkBackend):
    def __init__(self, ns: Netns):
        self._ns = ns

    def connect_tcp(self, host, port, timeout=None, local_address=None, socket_options=None):
        try:
            sock = self._ns.socket()
            sock.settimeout(timeout)
            sock.connect((host, port))
        except TimeoutError as exc:
            raise httpcore.ConnectTimeout(f"{host}:{port} in netns {self._ns.name}: {exc}") from exc
        except OSError as exc:
            raise httpcore.ConnectError(f"{host}:{port} in netns {self._ns.name}: {exc}") from exc
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return SyncStream(sock)

    def connect_unix_socket(self, path, timeout=None, socket_options=None):  # pragma: no cover
        raise httpcore.ConnectError("unix sockets are not namespaced; use a plain transport")

    def sleep(self, seconds: float) -> None:  # pragma: no cover
        import time

        time.sleep(seconds)


def netns_transport(ns: Netns) -> httpx.HTTPTransport:
    """An httpx transport whose TCP connections are opened inside `ns`."""
    # trust_env=False: the harness's own clients ignore the user's SSL_CERT_FILE and proxies too.
    transport = httpx.HTTPTransport(trust_env=False)
    # httpx has no public hook for the network backend; its pool is the documented httpcore one.
    transport._pool = httpcore.ConnectionPool(network_backend=_NetnsNetworkBackend(ns))
    return transport
