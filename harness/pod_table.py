"""The pods the suites talk to, in one table every backend reads.

The local mesh creates them from it (a network namespace each, a proxy where `proxy` says), the
Kubernetes backends find them by its labels and exec into its container, and the suites name
them by key ("namespace/name"). On Kubernetes, a row with a `workload` is a Deployment the
backends apply (fixtures/kind/workload.yaml.j2, harness/kube/workloads.py): its manifest, its
namespace, its rollout wait and its redeploy all come from the row. Adding a pod is one row here,
on every backend.
"""

from __future__ import annotations

from dataclasses import dataclass, field

GATEWAY_SA = "istio-egressgateway-service-account"
GATEWAY_SPIFFE = f"spiffe://cluster.local/ns/istio-system/sa/{GATEWAY_SA}"


@dataclass(frozen=True)
class PodSpec:
    namespace: str
    name: str
    service_account: str
    proxy: str | None  # "router" (a gateway), "sidecar", or None (no istio-proxy at start)
    container: str  # the container the suites' commands run in, on Kubernetes
    labels: dict[str, str] = field(default_factory=dict)
    # The Deployment the Kubernetes backends apply for it; None for a pod Istio installs (the gateway).
    workload: str | None = None

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"

    @property
    def selector(self) -> str:
        """The label selector that finds it on Kubernetes."""
        return ",".join(f"{k}={v}" for k, v in sorted(self.labels.items()))


GATEWAY_POD = PodSpec(
    "istio-system",
    "istio-egressgateway",
    GATEWAY_SA,
    "router",
    "istio-proxy",
    {"app": "istio-egressgateway", "istio": "egressgateway"},
)
SLEEP_POD = PodSpec("default", "sleep", "sleep", "sidecar", "sleep", {"app": "sleep"}, workload="sleep")
TEST_EGRESS_SLEEP_POD = PodSpec("test-egress", "sleep", "sleep", None, "sleep", {"app": "sleep"}, workload="sleep")

PODS: dict[str, PodSpec] = {p.key: p for p in (GATEWAY_POD, SLEEP_POD, TEST_EGRESS_SLEEP_POD)}
# Namespaces every mesh has, whatever pods the table holds.
BASE_NAMESPACES = ("istio-system", "kube-system")


def use(pods: list[PodSpec]) -> None:
    """Run `pods` instead of the seed's (a team's egress spec, harness/spec/): in place, so every
    module holding PODS reads the new table. The gateway stays: the mesh's egress gateway."""
    PODS.clear()
    PODS.update({p.key: p for p in (GATEWAY_POD, *pods)})


def namespaces() -> list[str]:
    """Every namespace the mesh needs: its own and each pod's."""
    return list(dict.fromkeys([*BASE_NAMESPACES, *(p.namespace for p in PODS.values())]))


GATEWAY = GATEWAY_POD.key
SLEEP = SLEEP_POD.key
TEST_EGRESS_SLEEP = TEST_EGRESS_SLEEP_POD.key


def sleep_spiffe(namespace: str = "default") -> str:
    return f"spiffe://cluster.local/ns/{namespace}/sa/{SLEEP_POD.service_account}"
