"""The local mesh's Kubernetes control plane: the real etcd and kube-apiserver, and the node's port-forward endpoint.

Why: istiod on a real API server sees what it sees on a cluster (CRDs validated by the server,
Services, Pods, EndpointSlices, Secrets for credentialName), and the suites apply through the
same server-side apply path as the kind and cluster backends (harness/kube_rest.py).

What runs, and where:
- etcd and kube-apiserver are the toolchain builds (harness/toolchain/programs.py: KUBERNETES_PROGRAM,
  ETCD), cached per content key, started as the run's processes (processes.py, recorded in the
  run state, so SIGKILL cleanup ends them) inside istiod's pod namespace: only istiod and the
  harness can reach them. etcd's data directory is under the run's work directory (/run, a tmpfs),
  so it goes with the run. `--unsafe-no-fsync`: the data is thrown away with the run anyway.
- Certificates come from a CA of the run's own (harness/pki.py), as kubeadm makes one cluster CA:
  the API server's serving cert (127.0.0.1, kubernetes.default.svc…), etcd's serving cert, and an
  admin client cert (group system:masters), and kubeadm's kubelet pair. Authorization is RBAC,
  as on a cluster: the harness, istiod, the controller-manager and the user's kubectl are the
  admin, and what istiod asks for a gateway (may its ServiceAccount list the Secrets of its
  namespace?, a SubjectAccessReview) is answered by Roles, so a missing RoleBinding refuses a
  gateway its credentialName. No scheduler or kubelet runs (the node agent, node_agent.py). The one kubelet part that runs is its port-forward endpoint: pod-streams
  (pod_streams/main.go) on the node's 127.0.0.1:10250, so `kubectl port-forward` and istioctl's
  proxy-status and proxy-config work as on a cluster.
- A new etcd holds only what kube-apiserver bootstraps; Istio's 15 CRDs take seconds to install
  and establish. So the first run with a given (kube-apiserver, etcd, CRD file) saves etcd's data
  right after the CRDs are Established, as a seed under `<cache_root()>/local-apiserver/` (removed
  by `make clean-cache`), and later runs start etcd from a copy of it. The seed holds no keys:
  certificates are the run's own and etcd stores none.
- The harness, kubectl and the user reach the API server through a loopback forwarder on the host
  (127.0.0.1:<ephemeral> → istiod's namespace 127.0.0.1:6443, loopback_forwarder.py), the
  kubeconfig the run writes.

Flags: `kube-apiserver --help` and `etcd --help` of the pinned builds; the minimum set follows
kubeadm's static-pod manifest for kube-apiserver (cmd/kubeadm/app/phases/controlplane/manifests.go).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import ssl
from dataclasses import dataclass
from pathlib import Path

import httpx
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from harness.errors import HarnessError
from harness.local.loopback_forwarder import LoopbackForwarder
from harness.local.netns import POD_PATH, Netns
from harness.local.processes import ManagedProcess
from harness.local.runstate import RunState
from harness.pki import CertAuthority
from harness.wait import poll

API_PORT = 6443
ETCD_CLIENT_PORT = 2379
ETCD_PEER_PORT = 2380
# Service ClusterIPs: inside 198.18.0.0/15 (benchmarking, never routed), beside the pods' /16. No
# kube-proxy runs, so nothing answers on them; Envoy routes Services by name and endpoints.
SERVICE_CIDR = "198.19.0.0/16"
AUTHORIZATION_MODE = "RBAC"  # as on a cluster: istiod's SubjectAccessReviews get real answers
KUBERNETES_SERVICE_IP = "198.19.0.1"
# The node's kubelet port, where pod-streams (pod_streams/main.go) serves port-forwards; the Node
# object names it (kube_registry.register_node), and the API server dials it on 127.0.0.1.
KUBELET_PORT = 10250
NODE_ADDRESS = "127.0.0.1"
# kube-controller-manager's controllers the local mesh runs (start_controllers says why).
CONTROLLERS = (
    "deployment-controller",
    "replicaset-controller",
    "endpointslice-controller",
    "garbage-collector-controller",
)


def toolchain_binaries() -> tuple[Path, Path, Path, Path]:
    """(kube-apiserver, kubectl, etcd, pod-streams) from the toolchain cache, built if missing
    (minutes, once)."""
    from harness.toolchain.gobuild import ensure_program
    from harness.toolchain.programs import LOCAL_MESH

    k8s, etcd, streams = (ensure_program(p) for p in LOCAL_MESH)
    return k8s / "kube-apiserver", k8s / "kubectl", etcd / "etcd", streams / "pod-streams"


def kubeconfig_text(server: str, ca: Path, cert: Path, key: Path, name: str = "egress-harness-local") -> str:
    return json.dumps(
        {
            "apiVersion": "v1",
            "kind": "Config",
            "current-context": name,
            "clusters": [{"name": name, "cluster": {"server": server, "certificate-authority": str(ca)}}],
            "users": [{"name": "admin", "user": {"client-certificate": str(cert), "client-key": str(key)}}],
            "contexts": [{"name": name, "context": {"cluster": name, "user": "admin"}}],
        },
        indent=2,
    )


@dataclass
class KubeCerts:
    ca: CertAuthority
    directory: Path

    @classmethod
    def create(cls, directory: Path) -> KubeCerts:
        ca = CertAuthority.create("kubernetes", "kubernetes (egress-harness)", directory)
        certs = cls(ca, directory)
        ca.issue_server(
            "apiserver",
            [
                "kubernetes",
                "kubernetes.default",
                "kubernetes.default.svc",
                "kubernetes.default.svc.cluster.local",
                "localhost",
            ],
            ips=["127.0.0.1", KUBERNETES_SERVICE_IP],
        )
        ca.issue_server("etcd", ["localhost"], ips=["127.0.0.1"])
        ca.issue_client("etcd-client", "kube-apiserver-etcd-client")
        # The API server authorizes by RBAC: the admin (the harness, istiod, the controller-manager
        # and the user's kubectl) is in system:masters, as kubeadm's admin.conf is.
        ca.issue_client("admin", "egress-harness-admin", organization="system:masters")
        # kubeadm's pair for the API server → kubelet hop: pod-streams serves with the first and
        # accepts only the second (by its CommonName: the CA signs the admin's certificate too).
        ca.issue_server("kubelet", ["localhost"], ips=[NODE_ADDRESS])
        ca.issue_client("apiserver-kubelet-client", "kube-apiserver-kubelet-client")
        # The service-account token signing key (kube-apiserver needs one even if nothing uses it).
        sa_key = ec.generate_private_key(ec.SECP256R1())
        (directory / "sa.key").write_bytes(
            sa_key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()
            )
        )
        (directory / "sa.key").chmod(0o600)
        (directory / "sa.pub").write_bytes(
            sa_key.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )
        return certs

    def path(self, name: str) -> Path:
        return self.directory / name


def seed_dir(crd_file: Path, apiserver_bin: Path, etcd_bin: Path) -> Path:
    """Where etcd's data with these CRDs, for these builds, is kept (see the module docstring)."""
    from harness.cache import cache_root

    key = hashlib.sha256(
        json.dumps(
            [
                str(apiserver_bin.parent.parent.name),
                str(etcd_bin.parent.parent.name),
                hashlib.sha256(crd_file.read_bytes()).hexdigest(),
                SERVICE_CIDR,
                ETCD_PEER_PORT,
                # RBAC's bootstrap roles are written at the API server's first start: a seed made
                # under another mode lacks them, and every start would write them again.
                AUTHORIZATION_MODE,
            ]
        ).encode()
    ).hexdigest()[:16]
    return cache_root() / "local-apiserver" / f"etcd-seed-{key}"


class KubeControlPlane:
    """etcd + kube-apiserver in `netns`; a kubeconfig for inside the namespace (istiod) and one for
    the host (harness, kubectl, the user)."""

    def __init__(self, workdir: Path, log_dir: Path):
        self.netns: Netns | None = None
        self.workdir = workdir
        self.log_dir = log_dir
        self.apiserver_bin, self.kubectl_bin, self.etcd_bin, self.pod_streams_bin = toolchain_binaries()
        self.etcd: ManagedProcess | None = None
        self.apiserver: ManagedProcess | None = None
        self.pod_streams: ManagedProcess | None = None
        self.controller_manager: ManagedProcess | None = None
        self.controller_manager_bin = self.apiserver_bin.with_name("kube-controller-manager")
        self.pods_file = workdir / "pods.json"  # pod-streams' "namespace/pod" → network namespace, logs
        self.forwarder: LoopbackForwarder | None = None
        self.certs: KubeCerts | None = None
        self.inside_kubeconfig = workdir / "kubeconfig.inside"
        self.kubeconfig = workdir / "kubeconfig"
        self.data_dir = workdir / "etcd-data"
        self.seeded = False  # etcd started from a seed: Istio's CRDs are there already

    def start(self, netns: Netns, state: RunState, seed: Path | None = None) -> None:
        """Start both in `netns` and return at once; wait_ready() waits for the API server. With a
        saved `seed`, etcd starts from a copy of it."""
        self.netns = netns
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.certs = c = KubeCerts.create(self.workdir / "pki")
        if seed is not None and (seed / "member").is_dir():
            shutil.copytree(seed, self.data_dir)
            self.seeded = True
        self._start_processes(state)
        self._start_pod_streams(state)
        admin_cert, admin_key = c.path("admin.pem"), c.path("admin.key")
        self.inside_kubeconfig.write_text(
            kubeconfig_text(f"https://127.0.0.1:{API_PORT}", c.ca.cert_path, admin_cert, admin_key)
        )
        self.forwarder = LoopbackForwarder(netns, API_PORT)
        self.forwarder.start()
        self.kubeconfig.write_text(
            kubeconfig_text(f"https://127.0.0.1:{self.forwarder.local_port}", c.ca.cert_path, admin_cert, admin_key)
        )

    def _process(self, name: str, argv: list[str]) -> ManagedProcess:
        """One of the control plane's processes: in its network namespace, with a pod's PATH (not
        the user's environment), logging to <name>.log in the mesh's logs."""
        assert self.netns is not None
        return ManagedProcess(
            name, self.netns.wrap(argv), self.log_dir / f"{name}.log", env={"PATH": POD_PATH}, cwd=self.workdir
        )

    def _start_processes(self, state: RunState) -> None:
        assert self.netns is not None and self.certs is not None
        c = self.certs
        client_url = f"https://127.0.0.1:{ETCD_CLIENT_PORT}"
        peer_url = f"http://127.0.0.1:{ETCD_PEER_PORT}"
        self.etcd = self._process(
            "etcd",
            [
                str(self.etcd_bin),
                "--name=local",
                f"--data-dir={self.data_dir}",
                f"--listen-client-urls={client_url}",
                f"--advertise-client-urls={client_url}",
                f"--listen-peer-urls={peer_url}",
                f"--initial-advertise-peer-urls={peer_url}",
                f"--initial-cluster=local={peer_url}",
                "--initial-cluster-state=new",
                f"--cert-file={c.path('etcd.pem')}",
                f"--key-file={c.path('etcd.key')}",
                "--client-cert-auth",
                f"--trusted-ca-file={c.ca.cert_path}",
                "--unsafe-no-fsync",
                "--log-level=warn",
            ],
        )
        self.etcd.start(state)
        self.apiserver = self._process(
            "kube-apiserver",
            [
                str(self.apiserver_bin),
                f"--etcd-servers={client_url}",
                f"--etcd-cafile={c.ca.cert_path}",
                f"--etcd-certfile={c.path('etcd-client.pem')}",
                f"--etcd-keyfile={c.path('etcd-client.key')}",
                "--bind-address=127.0.0.1",
                "--advertise-address=127.0.0.1",
                f"--secure-port={API_PORT}",
                f"--tls-cert-file={c.path('apiserver-chain.pem')}",
                f"--tls-private-key-file={c.path('apiserver.key')}",
                f"--client-ca-file={c.ca.cert_path}",
                f"--authorization-mode={AUTHORIZATION_MODE}",
                # Said, not implied: a request without a client certificate is a 401.
                "--anonymous-auth=false",
                f"--service-cluster-ip-range={SERVICE_CIDR}",
                "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
                f"--service-account-key-file={c.path('sa.pub')}",
                f"--service-account-signing-key-file={c.path('sa.key')}",
                # One API server, no controller-manager: no lease-based endpoint reconciliation to wait for.
                "--endpoint-reconciler-type=none",
                # PriorityClasses are for a scheduler, and none runs here; their bootstrap
                # post-start hook retries on a 1 s period and held /readyz back by a second
                # (1.44 s instead of 2.6 s to ready). The Priority admission plugin watches
                # them, so it goes too.
                "--runtime-config=scheduling.k8s.io/v1=false",
                "--disable-admission-plugins=Priority",
                # Lists and watches straight from etcd: a resource's watch cache is built on its
                # first request, and istiod's informers make that first request for every Istio
                # resource at once; istiod's caches synced 0.6 s sooner (1.8-2.0 s against
                # 2.5-3.4 s at load 5 on two cores). For one API server with a handful of clients
                # the cache buys nothing, and its semantics are the same for clients.
                "--watch-cache=false",
                "--profiling=false",
                # The node agent's port-forward endpoint (pod-streams), verified as kubeadm sets it up.
                f"--kubelet-client-certificate={c.path('apiserver-kubelet-client.pem')}",
                f"--kubelet-client-key={c.path('apiserver-kubelet-client.key')}",
                f"--kubelet-certificate-authority={c.ca.cert_path}",
                "--kubelet-preferred-address-types=InternalIP",
                f"--cert-dir={self.workdir / 'apiserver-certs'}",
                "--v=1",
            ],
        )
        self.apiserver.start(state)

    def start_controllers(self, state: RunState) -> None:
        """The real kube-controller-manager, with the controllers a Deployment and its Service
        need: Deployment → ReplicaSet → Pods, the EndpointSlices of ready Pods behind a Service,
        and the garbage collector (a Gateway's Deployment goes when the Gateway goes). The node
        agent (node_agent.py) binds and runs the Pods. Started after the mesh's cold start:
        nothing of the seed's pods depends on it."""
        assert self.netns is not None and self.certs is not None
        self.controller_manager = self._process(
            "kube-controller-manager",
            [
                str(self.controller_manager_bin),
                f"--kubeconfig={self.inside_kubeconfig}",
                f"--controllers={','.join(CONTROLLERS)}",
                "--leader-elect=false",
                # No serving port: nothing scrapes it, and it would need its own certificates.
                "--secure-port=0",
                f"--root-ca-file={self.certs.ca.cert_path}",
                "--concurrent-deployment-syncs=2",
                "--v=1",
            ],
        )
        self.controller_manager.start(state)

    def _start_pod_streams(self, state: RunState) -> None:
        assert self.netns is not None and self.certs is not None
        c = self.certs
        self.publish_pods({})
        self.pod_streams = self._process(
            "pod-streams",
            [
                str(self.pod_streams_bin),
                f"--listen={NODE_ADDRESS}:{KUBELET_PORT}",
                f"--cert={c.path('kubelet-chain.pem')}",
                f"--key={c.path('kubelet.key')}",
                f"--client-ca={c.ca.cert_path}",
                f"--pods={self.pods_file}",
            ],
        )
        self.pod_streams.start(state)

    def publish_pods(self, pods: dict[str, dict]) -> None:
        """Tell pod-streams where each pod is: "namespace/name" → {"netns": path, "logs":
        {container: log file}}. Written whole and renamed into place, as it reads the file on
        every request."""
        tmp = self.pods_file.with_name(f".{self.pods_file.name}.tmp")
        tmp.write_text(json.dumps(pods, indent=1, sort_keys=True))
        os.replace(tmp, self.pods_file)

    def save_seed(self, seed: Path, state: RunState) -> None:
        """Stop both cleanly, keep a copy of etcd's data as `seed`, and start them again (once
        per seed key: the first run pays one restart so that later runs skip the CRD install)."""
        for proc in (self.apiserver, self.etcd):
            if proc is not None:
                proc.stop(grace=10.0)
        seed.parent.mkdir(parents=True, exist_ok=True)
        tmp = seed.parent / f".{seed.name}.{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.copytree(self.data_dir, tmp)
        try:
            os.rename(tmp, seed)
        except OSError:  # another run saved it first
            shutil.rmtree(tmp, ignore_errors=True)
        self._start_processes(state)
        self.wait_ready()

    @property
    def server(self) -> str:
        assert self.forwarder is not None
        return f"https://127.0.0.1:{self.forwarder.local_port}"

    def client(self, timeout: float = 10.0) -> httpx.Client:
        """An httpx client on the API server (through the forwarder), as the admin."""
        assert self.certs is not None
        ctx = ssl.create_default_context(cafile=str(self.certs.ca.cert_path))
        ctx.load_cert_chain(self.certs.path("admin.pem"), self.certs.path("admin.key"))
        return httpx.Client(base_url=self.server, verify=ctx, timeout=timeout, trust_env=False)

    def wait_ready(self, timeout: float = 30.0) -> None:
        # From a seed, RBAC's bootstrap roles are in etcd already and the hook that reconciles
        # them (~1.5 s of GETs) need not be awaited: the admin is system:masters, allowed without
        # them, and no ServiceAccount asks before the proxies run. Unseeded, they are awaited, so
        # the seed saved next holds them.
        params = {"exclude": "poststarthook/rbac/bootstrap-roles"} if self.seeded else {}
        with self.client(timeout=2.0) as client:

            def ready() -> bool:
                for proc in (self.etcd, self.apiserver, self.pod_streams):
                    if proc is not None and not proc.alive():
                        raise HarnessError(f"the local mesh's {proc.name} did not start: {proc.exit_summary()}")
                try:
                    return client.get("/readyz", params=params).status_code == 200
                except httpx.HTTPError:
                    return False

            poll("kube-apiserver /readyz (etcd included)", ready, timeout=timeout, interval=0.05)

    def stop(self) -> None:
        if self.forwarder is not None:
            self.forwarder.stop()
            self.forwarder = None
        if self.pod_streams is not None:
            self.pod_streams.stop(grace=1.0)
        if self.controller_manager is not None:
            self.controller_manager.stop(grace=2.0)
        if self.apiserver is not None:
            self.apiserver.stop(grace=2.0)
        if self.etcd is not None:
            self.etcd.stop(grace=2.0)
