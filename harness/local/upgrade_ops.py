"""Upgrade operations on a running local mesh: what `kubectl rollout` and `istioctl install
--revision` do on a cluster, done to the pocket cluster's processes.

- replace_istiod: the in-place control-plane upgrade (`istioctl upgrade`): istiod's pod gets the
  new pilot-discovery; its address stays, so every pilot-agent reconnects by itself (it retries
  its xDS stream), keeping its own (older) version: the supported N-1 proxy skew.
- restart_proxy: a proxy restarted with other binaries (a rollout restart after the upgrade):
  pilot-agent, Envoy and the bootstrap template of that version, a fresh pod directory, the same
  pod (namespace, address, iptables rules). Optionally pointed at another istiod (a revision).
- add_revision / remove_istiod: the canary upgrade: a second istiod labelled `istio.io/rev`,
  proxies moved to it by that label, then the first istiod removed.

Every wait polls a real signal (the proxy's /healthz/ready, the convergence marker that only a
push from the live istiod can deliver) with a deadline.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from harness.errors import HarnessError
from harness.istio_binaries import IstioBinaries
from harness.local.apiserver import API_PORT
from harness.local.injector import injection_data
from harness.local.istiod import ISTIOD_SAN, Istiod, IstiodTLS, mesh_config
from harness.local.loopback_forwarder import LoopbackForwarder
from harness.local.proxy import IstioProxy, ProxySpec, stage_proxy_binaries
from harness.pod_table import PodSpec

if TYPE_CHECKING:
    from harness.local.mesh import LocalMesh

REV_LABEL = "istio.io/rev"
RECONNECT_TIMEOUT = 60.0


@dataclass
class Revision:
    name: str
    istiod: Istiod
    api_forwarder: LoopbackForwarder  # its pod's 127.0.0.1:6443 → the API server's


def stage_binaries(mesh: LocalMesh, binaries: IstioBinaries) -> IstioBinaries:
    """pilot-agent and Envoy of `binaries` where uid 1337 can run them, one folder per version."""
    return stage_proxy_binaries(binaries, mesh.workdir / f"bin-{binaries.version}")


def replace_istiod(mesh: LocalMesh, binaries: IstioBinaries) -> None:
    pod = mesh.pod("istio-system/istiod")
    old = mesh.running_istiod
    old.stop()
    mesh.istiod = Istiod(
        pod.netns,
        pod.address,
        binaries.pilot_discovery,
        old.workdir,
        None,
        mesh.log_dir,
        kubeconfig=old.kubeconfig,
        tls=old.tls,
        injection=injection_data(binaries),
    )
    mesh.istiod.start(mesh.state)
    mesh.istiod.wait_ready()
    # Only the new istiod can push the next marker: every proxy has reconnected when it has it.
    mesh.convergence.wait(timeout=RECONNECT_TIMEOUT)


def restart_proxy(
    mesh: LocalMesh,
    pod_key: str,
    binaries: IstioBinaries,
    *,
    labels: dict[str, str] | None = None,
    istiod: Istiod | None = None,
) -> None:
    pod = mesh.pod(pod_key)
    old = pod.proxy
    if old is None:
        raise HarnessError(f"{pod_key} has no istio-proxy to restart")
    if labels:
        pod.labels.update(labels)
    target = istiod or mesh.istiod
    assert target is not None and mesh.pki is not None
    staged = stage_binaries(mesh, binaries)
    old.stop()
    proxy = IstioProxy(
        ProxySpec(old.spec.kind, pod.namespace, pod.name, pod.service_account, dict(pod.labels), pod.address),
        pod.netns,
        staged,
        mesh.workdir / "pods" / f"{pod.namespace}.{pod.name}@{binaries.version}",
        mesh.log_dir,
        mesh_config(target.address, secure=target.secure),
    )
    proxy.prepare(mesh.pki.mesh_ca)
    proxy.start(mesh.state)
    pod.proxy = proxy
    proxy.wait_ready(timeout=RECONNECT_TIMEOUT)
    mesh.convergence.wait(timeout=RECONNECT_TIMEOUT)


def add_revision(mesh: LocalMesh, binaries: IstioBinaries, revision: str) -> Revision:
    """A second istiod, `istio-system/istiod-<revision>`, with REVISION set as the istiod chart
    sets it, on the same API server (reached through its pod's 127.0.0.1:6443, as the first
    istiod reaches it), with its own serving certificate for xDS over mutual TLS."""
    spec = PodSpec(
        "istio-system", f"istiod-{revision}", "istiod", None, "discovery", {"app": "istiod", REV_LABEL: revision}
    )
    pod = mesh.new_pod(spec)
    first = mesh.pod("istio-system/istiod")
    forwarder = LoopbackForwarder(first.netns, API_PORT, listen_in=pod.netns, listen_port=API_PORT)
    forwarder.start()
    assert mesh.pki is not None
    serving = mesh.pki.mesh_ca.issue_server(
        f"istiod-{revision}", [ISTIOD_SAN, "istiod.istio-system.svc.cluster.local"], ips=[pod.address]
    )
    workdir = mesh.workdir / f"istiod-{revision}"
    istiod = Istiod(
        pod.netns,
        pod.address,
        binaries.pilot_discovery,
        workdir,
        None,
        mesh.log_dir,
        kubeconfig=mesh.running_istiod.kubeconfig,
        tls=IstiodTLS(serving.chain_path, serving.key_path, mesh.pki.mesh_ca.cert_path),
        injection=injection_data(binaries),
    )
    istiod.process.name = f"istiod-{revision}"
    istiod.process.log_path = mesh.log_dir / f"istiod-{revision}.log"
    istiod.process.env = {**(istiod.process.env or {}), "REVISION": revision}
    rev = Revision(revision, istiod, forwarder)
    try:
        istiod.start(mesh.state)
        istiod.wait_ready()
    except BaseException:
        stop_revision(rev)
        raise
    return rev


def stop_revision(rev: Revision) -> None:
    rev.istiod.stop()
    rev.api_forwarder.stop()


def promote_revision(mesh: LocalMesh, rev: Revision) -> None:
    """Remove the first istiod (its pod stays: the API server lives in its namespace); the
    revision's istiod is the mesh's istiod from now on (convergence reads its /debug/syncz)."""
    mesh.running_istiod.stop()
    mesh.istiod = rev.istiod
    mesh.convergence.wait(timeout=RECONNECT_TIMEOUT)


def proxy_versions(mesh: LocalMesh) -> dict[str, str]:
    """pod → Envoy version and the Istio binaries it runs, for the report."""
    out = {}
    for key, pod in mesh.pods.items():
        if pod.proxy is not None:
            out[key] = f"Istio {pod.proxy.binaries.version}, Envoy {pod.proxy.binaries.envoy_version}"
    return out
