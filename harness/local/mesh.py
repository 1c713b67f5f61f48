"""The local backend: a pocket cluster of network namespaces running the real Istio.

Pods (each a network namespace with its own address, see fabric.py):
  istio-system/istiod                  pilot-discovery, and beside it the real etcd and kube-apiserver
                                       (apiserver.py, kube_registry.py): Istio config, Namespaces,
                                       Pods, the gateway's Service and EndpointSlice live there
  istio-system/istio-egressgateway     pilot-agent in router mode
  default/sleep                        curl + sidecar (pilot-agent + Envoy as uid 1337, istio-iptables)
  test-egress/sleep                    curl, no sidecar until redeployed with one
  internet: edition.cnn.com            mock_upstream on 203.0.113.10, outside the mesh
Names are prefixed with a per-run id, so two runs coexist; nothing routes off the machine.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from harness import gateway_api, sites, watchdog
from harness.console import say as _say_to_stderr
from harness.converge import wait_endpoints
from harness.errors import HarnessError, HarnessFault, ProcessExited
from harness.exec_result import ExecResult
from harness.gateway_api import GATEWAY_NAME_LABEL, deployed_service_host, is_deployed_gateway
from harness.istio_binaries import IstioBinaries
from harness.local import netpol
from harness.local.apiserver import KubeControlPlane, seed_dir
from harness.local.convergence import Convergence
from harness.local.fabric import Fabric
from harness.local.injector import injection_data
from harness.local.istiod import ISTIOD_SAN, Istiod, IstiodTLS, mesh_config
from harness.local.kube_registry import KubeRegistry, mesh_crd_file
from harness.local.netns import ETC_NETNS_DIR, POD_PATH, Netns
from harness.local.node_agent import NodeAgent
from harness.local.pods import Pod, stage_gateway_trust, write_pod_etc
from harness.local.processes import ManagedProcess
from harness.local.proxy import IstioProxy, ProxySpec, stage_proxy_binaries
from harness.local.reaper import start_watchdog
from harness.local.runstate import STATE_ROOT, RunState, reap_stale_runs
from harness.pki import RunPKI
from harness.pod_table import GATEWAY_POD, PODS, PodSpec, namespaces
from harness.project_files import MOCK_UPSTREAM
from harness.stand_in import CONTROL_TOKEN_ENV, UPSTREAM_PORTS, site_certificates, upstream_command
from harness.sync import is_mesh_config
from harness.system_packages import find_command
from harness.upstream_client import UpstreamClient
from harness.wait import poll

REQUIRED_COMMANDS = {
    "ip": "iproute2",
    "iptables": "iptables",
    "iptables-restore": "iptables",
    "setpriv": "util-linux",
    "curl": "curl",
    "openssl": "openssl",
}
# istiod is the local mesh's own pod (on Kubernetes, istioctl installs it): not in the suites' table.
ISTIOD_POD = PodSpec(
    "istio-system",
    "istiod",
    "istiod",
    None,
    "discovery",
    {"app": "istiod", "istio": "pilot", "istio.io/rev": "default"},
)
__all__ = ["LocalMesh", "preflight"]


def _remove_if_empty(directory: Path) -> None:
    """/run/egress-harness and /etc/netns, once the last run is gone (ip netns would make them again)."""
    try:
        directory.rmdir()
    except OSError:
        pass


def preflight() -> None:
    """Everything checked before anything is started: one line each, naming the fix."""
    if os.geteuid() != 0:
        raise HarnessError(
            "the local mesh needs root or a user namespace for network namespaces and iptables: "
            "run 'make e2e' (it enters a user namespace when it can) or 'sudo make e2e'"
        )
    missing = [f"{cmd} (apt-get install {pkg})" for cmd, pkg in REQUIRED_COMMANDS.items() if not find_command(cmd)]
    if missing:
        raise HarnessError(f"missing commands: {', '.join(missing)}")
    if not Path("/proc/self/ns/net").exists():
        raise HarnessError("this kernel has no network namespaces; use BACKEND=kind")


@dataclass
class LocalMesh:
    binaries: IstioBinaries
    artifacts: Path
    say: Callable[[str], None] = _say_to_stderr  # lines the user must see (not captured by pytest)
    run_id: str = field(default_factory=lambda: secrets.token_hex(3))
    # Which channel of the Gateway API's CRDs the API server has (gateway_api.CHANNEL: the one the
    # doc's TLSRoute needs); "standard" reproduces a cluster that installed only that one.
    gateway_api_channel: str = gateway_api.CHANNEL
    name: str = field(default="local", init=False)
    pods: dict[str, Pod] = field(default_factory=dict, init=False)
    namespace_labels: dict[str, dict[str, str]] = field(default_factory=dict, init=False)

    def __post_init__(self) -> None:
        self.state = RunState(self.run_id)
        # Keys and pod files live beside the run's state, on /run: a tmpfs, and private to the
        # user namespace of a rootless run, so they vanish with it even after SIGKILL.
        self.workdir = self.state.directory / "work"
        self.log_dir = self.artifacts / "mesh-logs"
        self.fabric = Fabric(self.run_id)
        self.pki: RunPKI | None = None
        self.istiod: Istiod | None = None
        self.upstream_process: ManagedProcess | None = None
        self.upstream_address = ""
        # The stand-in's control API listens on 127.0.0.1 of its own namespace (no pod reaches
        # it) and answers only this run's token.
        self.upstream_token = secrets.token_urlsafe(24)
        self._upstream_client: UpstreamClient | None = None
        self._watchdog: tuple[subprocess.Popen, int] | None = None
        self._policies: dict[tuple[str, str], netpol.EgressPolicy] = {}
        # The real etcd + kube-apiserver (apiserver.py) and what the mesh keeps there
        # (kube_registry.py): `manifests` is the one apply path, kubectl through the API server.
        self.control_plane = KubeControlPlane(self.workdir / "kube", self.log_dir)
        self.registry = KubeRegistry(self.control_plane, self.binaries.istioctl)
        self.manifests = self.registry
        self._trust: dict = {}
        self._trust_files: dict = {}
        self._unsettled: list[dict] = []
        # Whole from the start (it only holds the mesh and counters); it reaches istiod through
        # running_istiod, which says so if it is used before start().
        self.convergence = Convergence(self)
        self.timings: dict[str, float] = {}
        # What the node agent's thread and the harness both change: pods, the hub, its rules.
        self.lock = threading.RLock()
        self._own_pods: set[str] = set()  # registered by the harness itself (pod table, istiod)
        self.node_agent = NodeAgent(self, lambda: set(self._own_pods))

    # ---------------------------------------------------------------- lifecycle
    def start(self) -> None:
        preflight()
        for line in reap_stale_runs():
            self.say(f"cleaned up after a dead run: {line}")
        t0 = self._t0 = time.monotonic()
        self.state.save()
        self._watchdog = start_watchdog(self.state.file)
        self.state.add_path(self.workdir)
        self.workdir.mkdir(parents=True)
        for d in (STATE_ROOT, self.state.directory, self.workdir):
            os.chmod(d, 0o711)  # the proxies (uid 1337) pass through to their own directories
        # The artifacts folder is this run's (the plugin holds its lock): no old run's lines.
        shutil.rmtree(self.log_dir, ignore_errors=True)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.pki = RunPKI(self.workdir / "pki")
        self._stage_binaries()

        self._add_netns(self.fabric.hub)
        self.fabric.create()
        self.upstream_address = self.fabric.allocate(internet=True)
        for ns in namespaces():
            self.namespace_labels[ns] = {}

        istiod_pod = self.new_pod(ISTIOD_POD)
        # etcd and kube-apiserver boot while the stand-in upstream and the pods' namespaces are made.
        self._crd_file = mesh_crd_file(self.binaries, self.gateway_api_channel)
        self._seed = seed_dir(self._crd_file, self.control_plane.apiserver_bin, self.control_plane.etcd_bin)
        self.control_plane.start(istiod_pod.netns, self.state, seed=self._seed)
        self._start_upstream()
        pods = [(spec, self.new_pod(spec)) for spec in PODS.values()]
        istiod = self._start_istiod(istiod_pod)
        for spec, pod in pods:
            self._register_pod(pod, spec.container, sidecar=spec.proxy == "sidecar")
            if spec.proxy:
                self._attach_proxy(pod, spec.proxy, start=False)
            if spec is GATEWAY_POD:
                assert pod.proxy is not None
                # The seed's file-mounted trust stays staged; the stages use credentialName Secrets,
                # as on Kubernetes and in istio.io's current task.
                self._trust_files = stage_gateway_trust(self.pki, pod.proxy.workdir / "etc" / "egress-trust")
                self._trust = self._create_trust_secrets(self._trust_files)
        istiod.wait_ready()
        self.timings["istiod_ready"] = time.monotonic() - t0
        # The proxies start once istiod listens (everything else of theirs is ready): started
        # earlier, Envoy's first ADS stream fails and its jittered backoff held a sidecar back by
        # up to 2.3 s after istiod was up.
        proxies = [pod.proxy for pod in self.pods.values() if pod.proxy is not None]
        for proxy in proxies:
            proxy.start(self.state)
        for proxy in proxies:
            proxy.wait_ready()
        poll("mock_upstream's control port", self._upstream().healthz, timeout=10)
        self.timings["cold_start"] = time.monotonic() - t0
        # The controllers and the node agent run what the API server is given (istiod's
        # Deployments for Gateway API Gateways, a user's own); nothing of the seed's waits on them.
        self.control_plane.start_controllers(self.state)
        self.node_agent.start()

    @property
    def running_istiod(self) -> Istiod:
        """istiod, for what needs it running (convergence): a HarnessFault, not an AttributeError
        on None, if something asks for it before start()."""
        if self.istiod is None:
            raise HarnessFault("the local mesh's istiod was asked for before LocalMesh.start()")
        return self.istiod

    def stop(self) -> None:
        """Tear everything down; safe to call twice and after a partial start."""
        errors: list[str] = []
        self.node_agent.stop()
        if self._upstream_client is not None:
            self._upstream_client.close()
        for pod in list(self.pods.values()):
            if pod.proxy is not None:
                pod.proxy.stop()
        if self.istiod is not None:
            self.istiod.stop()
        self.registry.close()
        self.control_plane.stop()
        if self.upstream_process is not None:
            self.upstream_process.stop(grace=1.0)
        for name in reversed(self.state.netns):
            Netns(name).delete()
        self.pods.clear()
        self.fabric.destroy()
        if self.pki is not None:
            self.pki.cleanup()
        shutil.rmtree(self.workdir, ignore_errors=True)
        for name in self.state.netns:
            if Path("/var/run/netns", name).exists():
                errors.append(f"netns {name} still exists")
        self.state.forget()
        for d in (STATE_ROOT, ETC_NETNS_DIR):
            _remove_if_empty(d)
        if self._watchdog is not None:
            watchdog.release(self._watchdog, timeout=5)  # it finds nothing left and exits
            self._watchdog = None
        if errors:
            raise HarnessFault("teardown left: " + "; ".join(errors))

    # ---------------------------------------------------------------- building blocks
    def _stage_binaries(self) -> None:
        self.binaries = stage_proxy_binaries(self.binaries, self.workdir / "bin")

    def _add_netns(self, ns: Netns) -> None:
        self.state.add_netns(ns.name)

    def new_pod(self, spec: PodSpec, *, netns_name: str | None = None) -> Pod:
        """A pod of the mesh: its network namespace on the hub, its address and /etc files. No
        proxy yet (attach_proxy) and nothing on the API server (the caller registers it)."""
        assert self.pki is not None
        with self.lock:
            ns = Netns(netns_name or f"eh-{self.run_id}-{spec.namespace}-{spec.name}"[:60], hostname=spec.name)
            self._add_netns(ns)
            ns.create()
            address = self.fabric.allocate()
            ep = self.fabric.plug(ns, address)
            write_pod_etc(
                ns, spec.name, address, self.upstream_address, self.pki.public_ca.cert_pem, sites.resolved_names()
            )
            pod = Pod(
                spec.namespace,
                spec.name,
                dict(spec.labels),
                spec.service_account,
                ns,
                address,
                ep.hub_ifname,
                container=spec.container,
            )
            self.pods[pod.key] = pod
            if self._policies:  # a pod made while NetworkPolicy is in force is under it at once
                self._sync_policies()
            return pod

    def remove_pod(self, pod: Pod) -> None:
        """Stop the pod's proxy and remove its namespace (a pod the node agent ran, deleted)."""
        with self.lock:
            if pod.proxy is not None:
                pod.proxy.stop()
            self.fabric.unplug(pod.netns)
            pod.netns.delete()
            if self.pods.get(pod.key) is pod:
                del self.pods[pod.key]
            self._publish_pods()
            if self._policies:
                self._sync_policies()

    def _start_istiod(self, pod: Pod) -> Istiod:
        """Once the API server is ready: Istio's CRDs, the namespaces, istiod's own Pod; then
        istiod on its Kubernetes registry alone (no --configDir)."""
        self.control_plane.wait_ready()
        self.timings["apiserver_ready"] = time.monotonic() - self._t0
        self.registry.install_crds(
            self._crd_file, self._seed.with_name(self._seed.name + ".served.json"), present=self.control_plane.seeded
        )
        if not self.control_plane.seeded:
            self.control_plane.save_seed(self._seed, self.state)
            self.registry.close()  # its connections were to the API server before the restart
        self.timings["crds_established"] = time.monotonic() - self._t0
        self.registry.register_node()
        for ns, labels in self.namespace_labels.items():
            self.registry.set_namespace(ns, labels)
        self._register_pod(pod, "discovery", sidecar=False)
        assert self.pki is not None
        serving = self.pki.mesh_ca.issue_server(
            "istiod", [ISTIOD_SAN, "istiod.istio-system.svc.cluster.local"], ips=[pod.address]
        )
        self.istiod = Istiod(
            pod.netns,
            pod.address,
            self.binaries.pilot_discovery,
            self.workdir / "istiod",
            None,
            self.log_dir,
            kubeconfig=self.control_plane.inside_kubeconfig,
            tls=IstiodTLS(serving.chain_path, serving.key_path, self.pki.mesh_ca.cert_path),
            injection=injection_data(self.binaries),
        )
        self.istiod.start(self.state)
        self._publish_pods()
        return self.istiod

    def _register_pod(self, pod: Pod, container: str, *, sidecar: bool, replace: bool = False) -> None:
        """The Pod (and for the gateway its Service and EndpointSlice) on the API server."""
        self._own_pods.add(pod.key)
        self._publish_pods()
        self.registry.register_pod(
            pod.namespace,
            pod.name,
            pod.labels,
            pod.service_account,
            pod.address,
            container,
            sidecar=sidecar,
            replace=replace,
        )
        if pod.key == GATEWAY_POD.key:
            # istio-egressgateway's Service as the Helm chart makes it (ports 80→8080, 443→8443).
            self.registry.register_service(
                pod.namespace,
                "istio-egressgateway",
                GATEWAY_POD.labels,
                [{"name": "http2", "port": 80, "targetPort": 8080}, {"name": "https", "port": 443, "targetPort": 8443}],
                [(pod.name, pod.address)],
            )

    def _publish_pods(self) -> None:
        """Where the node's pod-streams finds each pod: its network namespace (port-forward) and
        the log file of each container that runs a process (kubectl logs)."""
        pods = {}
        for pod in list(self.pods.values()):
            # The application container runs no process of its own here (commands are exec'd
            # into the namespace): an empty log, as a sleep container's.
            logs = {pod.container or PODS.get(pod.key, ISTIOD_POD).container: ""}
            if pod.proxy is not None:
                logs["istio-proxy"] = str(pod.proxy.log_path)
            if pod.key == ISTIOD_POD.key and self.istiod is not None:
                logs[ISTIOD_POD.container] = str(self.istiod.process.log_path)
            pods[pod.key] = {"netns": str(pod.netns.path), "logs": logs}
        self.control_plane.publish_pods(pods)

    def _create_trust_secrets(self, files: dict) -> dict:
        def read(path: str) -> str:
            return Path(path).read_text()

        return self.registry.create_trust_secrets(
            {
                "public_ca": read(files["trust"]["ca_certificates"]),
                "untrusted_ca": read(files["wrong_trust"]["ca_certificates"]),
                "client_cert": read(files["client"]["client_certificate"]),
                "client_key": read(files["client"]["private_key"]),
            }
        )

    def kubeconfig_line(self) -> str:
        """What a user pastes to look inside the running mesh with kubectl and istioctl."""
        return f"export KUBECONFIG={self.control_plane.kubeconfig}"

    def look_inside(self) -> list[str]:
        if Path("/run/egress-harness-etc").exists():  # harness.rootless made this /run
            return [
                "this mesh runs in a user namespace of its own: its API server is not reachable "
                "from your shell; run as root (sudo make mesh, sudo make e2e) to use kubectl against it"
            ]
        return [
            self.kubeconfig_line(),
            "then e.g.: kubectl get vs -A; kubectl get pods,svc,endpointslices -A",
            f"and: {self.istioctl_hint()}",
        ]

    def istioctl_hint(self) -> str:
        """istioctl port-forwards through the API server to the node's pod-streams (apiserver.py),
        as on a cluster: to istiod's xDS port for proxy-status, to Envoy's admin for proxy-config."""
        sidecar = next((p for p in self.pods.values() if p.proxy is not None and p.proxy.spec.kind == "sidecar"), None)
        example = f"{sidecar.name}.{sidecar.namespace}" if sidecar else "<pod>.<namespace>"
        return f"{self.binaries.istioctl} proxy-status; {self.binaries.istioctl} proxy-config clusters {example}"

    def _start_upstream(self) -> None:
        assert self.pki is not None
        ns = Netns(f"eh-{self.run_id}-internet")
        self._add_netns(ns)
        ns.create()
        self.fabric.plug(ns, self.upstream_address)
        # A certificate per site; the first (the seed's edition.cnn.com) is presented without SNI.
        (_, server), *others = site_certificates(self.pki.public_ca)
        self.upstream_ns = ns
        packages = MOCK_UPSTREAM.parent  # where mock_upstream is importable from
        self.upstream_process = ManagedProcess(
            "mock_upstream",
            ns.wrap(
                [
                    sys.executable,
                    "-m",
                    "mock_upstream",
                    *upstream_command(
                        cert=str(server.chain_path),
                        key=str(server.key_path),
                        client_ca=str(self.pki.public_ca.cert_path),
                        control_listen="127.0.0.1",
                        site_certs=[(site.name, str(c.chain_path), str(c.key_path)) for site, c in others],
                    ),
                ]
            ),
            self.log_dir / "mock_upstream.log",
            cwd=packages,
            env={"PATH": POD_PATH, "PYTHONPATH": str(packages), CONTROL_TOKEN_ENV: self.upstream_token},
        )
        self.upstream_process.start(self.state)

    def _upstream(self) -> UpstreamClient:
        if self._upstream_client is None:
            self._upstream_client = UpstreamClient(
                f"http://127.0.0.1:{UPSTREAM_PORTS['control']}",
                transport=self.upstream_ns.http_transport(),
                token=self.upstream_token,
                check_alive=self.check_stand_in,
            )
        return self._upstream_client

    def check_stand_in(self) -> None:
        """ProcessExited, one line with its status and log tail, once the stand-in has exited
        without the harness stopping it: every later test would find its control API gone."""
        proc = self.upstream_process
        if proc is not None and proc.exited_by_itself():
            raise ProcessExited(proc.exit_line("the stand-in"))

    def exited_process(self) -> ProcessExited | None:
        """What the plugin asks after a failed test: a process the session holds (the stand-in,
        istiod) exited, so the failure is the harness's, and the session stops."""
        try:
            self.check_stand_in()
        except ProcessExited as exc:
            return exc
        if self.istiod is not None and self.istiod.process.exited_by_itself():
            return ProcessExited(self.istiod.process.exit_line("istiod"))
        return None

    def attach_proxy(
        self, pod: Pod, kind: str, *, args: tuple[str, ...] = (), env: dict[str, str] | None = None
    ) -> IstioProxy:
        """A started istio-proxy for a pod from the API server: the container's `args` and
        resolved `env` (node_agent.py)."""
        return self._attach_proxy(pod, kind, args=args, env=env)

    def _attach_proxy(
        self,
        pod: Pod,
        kind: str,
        *,
        start: bool = True,
        args: tuple[str, ...] = (),
        env: dict[str, str] | None = None,
    ) -> IstioProxy:
        """The pod's istio-proxy: its files and certificates, a sidecar's capture rules, and
        (unless start=False: the caller starts it) pilot-agent with Envoy."""
        assert self.pki is not None and self.istiod is not None
        proxy = IstioProxy(
            ProxySpec(
                kind,
                pod.namespace,
                pod.name,
                pod.service_account,
                pod.labels,
                pod.address,
                args=args,
                container_env=tuple(sorted((env or {}).items())),
            ),
            pod.netns,
            self.binaries,
            self.workdir / "pods" / f"{pod.namespace}.{pod.name}",
            self.log_dir,
            mesh_config(self.istiod.address, secure=self.istiod.secure),
        )
        proxy.prepare(self.pki.mesh_ca)
        if kind == "sidecar":
            proxy.apply_iptables()
        if start:
            proxy.start(self.state)
        pod.proxy = proxy
        self._publish_pods()
        return proxy

    def upstream_trust(self) -> dict:
        return self._trust

    # ---------------------------------------------------------------- manifests
    def apply(self, objs: list[dict]) -> None:
        self.manifests.validate(objs)
        secrets = [o for o in objs if o["kind"] == "Secret"]
        if secrets:  # before the config naming them: istiod finds them when a proxy asks over SDS
            self.registry.write_all(secrets)
        policies = [o for o in objs if o["kind"] == "NetworkPolicy"]
        for o in policies:
            policy = netpol.parse_policy(o)
            self._policies[(policy.namespace, policy.name)] = policy
        if policies:  # real API objects; enforced by the hub's rules (unchanged without any)
            self.registry.write_all(policies)
            self._sync_policies()
        rbac = [o for o in objs if o["kind"] in ("Role", "RoleBinding")]
        if rbac:  # before the config that needs them (a gateway's credentialName Secret)
            self.registry.write_all(rbac)
        istio = [o for o in objs if is_mesh_config(o)]
        if istio or self._unsettled:
            # A deleted Gateway's deployed gateway is gone first: its Deployment has the same
            # name as a new Gateway's, and the garbage collector deletes by the old owner's uid.
            self._wait_deployed(absent=[o for o in self._unsettled if is_deployed_gateway(o)])
            before = self.convergence.snapshot()
            stored = self.manifests.write_all(istio)
            # One convergence covers this apply and a cleanup still pending.
            pending, self._unsettled = self._unsettled, []
            self._wait_deployed(present=stored, absent=pending)
            # The deployed gateway's endpoint first: its arrival makes istiod push in full again
            # (a Service's new workload identity), so the convergence must come after it.
            self._wait_gateway_endpoints(stored)
            self.convergence.wait(present=stored, absent=pending, before=before)

    def delete(self, objs: list[dict], *, wait: bool = True) -> None:
        """wait=False (a test's cleanup) returns at once; the next apply or pod command first
        waits until every proxy runs config without the objects, so no test sees them."""
        for o in objs:
            if o.get("kind") == "NetworkPolicy":
                meta = o.get("metadata") or {}
                # parse_policy refuses an empty namespace or name, so "" matches no policy, as None did.
                self._policies.pop((meta.get("namespace") or "", meta.get("name") or ""), None)
        policies = [o for o in objs if o.get("kind") == "NetworkPolicy"]
        if policies:
            self.registry.remove_all(policies)
            self._sync_policies()
        secrets = [o for o in objs if o.get("kind") == "Secret"]
        if secrets:
            self.registry.remove_all(secrets)
        istio = [o for o in objs if is_mesh_config(o)]
        if istio:
            before = self.convergence.snapshot()
            self.manifests.remove_all(istio)
            self._unsettled.extend(istio)
            if wait:
                self.settle(before)
        rbac = [o for o in objs if o.get("kind") in ("Role", "RoleBinding")]
        if rbac:
            self.registry.remove_all(rbac)

    def settle(self, before: dict | None = None) -> None:
        """Wait for the convergence a no-wait delete left pending."""
        if self._unsettled:
            pending, self._unsettled = self._unsettled, []
            self._wait_deployed(absent=pending)
            self.convergence.wait(absent=pending, before=before)

    def _wait_gateway_endpoints(self, present: list[dict]) -> None:
        """Every sidecar has the deployed gateway's pod as a healthy endpoint of its Service
        (converge.wait_endpoints)."""
        wanted = []
        for o in present:
            if is_deployed_gateway(o):
                ns, name = o["metadata"]["namespace"], o["metadata"]["name"]
                host = deployed_service_host(ns, name)
                wanted += [(host, p.address) for p in self.node_agent.pods(ns, {GATEWAY_NAME_LABEL: name})]
        if not wanted:
            return
        sidecars = [
            (f"{p.spec.namespace}/{p.spec.pod_name}", p.admin) for p in self.proxies() if p.spec.kind == "sidecar"
        ]
        wait_endpoints(sidecars, wanted, timeout=15)

    def _wait_deployed(self, *, present: Sequence[dict] = (), absent: Sequence[dict] = ()) -> None:
        """A Gateway API Gateway's deployed gateway (istiod's Deployment, run by the node agent):
        its pod ready before convergence counts its proxy, and gone once the Gateway is. The
        Gateway's `Programmed` condition is no signal: it looks only at the Service."""
        gateways = {(o["metadata"]["namespace"], o["metadata"]["name"]): o for o in present if is_deployed_gateway(o)}
        gone = {(o["metadata"]["namespace"], o["metadata"]["name"]) for o in absent if is_deployed_gateway(o)}
        gone -= set(gateways)
        if not gateways and not gone:
            return
        started = time.monotonic()

        def done() -> bool:
            up = all(self.node_agent.pods(ns, {GATEWAY_NAME_LABEL: name}) for ns, name in gateways)
            down = not any(self.node_agent.pods(ns, {GATEWAY_NAME_LABEL: name}, ready_only=False) for ns, name in gone)
            return up and down

        names = ", ".join(f"{ns}/{n}" for ns, n in [*gateways, *gone])
        self.node_agent.wait(f"the deployed gateway of {names} (istiod's Deployment, run by the node agent)", done, 30)
        self.timings["deployed_gateway"] = time.monotonic() - started

    # ---------------------------------------------------------------- NetworkPolicy, namespaces, pods
    def _sync_policies(self) -> None:
        pods = [netpol.PodInfo(p.namespace, p.name, p.address, p.labels, p.hub_ifname) for p in self.pods.values()]
        rules = netpol.render_rules(list(self._policies.values()), pods, self.namespace_labels)
        (self.log_dir / "hub-iptables.rules").write_text(rules)
        result = self.fabric.hub.exec(["iptables-restore"], input=rules)
        if not result.ok:
            raise HarnessFault(f"iptables-restore in the hub failed: {result.stderr.strip()}")

    def label_namespace(self, namespace: str, labels: dict[str, str | None]) -> None:
        """`kubectl label namespace NS k=v` (None removes k), then re-evaluate NetworkPolicy."""
        current = self.namespace_labels.setdefault(namespace, {})
        for k, v in labels.items():
            if v is None:
                current.pop(k, None)
            else:
                current[k] = v
        self.registry.set_namespace(namespace, current)
        self._sync_policies()

    def redeploy(self, pod: str, *, sidecar: bool) -> None:
        """Delete the pod and create it again (new address, as Kubernetes would), with or
        without a sidecar. Waits until its proxy is ready and has the current config."""
        old = self.pods.pop(pod)
        if old.proxy is not None:
            old.proxy.stop()
        self.fabric.unplug(old.netns)
        old.netns.delete()
        new = self.new_pod(PODS[old.key])
        self._register_pod(new, PODS[old.key].container, sidecar=sidecar, replace=True)
        if sidecar:
            self._attach_proxy(new, "sidecar").wait_ready()
        self._sync_policies()
        if sidecar:
            self.convergence.wait()

    def pod(self, key: str) -> Pod:
        try:
            return self.pods[key]
        except KeyError:
            raise HarnessError(f"no pod {key!r} in the local mesh (pods: {', '.join(sorted(self.pods))})") from None

    def exec(self, pod: str, argv: list[str], timeout: float = 30.0) -> ExecResult:
        self.settle()
        return self.pod(pod).netns.exec(argv, timeout=timeout)

    def deployed_gateway(self, namespace: str, gateway: str) -> str:
        pods = self.node_agent.pods(namespace, {GATEWAY_NAME_LABEL: gateway})
        if not pods:
            raise HarnessError(
                f"no deployed gateway for Gateway {namespace}/{gateway} runs (apply the Gateway first; "
                f"the node agent runs: {', '.join(sorted(self.node_agent.running)) or 'nothing'})"
            )
        return pods[0].key

    def pod_address(self, pod: str) -> str:
        return self.pod(pod).address

    def namespace(self, logical: str) -> str:
        return logical  # the seed's namespaces are the mesh's own

    def has_sidecar(self, pod: str) -> bool:
        return self.pod(pod).proxy is not None

    def proxy(self, pod: str) -> IstioProxy:
        p = self.pod(pod)
        if p.proxy is None:
            raise HarnessError(f"pod {pod} has no istio-proxy")
        return p.proxy

    def upstream(self) -> UpstreamClient:
        return self._upstream()

    def proxy_admin(self, pod: str):
        return self.proxy(pod).admin

    def access_log(self, pod: str) -> list[str]:
        return self.proxy(pod).access_log_lines()

    def collect(self, directory: Path) -> None:
        """Mesh-wide state for a failed test: each proxy's config_dump, stats, clusters, certs,
        log; istiod's sync status, loaded config and log; the stand-in's records."""
        from harness.local.collect import collect_local

        collect_local(self, directory)

    def proxies(self) -> list[IstioProxy]:
        return [p.proxy for p in self.pods.values() if p.proxy is not None]

    # ---------------------------------------------------------------- upgrades (harness/local/upgrade_ops.py)
    def replace_istiod(self, binaries: IstioBinaries) -> None:
        """In-place control-plane upgrade: istiod restarted with `binaries`; proxies keep theirs."""
        from harness.local import upgrade_ops

        upgrade_ops.replace_istiod(self, binaries)

    def restart_proxy(self, pod: str, binaries: IstioBinaries, **kwargs) -> None:
        """The pod's istio-proxy restarted with `binaries` (labels=, istiod= for a revision)."""
        from harness.local import upgrade_ops

        upgrade_ops.restart_proxy(self, pod, binaries, **kwargs)
