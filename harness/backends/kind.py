"""The kind backend: a kind cluster of its own (pytest-kind-ng), Istio installed with istioctl, the
stand-in for edition.cnn.com as a Docker container on the kind network, outside the cluster like
the real site, and cluster DNS pointing edition.cnn.com at it.

Start order (each step has a deadline; the plan, harness/backends/plan.py, prints the same steps):
tools → cluster → images → load the sleep image → istioctl install → rollouts → the stand-in →
CoreDNS → secrets, namespaces, sleep pods → DNS check in the pods → first convergence.
`--keep-cluster` reuses a cluster of that name and leaves it (and Istio) in place afterwards.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from harness.backends import plan, tools, upstream_image
from harness.backends.kube import UPSTREAM_HOST, KubeBackend, Kubectl, add_hosts_block
from harness.errors import HarnessError
from harness.pki import RunPKI
from harness.wait import poll

if TYPE_CHECKING:  # both are imported when a kind run starts (preflight says how to install them)
    from docker import DockerClient
    from pytest_kind import KindCluster


def _say(msg: str) -> None:
    print(f"[egress-harness] {msg}", file=sys.stderr, flush=True)


def docker_client():
    """The Docker engine kind uses (DOCKER_HOST or the default socket), or one HarnessError line."""
    try:
        import docker
    except ImportError:
        raise HarnessError("the kind backend needs the docker SDK: pip install -e '.[kind]'") from None
    try:
        client = docker.from_env(timeout=300)
        client.ping()
    except Exception as exc:  # noqa: BLE001 - any failure here means "no engine"
        raise HarnessError(f"no Docker engine reachable for kind ({type(exc).__name__}): start Docker "
                           f"(or set DOCKER_HOST) and retry") from None
    return client


def preflight() -> None:
    """Checked before anything starts; one line each, naming the fix."""
    try:
        import pytest_kind  # noqa: F401
    except ImportError:
        raise HarnessError("the kind backend needs pytest-kind-ng: pip install -e '.[kind]'") from None
    if not plan.KIND_CONFIG.exists() or not plan.ISTIO_OPERATOR.exists():
        raise HarnessError(f"missing {plan.KIND_CONFIG} or {plan.ISTIO_OPERATOR}: restore fixtures/kind/")
    if (shutil.which("go") is None and tools.resolve_kind(fetch=False).path is None
            and not (tools.KIND_RELEASE_SHA256.get(tools.os_arch()) or os.environ.get("EGRESS_HARNESS_KIND_SHA256"))):
        raise HarnessError("kind is not on PATH, Go is not installed and no kind checksum is pinned: "
                           "install kind v0.33.0, or Go, or set EGRESS_HARNESS_KIND_SHA256")


class KindBackend(KubeBackend):
    name = "kind"

    def __init__(self, *, cluster_name: str, keep_cluster: bool, istio_version: str, artifacts: Path):
        self.cluster_name = cluster_name
        self.keep_cluster = keep_cluster
        self.istio_version = istio_version
        self.run_id = secrets.token_hex(3)
        self.cluster: KindCluster | None = None
        self.docker: DockerClient | None = None
        self.upstream_container: upstream_image.UpstreamContainer | None = None
        self.pki: RunPKI | None = None
        self._coredns_original: str | None = None
        self.kind_tool: tools.Tool | None = None
        self.kubectl_tool: tools.Tool | None = None
        self.istioctl_tool: tools.Tool | None = None
        self.kubeconfig = Path(".pytest-kind") / cluster_name / "kubeconfig"
        # kubectl is only known after tools are resolved; KubeBackend's fields are set in start().
        self.artifacts = artifacts

    # ---------------------------------------------------------------- lifecycle
    def start(self) -> None:
        preflight()
        self.docker = client = docker_client()
        hub, tag = tools.istio_images(self.istio_version)
        t0 = time.monotonic()
        self.kind_tool = tools.resolve_kind(fetch=True)
        tools.check_kind_version(self.kind_tool.version, self.kind_tool.origin)
        self.kubectl_tool = tools.resolve_kubectl(fetch=True)
        self.istioctl_tool = tools.resolve_istioctl(self.istio_version, fetch=True)
        super().__init__(kubectl=Kubectl(self.kubectl_tool.fetched_path(), self.kubeconfig.resolve()),
                         istioctl=self.istioctl_tool.fetched_path(), artifacts=self.artifacts)
        self.timings["tools"] = time.monotonic() - t0

        self._create_cluster(self.kind_tool.fetched_path(), self.kubectl_tool.fetched_path())
        self.timings["cluster"] = time.monotonic() - t0
        self.pki = RunPKI(self.artifacts / "kind" / f"pki-{self.run_id}")
        base = upstream_image.ensure_base_image(client)
        up_image = upstream_image.build_upstream_image(client, base)
        self._kind(plan.kind_load_cmd(str(self.kind_tool.path), self.cluster_name, upstream_image.sleep_tag()))
        self.timings["images"] = time.monotonic() - t0

        overlay = plan.write_mesh_config_overlay(self.artifacts / "kind")
        self._run(plan.istioctl_install_cmd(str(self.istioctl_tool.path), self.kubeconfig.resolve(), hub, tag, overlay),
                  "istioctl install", timeout=900)
        for cmd in plan.rollout_cmds(str(self.kubectl_tool.path), self.kubeconfig.resolve()):
            self._run(cmd, "rollout status", timeout=330)
        self.timings["istio"] = time.monotonic() - t0

        self._start_upstream(client, up_image)
        self._point_dns_at_upstream()
        self._deploy_seed()
        self.wait_converged(timeout=120)
        self.timings["cold_start"] = time.monotonic() - t0
        _say("kind backend ready in " + ", ".join(f"{k} {v:.0f}s" for k, v in self.timings.items()))

    def stop(self) -> None:
        """Tear down what this run started; safe after a partial start and twice."""
        if hasattr(self, "_forwards"):
            self.close_forwards()
        if self.upstream_container is not None:
            self.upstream_container.remove()
            self.upstream_container = None
        if self.cluster is not None and self.keep_cluster and self._coredns_original is not None:
            try:  # a kept cluster goes back to its own DNS
                self._set_corefile(self._coredns_original)
            except Exception as exc:  # noqa: BLE001
                _say(f"could not restore CoreDNS in the kept cluster: {exc}")
        if self.cluster is not None and not self.keep_cluster:
            self.cluster.delete()
        self.cluster = None
        if self.pki is not None:
            self.pki.cleanup()
            self.pki = None
        if self.docker is not None:
            self.docker.close()
            self.docker = None

    # ---------------------------------------------------------------- steps
    def _run(self, argv: list[str], what: str, timeout: float = 300) -> str:
        try:
            proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise HarnessError(f"{what} did not finish within {timeout:.0f}s: see {self.artifacts} and rerun") from None
        if proc.returncode != 0:
            raise RuntimeError(f"{what} failed ({' '.join(argv[:3])} …): {(proc.stderr or proc.stdout).strip()[-800:]}")
        return proc.stdout

    def _kind(self, argv: list[str]) -> str:
        return self._run(argv, " ".join(argv[1:3]), timeout=600)

    def _create_cluster(self, kind_path: Path, kubectl_path: Path) -> None:
        from pytest_kind import KindCluster

        kind = str(kind_path)
        existing = subprocess.run([kind, "get", "clusters"], capture_output=True, text=True).stdout.split()
        if self.cluster_name in existing and not self.keep_cluster:
            raise HarnessError(f"a kind cluster named {self.cluster_name!r} already exists: pass --keep-cluster to reuse it, "
                               f"or --cluster-name NAME, or delete it (kind delete cluster --name {self.cluster_name})")
        self.kubeconfig.parent.mkdir(parents=True, exist_ok=True)
        if self.cluster_name in existing:
            # KindCluster.create() reuses the cluster but needs its kubeconfig in place.
            self._run([kind, "export", "kubeconfig", f"--name={self.cluster_name}", f"--kubeconfig={self.kubeconfig}"],
                      "kind export kubeconfig")
        self.cluster = KindCluster(self.cluster_name, kubeconfig=self.kubeconfig, image=tools.kind_node_image(),
                                   kind_path=kind_path, kubectl_path=kubectl_path)
        _say(f"creating kind cluster {self.cluster_name} ({tools.kind_node_image()}); about a minute")
        self.cluster.create(config_file=plan.KIND_CONFIG)

    def _start_upstream(self, client: DockerClient, image: str) -> None:
        assert self.pki is not None
        server = self.pki.public_ca.issue_server(UPSTREAM_HOST, [UPSTREAM_HOST, "*.cnn.com"])
        name = f"egress-harness-upstream-{self.cluster_name}"
        stale = [c for c in client.containers.list(all=True, filters={"name": name}) if c.name == name]
        for c in stale:
            c.remove(force=True)
        self.upstream_container = upstream_image.run_upstream(
            client, image, plan.KIND_NETWORK, name=name, cert_chain_pem=server.chain_path.read_bytes(),
            key_pem=server.key_pem, client_ca_pem=self.pki.public_ca.cert_pem, publish_control=True,
            labels={"egress-harness/cluster": self.cluster_name})
        self.upstream_control_url = self.upstream_container.control_url
        poll("the stand-in's control port", self.upstream().healthz, timeout=30)

    def _point_dns_at_upstream(self) -> None:
        assert self.upstream_container is not None
        self._coredns_original = self._corefile()
        self._set_corefile(add_hosts_block(self._coredns_original, self.upstream_container.address, run=self.run_id))

    def _deploy_seed(self) -> None:
        assert self.pki is not None and self.upstream_container is not None
        untrusted = self.pki.other_public_ca()
        client = self.pki.public_ca.issue_client("gateway-client", "istio-egressgateway",
                                                 uris=["spiffe://cluster.local/ns/istio-system/sa/istio-egressgateway-service-account"])
        pems = {"public_ca": self.pki.public_ca.cert_pem.decode(), "untrusted_ca": untrusted.cert_pem.decode(),
                "client_cert": client.cert_pem.decode(), "client_key": client.key_pem.decode()}
        for _name, text in plan.setup_manifests(sleep_image=upstream_image.sleep_tag(), pems=pems).items():
            self.kubectl.run("apply", "-f", "-", input=text)
        for ns in ("default", "test-egress"):
            self.kubectl.run("rollout", "status", "-n", ns, "deployment/sleep", "--timeout=180s", timeout=190)
        want = self.upstream_container.address

        def resolved() -> str:
            return self.exec("test-egress/sleep", ["getent", "hosts", UPSTREAM_HOST]).stdout.split()[:1][0]

        poll(f"{UPSTREAM_HOST} to resolve to the stand-in ({want}) in the sleep pods", resolved,
             ok=lambda got: got == want, timeout=90, interval=1.0)

    # ---------------------------------------------------------------- evidence
    def collect(self, directory: Path) -> None:
        super().collect(directory)
        if self.upstream_container is not None:
            (directory / "upstream-container.log").write_text(self.upstream_container.logs())


__all__ = ["KindBackend", "docker_client", "preflight"]
