"""The pods the Kubernetes backends deploy, derived from harness/pod_table.py: each row with a
`workload` is a Deployment (fixtures/kind/workload.yaml.j2) in its namespace, with a rollout to
wait for and a redeploy the suites may ask for. Nothing here names a pod: adding a row adds its
manifest, its namespace and its rollout to the kind and cluster plans.

The table is read when these are called (pod_table.PODS), so a test can put a copy with another
row in its place.
"""

from __future__ import annotations

from collections.abc import Mapping

from harness import pod_table
from harness.kube.templates import render_fixture
from harness.pod_table import PodSpec


def deployed_pods() -> list[PodSpec]:
    """The table's rows the backends deploy, in table order."""
    return [pod for pod in pod_table.PODS.values() if pod.workload]


def workload_namespaces() -> list[str]:
    """Their logical namespaces, in table order, once each."""
    return list(dict.fromkeys(pod.namespace for pod in deployed_pods()))


def manifest_name(pod: PodSpec) -> str:
    return f"{pod.workload}-{pod.namespace}.yaml"


def namespaces_manifest(namespaces: Mapping[str, str], run_labels: Mapping[str, str]) -> str:
    """The namespaces of the deployed pods (logical → actual via `namespaces`); a namespace with a
    sidecar pod gets injection."""
    sidecar = {pod.namespace for pod in deployed_pods() if pod.proxy == "sidecar"}
    rows = [{"name": namespaces.get(ns, ns), "injection": ns in sidecar} for ns in workload_namespaces()]
    return render_fixture("namespaces.yaml.j2", namespaces=rows, run_labels=dict(run_labels))


def workload_manifests(image: str, namespaces: Mapping[str, str], upstream_ca_pem: str) -> dict[str, str]:
    """Each deployed pod's manifest, by file name."""
    return {
        manifest_name(pod): render_fixture(
            "workload.yaml.j2",
            namespace=namespaces.get(pod.namespace, pod.namespace),
            workload=pod.workload,
            service_account=pod.service_account,
            labels=pod.labels,
            container=pod.container,
            image=image,
            sidecar=pod.proxy == "sidecar",
            upstream_ca_pem=upstream_ca_pem,
        )
        for pod in deployed_pods()
    }


def rollouts(namespaces: Mapping[str, str]) -> list[tuple[str, str]]:
    """(actual namespace, Deployment) of each deployed pod, to wait for."""
    return [(namespaces.get(pod.namespace, pod.namespace), f"deployment/{pod.workload}") for pod in deployed_pods()]


def redeployable(key: str) -> str | None:
    """The Deployment of the table's row `key` when the backends deploy it (and so can redeploy it)."""
    pod = pod_table.PODS.get(key)
    return pod.workload if pod is not None else None


def dns_check_pod() -> PodSpec:
    """The deployed pod the backends ask for the stand-in's name before the suites run: one without
    a sidecar when there is one (its lookup goes to the cluster's DNS itself)."""
    pods = deployed_pods()
    return next((pod for pod in pods if pod.proxy is None), pods[0])
