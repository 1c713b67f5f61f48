"""The real istio-proxy: pilot-agent + upstream Envoy, as uid 1337, in a pod's namespace.

pilot-agent resolves everything relative to its working directory, exactly as it does in the
istio-proxy image rooted at /. So each pod gets a directory laid out like that image:
  etc/istio/config/mesh                        mesh config (proxy defaults)
  etc/istio/pod/labels                         pod labels, downward-API format
  var/run/secrets/workload-spiffe-credentials/ cert-chain.pem key.pem root-cert.pem: when present,
                                               pilot-agent serves them over SDS itself and talks to
                                               no CA (pkg/istio-agent/agent.go initSdsServer)
  var/lib/istio/envoy/envoy_bootstrap_tmpl.json  the bootstrap template from the Istio source
Sidecars also get the real `istio-iptables` REDIRECT rules, applied by `pilot-agent istio-iptables`
with the arguments Istio's injector gives istio-init.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import yaml

from harness.errors import HarnessError, HarnessFault
from harness.istio_binaries import IstioBinaries
from harness.local.istiod import ISTIOD_SAN
from harness.local.netns import Netns
from harness.local.processes import ManagedProcess
from harness.local.runstate import RunState
from harness.pki import CertAuthority, write_istio_cert_dir
from harness.wait import poll

if TYPE_CHECKING:
    from harness.envoy_admin import EnvoyAdmin

PROXY_UID = 1337
ADMIN_PORT = 15000
STATUS_PORT = 15021
ISTIO_IPTABLES_ARGS = [
    "-p",
    "15001",
    "-z",
    "15006",
    "-u",
    str(PROXY_UID),
    "-m",
    "REDIRECT",
    "-i",
    "*",
    "-x",
    "",
    "-b",
    "*",
    "-d",
    "15090,15021,15020",
]


@dataclass
class ProxySpec:
    kind: str  # "sidecar" or "router"
    namespace: str
    pod_name: str
    service_account: str
    labels: dict[str, str]
    address: str
    # A pod from the API server (node_agent.py): its istio-proxy container's arguments and its
    # environment as the kubelet resolves it; empty for the harness's own pods.
    args: tuple[str, ...] = ()
    container_env: tuple[tuple[str, str], ...] = ()


@dataclass
class IstioProxy:
    spec: ProxySpec
    netns: Netns
    binaries: IstioBinaries
    workdir: Path
    log_dir: Path
    mesh_config: dict
    process: ManagedProcess | None = field(default=None, init=False)
    _admin: EnvoyAdmin | None = field(default=None, init=False)
    _log_offset: int = field(default=0, init=False)
    _access_lines: list[str] = field(default_factory=list, init=False)

    @property
    def node_id(self) -> str:
        s = self.spec
        return f"{s.kind}~{s.address}~{s.pod_name}.{s.namespace}~{s.namespace}.svc.cluster.local"

    @property
    def log_path(self) -> Path:
        return self.log_dir / f"{self.spec.namespace}.{self.spec.pod_name}.istio-proxy.log"

    def prepare(self, mesh_ca: CertAuthority) -> None:
        root = self.workdir
        for sub in (
            "etc/istio/config",
            "etc/istio/pod",
            "etc/istio/proxy",
            "var/lib/istio/envoy",
            "var/lib/istio/data",
            "var/run/secrets/workload-spiffe-uds",
            "var/run/secrets/workload-spiffe-credentials",
            "var/run/secrets/credential-uds",
        ):
            (root / sub).mkdir(parents=True, exist_ok=True)
        (root / "etc/istio/config/mesh").write_text(yaml.safe_dump(self.mesh_config))
        (root / "etc/istio/pod/labels").write_text(
            "\n".join(f'{k}="{v}"' for k, v in sorted(self.spec.labels.items())) + "\n"
        )
        shutil.copyfile(self.binaries.bootstrap_template, root / "var/lib/istio/envoy/envoy_bootstrap_tmpl.json")
        write_istio_cert_dir(
            mesh_ca,
            self.spec.namespace,
            self.spec.service_account,
            root / "var/run/secrets/workload-spiffe-credentials",
        )
        for dirpath, _dirnames, filenames in os.walk(root):
            os.chown(dirpath, PROXY_UID, PROXY_UID)
            for name in filenames:
                os.chown(os.path.join(dirpath, name), PROXY_UID, PROXY_UID)
        # uid 1337 must traverse the directories above the pod's.
        for parent in root.parents:
            if parent == Path("/tmp") or parent == Path("/"):
                break
            os.chmod(parent, os.stat(parent).st_mode | 0o111)

    def apply_iptables(self) -> None:
        result = self.netns.exec([str(self.binaries.pilot_agent), "istio-iptables", *ISTIO_IPTABLES_ARGS], timeout=30)
        if not result.ok:
            raise HarnessError(
                f"istio-iptables failed in {self.spec.namespace}/{self.spec.pod_name}: "
                f"{(result.stderr or result.stdout).strip().splitlines()[-1:]} (is iptables installed? apt-get install iptables)"
            )
        (self.log_dir / f"{self.spec.namespace}.{self.spec.pod_name}.istio-iptables.log").write_text(
            result.stdout + result.stderr
        )

    def start(self, state: RunState) -> None:
        s = self.spec
        env = {
            "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
            "HOME": str(self.workdir),
            "POD_NAME": s.pod_name,
            "POD_NAMESPACE": s.namespace,
            "INSTANCE_IP": s.address,
            "SERVICE_ACCOUNT": s.service_account,
            "HOST_IP": s.address,
            "ISTIO_META_CLUSTER_ID": "Kubernetes",
            "ISTIO_META_MESH_ID": "cluster.local",
            "TRUST_DOMAIN": "cluster.local",
            "ISTIO_META_WORKLOAD_NAME": s.labels.get("app", s.pod_name),
            "ISTIO_META_OWNER": f"kubernetes://apis/apps/v1/namespaces/{s.namespace}/deployments/{s.labels.get('app', s.pod_name)}",
            "ISTIO_META_INTERCEPTION_MODE": "REDIRECT",
            "PROXY_CONFIG": json.dumps({"binaryPath": str(self.binaries.envoy)}),
            "ISTIO_META_DNS_CAPTURE": "false",
            # xDS over mutual TLS when the mesh config says MUTUAL_TLS: the workload certificate
            # (PROV_CERT: cert-chain.pem, key.pem, root-cert.pem) is the client certificate, and
            # istiod's serving certificate must name ISTIOD_SAN (pkg/istio-agent/agent.go).
            "PROV_CERT": str(self.workdir / "var/run/secrets/workload-spiffe-credentials"),
            "ISTIOD_SAN": ISTIOD_SAN,
        }
        args = [
            "proxy",
            s.kind,
            "--concurrency",
            "1",
            "--proxyLogLevel",
            "warning",
            "--log_output_level",
            "default:info",
        ]
        if s.args:
            # The container's own environment and arguments, as the Deployment says; what stands
            # in for the proxyv2 image's file system (the binaries, the certificates, the bootstrap
            # template's place) stays the harness's.
            local = {k: env[k] for k in ("PATH", "HOME", "PROV_CERT", "ISTIOD_SAN")}
            proxy_config = json.loads(dict(s.container_env).get("PROXY_CONFIG") or "{}")
            env = {**env, **dict(s.container_env), **local}
            env["PROXY_CONFIG"] = json.dumps({**proxy_config, "binaryPath": str(self.binaries.envoy)})
            args = [expand_env(a, env) for a in s.args]
        argv = self.netns.wrap(
            [
                str(self.binaries.pilot_agent),
                *args,
                "--templateFile",
                str(self.workdir / "var/lib/istio/envoy/envoy_bootstrap_tmpl.json"),
            ],
            uid=PROXY_UID,
        )
        self.process = ManagedProcess(
            f"istio-proxy {s.namespace}/{s.pod_name}",
            argv,
            self.log_path,
            env=env,
            cwd=self.workdir,
            log_owner=PROXY_UID,
        )
        self.process.start(state)

    def status_client(self) -> httpx.Client:
        return httpx.Client(
            base_url=f"http://127.0.0.1:{STATUS_PORT}",
            transport=self.netns.http_transport(),
            timeout=2.0,
            trust_env=False,
        )

    def wait_ready(self, timeout: float = 20.0) -> None:
        """pilot-agent's /healthz/ready turns 200 once Envoy has its first listeners and clusters."""
        process = self.process
        if process is None:
            raise HarnessFault(f"istio-proxy {self.spec.namespace}/{self.spec.pod_name}: wait_ready() before start()")
        with self.status_client() as client:

            def probe() -> int:
                if not process.alive():
                    raise HarnessError(f"{process.name} died: {process.exit_summary()}")
                return client.get("/healthz/ready").status_code

            try:
                poll(
                    f"{self.spec.namespace}/{self.spec.pod_name} istio-proxy ready (GET :15021/healthz/ready = 200)",
                    probe,
                    ok=lambda code: code == 200,
                    timeout=timeout,
                    interval=0.05,
                )
            except HarnessError:
                raise

    @property
    def admin(self) -> EnvoyAdmin:
        from harness.envoy_admin import EnvoyAdmin

        if self._admin is None:
            self._admin = EnvoyAdmin(f"http://127.0.0.1:{ADMIN_PORT}", transport=self.netns.http_transport())
        return self._admin

    def stop(self) -> None:
        if self._admin is not None:
            self._admin.close()
            self._admin = None
        if self.process is not None:
            self.process.stop(grace=2.0)

    def access_log_lines(self) -> list[str]:
        """Envoy's access log goes to stdout (mesh accessLogFile), into the proxy log; its lines
        are JSON objects, unlike Envoy's and pilot-agent's own log lines."""
        # Waits poll this every 50 ms over a log that grows all session: read only what is new,
        # up to the last complete line.
        try:
            with open(self.log_path, "rb") as log:
                log.seek(self._log_offset)
                chunk = log.read()
        except OSError:
            return list(self._access_lines)
        complete = chunk[: chunk.rfind(b"\n") + 1]
        self._log_offset += len(complete)
        self._access_lines += [line for line in complete.decode(errors="replace").splitlines() if line.startswith("{")]
        return list(self._access_lines)


def expand_env(arg: str, env: dict[str, str]) -> str:
    """A container argument's `$(VAR)` references, expanded as the kubelet does (unknown ones kept)."""
    return re.sub(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)", lambda m: env.get(m.group(1), m.group(0)), arg)


def stage_proxy_binaries(binaries: IstioBinaries, bin_dir: Path) -> IstioBinaries:
    """pilot-agent and Envoy of `binaries` where uid 1337 can run them: the proxies cannot enter a
    root-only cache (~root is 0700), so they get hard links (copies across file systems) in
    `bin_dir`, under the run's directory. Staging the same version twice reuses the first."""
    bin_dir.mkdir(exist_ok=True)
    os.chmod(bin_dir, 0o755)
    staged = {}
    for name, src in (("pilot-agent", binaries.pilot_agent), ("envoy", binaries.envoy)):
        dest = bin_dir / name
        if not dest.exists():
            try:
                os.link(src, dest)
            except OSError:
                shutil.copy2(src, dest)
            os.chmod(dest, 0o755)
        staged[name] = dest
    return dataclasses.replace(binaries, pilot_agent=staged["pilot-agent"], envoy=staged["envoy"])
