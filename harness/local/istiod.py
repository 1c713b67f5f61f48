"""The real istiod (pilot-discovery) in its own pod namespace, on its Kubernetes registry.

istiod reads Istio config from the CRDs on the local mesh's real API server (apiserver.py), and
Services, Pods and EndpointSlices from it, as on a cluster. (`config_dir` adds `--configDir`, a
file source, for experiments; the mesh does not use it.) The proxies' xDS is mutual TLS on 15012
with istiod's serving certificate from the harness's mesh root (IstiodTLS; plaintext ADS on 15010
when no TLS is given); no CA server and no webhook port: workload certificates come from that root
too. Flags read in pilot/cmd/pilot-discovery/app/cmd.go.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import yaml

from harness.errors import HarnessError, HopFailure, ProcessExited
from harness.local.netns import Netns
from harness.local.processes import ManagedProcess
from harness.local.runstate import RunState
from harness.meshconfig import mesh_config as shared_mesh_config
from harness.trace import CONTROL_PLANE
from harness.wait import poll

XDS_PORT = 15010
SECURE_XDS_PORT = 15012
# The name in istiod's serving certificate that proxies verify (ISTIOD_SAN), as on a cluster.
ISTIOD_SAN = "istiod.istio-system.svc"
DEBUG_PORT = 8080
# One read of a debug endpoint; a read that times out is tried again until the caller's deadline.
READ_TIMEOUT = 5.0

# Filters only Istio's own Envoy build has; upstream Envoy would reject the config that uses them.
_STOCK_ENVOY_FEATURES = {
    "PILOT_ENABLE_METADATA_EXCHANGE": "false",
    "PILOT_ENABLE_ALPN_FILTER": "false",
}


def mesh_config(istiod_address: str, *, secure: bool = False) -> dict:
    """Proxies' mesh config. secure: xDS over mutual TLS on 15012 (each proxy presents its workload
    certificate), as on a cluster. istiod gives credentialName secrets (SDS) only to a proxy whose
    identity it verified that way (pilot/pkg/xds/sds.go, VerifiedIdentity)."""
    if not secure:
        return shared_mesh_config(f"{istiod_address}:{XDS_PORT}")
    config = shared_mesh_config(f"{istiod_address}:{SECURE_XDS_PORT}")
    config["defaultConfig"]["controlPlaneAuthPolicy"] = "MUTUAL_TLS"
    return config


@dataclass(frozen=True)
class IstiodTLS:
    """istiod's serving certificate for 15012 and the root it verifies proxies' certificates with."""

    cert_chain: Path
    key: Path
    ca_cert: Path


class Istiod:
    def __init__(
        self,
        netns: Netns,
        address: str,
        binary: Path,
        workdir: Path,
        config_dir: Path | None,
        log_dir: Path,
        kubeconfig: Path,
        tls: IstiodTLS | None = None,
        injection: dict[str, str] | None = None,
    ):
        self.netns = netns
        self.address = address
        self.binary = binary
        self.workdir = workdir
        self.config_dir = config_dir
        self.mesh_file = workdir / "mesh.yaml"
        self.kubeconfig = kubeconfig
        self.tls = tls
        self.secure = tls is not None
        # The injector's `config` and `values` (injector.py): the deployment controller renders
        # a Gateway API Gateway's Deployment from them.
        self.injection = injection
        self.process = ManagedProcess(
            "istiod",
            netns.wrap(
                [
                    str(binary),
                    "discovery",
                    "--registries=Kubernetes",
                    f"--kubeconfig={kubeconfig}",
                    *([f"--configDir={config_dir}"] if config_dir is not None else []),
                    f"--meshConfig={self.mesh_file}",
                    f"--networksConfig={workdir / 'meshNetworks.yaml'}",
                    *(
                        [
                            f"--secureGRPCAddr=:{SECURE_XDS_PORT}",
                            f"--tlsCertFile={tls.cert_chain}",
                            f"--tlsKeyFile={tls.key}",
                            f"--caCertFile={tls.ca_cert}",
                        ]
                        if tls
                        else ["--secureGRPCAddr="]
                    ),
                    "--httpsAddr=",
                    f"--grpcAddr=:{XDS_PORT}",
                    f"--httpAddr=127.0.0.1:{DEBUG_PORT}",
                    "--domain=cluster.local",
                    "--log_output_level=default:info",
                ]
            ),
            log_dir / "istiod.log",
            env={
                "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
                "POD_NAMESPACE": "istio-system",
                "POD_NAME": "istiod",
                "ENABLE_CA_SERVER": "false",
                "PILOT_ENABLE_ANALYSIS": "false",
                # Push 10 ms after a change instead of 100 ms: the harness applies a change as one
                # server-side apply burst, so there is no stream of events to wait out.
                "PILOT_DEBOUNCE_AFTER": "10ms",
                **_STOCK_ENVOY_FEATURES,
            },
            cwd=workdir,
        )
        self._client: httpx.Client | None = None

    def start(self, state: RunState) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        if self.config_dir is not None:
            self.config_dir.mkdir(parents=True, exist_ok=True)
        self.mesh_file.write_text(yaml.safe_dump(mesh_config(self.address, secure=self.secure)))
        (self.workdir / "meshNetworks.yaml").write_text("networks: {}\n")
        if self.injection:
            from harness.local.injector import INJECT_DIR

            inject = self.workdir / INJECT_DIR
            inject.mkdir(parents=True, exist_ok=True)
            for key, text in self.injection.items():
                (inject / key).write_text(text)
        self.process.start(state)

    def wait_ready(self, timeout: float = 20.0) -> None:
        def probe() -> bool:
            if not self.process.alive():
                raise HarnessError(f"istiod did not start: {self.process.exit_summary()}")
            sock = self.netns.socket()
            sock.settimeout(0.5)
            try:
                return sock.connect_ex((self.address, XDS_PORT)) == 0
            finally:
                sock.close()

        try:
            poll("istiod to accept xDS connections on :15010", probe, timeout=timeout, interval=0.05)
        except HarnessError:
            raise
        poll("istiod's debug endpoint", lambda: self.debug("/debug/syncz") is not None, timeout=timeout)

    @property
    def client(self) -> httpx.Client:
        if self._client is None:
            self._client = httpx.Client(
                base_url=f"http://127.0.0.1:{DEBUG_PORT}",
                transport=self.netns.http_transport(),
                timeout=5.0,
                trust_env=False,
            )
        return self._client

    def debug(self, path: str, **params: str):
        """One read (READ_TIMEOUT); its httpx error as it is (for polls that retry it themselves)."""
        resp = self.client.get(path, params=params)
        resp.raise_for_status()
        return resp.json() if resp.content else None

    def read(self, path: str, deadline: float | None = None):
        """A debug endpoint read until `deadline` (time.monotonic()): see read_debug."""
        if deadline is None:
            deadline = time.monotonic() + READ_TIMEOUT
        return read_debug(self.client, path, self.process, deadline=deadline)

    def syncz(self, deadline: float | None = None) -> list[dict]:
        return self.read("/debug/syncz", deadline) or []

    def configz(self, deadline: float | None = None) -> list[dict]:
        return self.read("/debug/configz", deadline) or []

    def stop(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None
        self.process.stop(grace=2.0)


def read_debug(
    client: httpx.Client,
    path: str,
    process: ManagedProcess,
    *,
    deadline: float,
    attempt_timeout: float = READ_TIMEOUT,
):
    """GET one of istiod's debug endpoints, tried again until `deadline` when a read times out,
    the connection fails or istiod answers 5xx (a paused or busy istiod answers late, a restarting
    one refuses). Never a raw httpx error: istiod gone is a HarnessFault (its exit and log tail),
    istiod alive but silent until the deadline a control-plane HopFailure; both one line, naming
    istiod and the endpoint."""
    url = f"{str(client.base_url).rstrip('/')}{path}"
    started = time.monotonic()
    attempts: list[str] = []
    while True:
        remaining = deadline - time.monotonic()
        try:
            resp = client.get(path, timeout=max(0.2, min(attempt_timeout, remaining)))
            if resp.status_code < 500:
                resp.raise_for_status()
                return resp.json() if resp.content else None
            attempts.append(f"HTTP {resp.status_code}")
        except httpx.TransportError as exc:
            attempts.append(type(exc).__name__)
        if not process.alive():
            raise ProcessExited(f"{process.exit_line('istiod')} (while the harness read GET {url})")
        if time.monotonic() >= deadline:
            break
        time.sleep(min(0.05, max(0.0, deadline - time.monotonic())))
    seen = ", ".join(f"{n}× {a}" if n > 1 else a for a, n in _runs(attempts))
    raise HopFailure(
        CONTROL_PLANE,
        f"istiod (pid {process.pid}, {process.run_state()}) did not answer GET {url} within "
        f"{time.monotonic() - started:.1f}s ({len(attempts)} attempts: {seen}; each read waits "
        f"{attempt_timeout:.0f}s): it runs but does not serve, so no proxy's config can be confirmed",
        one_line=True,
    )


def _runs(items: list[str]) -> list[tuple[str, int]]:
    """Consecutive repeats folded: [a, a, b] → [(a, 2), (b, 1)]."""
    out: list[tuple[str, int]] = []
    for item in items:
        if out and out[-1][0] == item:
            out[-1] = (item, out[-1][1] + 1)
        else:
            out.append((item, 1))
    return out
