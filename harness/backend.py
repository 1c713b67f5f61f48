"""What the suites need from wherever the mesh runs. Suites use only this; backends implement it.

Pods are named "namespace/name", as listed in harness/pod_table.py. Implementations: harness.local.mesh.LocalMesh (default),
harness.backends.kind.KindBackend and harness.backends.cluster.ClusterBackend.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol, runtime_checkable

from harness.envoy_admin import EnvoyAdmin
from harness.exec_result import ExecResult
from harness.pod_table import GATEWAY, GATEWAY_SPIFFE, SLEEP, TEST_EGRESS_SLEEP, sleep_spiffe
from harness.upstream_client import UpstreamClient

__all__ = ["GATEWAY", "GATEWAY_SPIFFE", "SLEEP", "TEST_EGRESS_SLEEP", "Backend", "sleep_spiffe"]


@runtime_checkable
class Backend(Protocol):
    name: str  # "local", "kind", "cluster"

    def apply(self, objs: list[dict]) -> None:
        """Apply manifests and return once every proxy runs config containing them (deadline)."""

    def delete(self, objs: list[dict], *, wait: bool = True) -> None:
        """Delete manifests and return once every proxy runs config without them. wait=False may
        return at once; then the backend's next apply or exec waits first."""

    def exec(self, pod: str, argv: list[str], timeout: float = 30.0) -> ExecResult:
        """Run argv in the pod's application container (curl, openssl)."""

    def pod_address(self, pod: str) -> str: ...

    def namespace(self, logical: str) -> str:
        """The namespace the seed's namespace `logical` ("default") is on this backend: itself,
        but on an existing cluster, where each run has namespaces of its own."""

    def has_sidecar(self, pod: str) -> bool:
        """Whether the pod runs an istio-proxy now."""

    def proxy_admin(self, pod: str) -> EnvoyAdmin:
        """Envoy's admin API of the pod's istio-proxy."""

    def access_log(self, pod: str) -> list[str]:
        """The access-log lines of the pod's istio-proxy so far."""

    def upstream(self) -> UpstreamClient:
        """The stand-in for edition.cnn.com: what it saw."""

    def upstream_trust(self) -> dict[str, str]:
        """Template values that make the gateway trust (or present to) the stand-in: file paths
        on the local mesh, credentialName secrets on Kubernetes."""

    def deployed_gateway(self, namespace: str, gateway: str) -> str:
        """The pod ("namespace/name") of the gateway istiod deployed for the Gateway API Gateway
        `namespace/gateway`; a HarnessError when it runs none."""

    def label_namespace(self, namespace: str, labels: dict[str, str | None]) -> None: ...

    def redeploy(self, pod: str, *, sidecar: bool) -> None: ...

    def collect(self, directory: Path) -> None:
        """Write the mesh-wide state (proxy config dumps, stats, logs, istiod status) for a failed test."""

    def look_inside(self) -> list[str]:
        """How a user reaches the running mesh with their own kubectl and istioctl: the KUBECONFIG
        line first (`make mesh`, and --egress-keep-mesh after a failure)."""

    def stop(self) -> None: ...
