"""What the kind and cluster plans share: the command builders, the setup manifests, and the steps
that wait for istiod and the proxies (harness/backends/kind.py and cluster.py make their plans of
these; harness/backends/plan.py prints them)."""

from __future__ import annotations

from collections.abc import Mapping
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING

from harness import manifests, sites
from harness.backends.kube import (
    CONFIGZ_EXEC,
    ENVOY_ADMIN_PORT,
    ISTIO_NAMESPACE,
    ISTIOD_DEBUG_PORT,
    SYNCZ_EXEC,
    pilot_agent_request_args,
)
from harness.backends.steps import Action, Step
from harness.kube import workloads
from harness.kube.templates import KIND_FIXTURES
from harness.kube.trust import PEM, trust_secrets_yaml, trust_values
from harness.kube_rest import KUBECTL_APPLY_EQUIVALENT

if TYPE_CHECKING:  # imported where the steps are made: kind.py and cluster.py import this module
    pass


KIND_CONFIG = KIND_FIXTURES / "cluster.yaml"
ISTIO_OPERATOR = KIND_FIXTURES / "istio-operator.yaml"
KIND_NETWORK = "kind"  # kind's fixed Docker network (KIND_EXPERIMENTAL_DOCKER_NETWORK overrides it)
READINESS_TIMEOUT = "5m"
FIRST_CONVERGENCE_TIMEOUT = 120  # seconds
WITH_ENGINE = "harness/images/with_engine.py, outside pytest"


# ------------------------------------------------------------------------------ command builders
def kind_create_cmd(kind: str, name: str, kubeconfig: Path, image: str) -> list[str]:
    # The argv pytest-kind's KindCluster.create(config_file=…) runs (it reuses a cluster of that name).
    return [
        kind,
        "create",
        "cluster",
        f"--name={name}",
        f"--kubeconfig={kubeconfig}",
        f"--image={image}",
        "--config",
        str(KIND_CONFIG),
    ]


def kind_delete_cmd(kind: str, name: str, kubeconfig: Path) -> list[str]:
    return [kind, "delete", "cluster", f"--name={name}", f"--kubeconfig={kubeconfig}"]


def kind_load_cmd(kind: str, name: str, *images: str) -> list[str]:
    """One `kind load` for every image: kind runs one `docker save` of them all and one import into
    the node, so the layers the images share (the Debian base) are saved and imported once."""
    return [kind, "load", "docker-image", "--name", name, *images]


def upstream_container_name(cluster_name: str) -> str:
    return f"egress-harness-upstream-{cluster_name}"


def mesh_config_overlay() -> str:
    """harness/meshconfig.py's mesh config as an IstioOperator overlay (the second -f of install)."""
    import yaml

    from harness.meshconfig import mesh_config

    return "# Generated from harness/meshconfig.py: the mesh config every backend installs.\n" + yaml.safe_dump(
        {"apiVersion": "install.istio.io/v1alpha1", "kind": "IstioOperator", "spec": {"meshConfig": mesh_config()}},
        sort_keys=False,
    )


def write_mesh_config_overlay(directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "istio-meshconfig.yaml"
    path.write_text(mesh_config_overlay())
    return path


def istioctl_install_cmd(
    istioctl: str, kubeconfig: Path, hub: str, tag: str, overlay: Path | str = "<artifacts>/kind/istio-meshconfig.yaml"
) -> list[str]:
    return [
        istioctl,
        "install",
        f"--kubeconfig={kubeconfig}",
        "-y",
        "-f",
        str(ISTIO_OPERATOR),
        "-f",
        str(overlay),
        f"--set=hub={hub}",
        f"--set=tag={tag}",
        # Also in the files; repeated so the command alone says what matters.
        "--set=components.egressGateways[0].name=istio-egressgateway",
        "--set=components.egressGateways[0].enabled=true",
        "--set=meshConfig.accessLogFile=/dev/stdout",
        f"--readiness-timeout={READINESS_TIMEOUT}",
    ]


def istio_install_hint(hub: str, tag: str) -> str:
    """The command a cluster without Istio needs (the cluster backend's refusal names it)."""
    return " ".join(
        istioctl_install_cmd(
            "istioctl", Path("$KUBECONFIG"), hub, tag, "<python -m harness.backends.plan --mesh-config-overlay>"
        )
    )


def rollout_cmds(kubectl: str, kubeconfig: Path) -> list[list[str]]:
    k = [kubectl, f"--kubeconfig={kubeconfig}"]
    return [
        k + ["rollout", "status", "-n", ISTIO_NAMESPACE, "deployment/istiod", "--timeout=300s"],
        k + ["rollout", "status", "-n", ISTIO_NAMESPACE, "deployment/istio-egressgateway", "--timeout=300s"],
    ]


def package_version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "not installed"


def scenario_manifests() -> list[tuple[str, str, str]]:
    """(stage, mode, YAML) of every scenario rendering, with Kubernetes' trust values."""
    return [
        (stage, mode, manifests.to_yaml(manifests.render(stage, mode=mode, trust=trust_values())))
        for stage in manifests.stages()
        for mode in manifests.MODES
    ]


def setup_manifests(
    *,
    sleep_image: str,
    namespaces: Mapping[str, str] | None = None,
    run_labels: dict[str, str] | None = None,
    pems: dict[str, str] | None = None,
    gateway_api: bool = False,
    trust_prefix: str = "",
) -> dict[str, str]:
    """The cluster-side manifests the backends apply before the suites run, by file name: the
    deployed pods' namespaces (logical → actual by `namespaces`), the trust Secrets (gateway_api:
    also in the namespace of the Gateway API's deployed gateway), and one manifest per deployed
    pod of harness/pod_table.py (harness/kube/workloads.py). trust_prefix: on the Secrets' names
    (harness/kube/trust.py)."""
    ca = (pems or {}).get("public_ca", PEM.format("test public CA that signs the stand-in"))
    names = namespaces or {}
    return {
        "namespaces.yaml": workloads.namespaces_manifest(names, run_labels or {}),
        "trust-secrets.yaml": trust_secrets_yaml(pems, run_labels, gateway_api=gateway_api, prefix=trust_prefix),
        **workloads.workload_manifests(sleep_image, names, ca),
    }


def corefile_cmds(k: list[str], *, restart: bool) -> list[list[str]]:
    """How KubeBackend._set_corefile changes CoreDNS's Corefile (restart: a rollout restart makes
    CoreDNS read it; else CoreDNS's own `reload` plugin does, within its interval)."""
    cmds = [
        k + ["get", "configmap", "coredns", "-n", "kube-system", "-o", "json"],
        k + ["patch", "configmap", "coredns", "-n", "kube-system", "--type=merge", "-p", "{data: {Corefile: …}}"],
    ]
    if restart:
        cmds += [
            k + ["rollout", "restart", "-n", "kube-system", "deployment/coredns"],
            k + ["rollout", "status", "-n", "kube-system", "deployment/coredns", "--timeout=120s"],
        ]
    return cmds


def convergence_cmds(k: list[str], *, configz: bool = True) -> list[list[str]]:
    """How the backend sees that every proxy runs the config (kube.py's wait_converged); configz:
    first, that istiod holds what was applied (the first convergence follows no apply)."""
    # Each read is one HTTP request over a port-forward the run keeps open (istiod's debug port,
    # each proxy's admin port); the exec commands below read the same where a forward cannot be had.
    dump = "config_dump?resource=dynamic_active_clusters&name_regex=<marker cluster>"
    agent = pilot_agent_request_args("<ns>", "<pod>", dump)
    forwards = [
        k + ["port-forward", "-n", ISTIO_NAMESPACE, "pod/<istiod>", f":{ISTIOD_DEBUG_PORT}", "--address=127.0.0.1"],
        k + ["port-forward", "-n", "<ns>", "pod/<pod>", f":{ENVOY_ADMIN_PORT}", "--address=127.0.0.1"],
    ]
    return [*forwards, *([k + list(CONFIGZ_EXEC)] if configz else []), k + list(agent), k + list(SYNCZ_EXEC)]


def seed_wait_step(k: list[str], namespaces: Mapping[str, str], run: Action | None) -> Step:
    """Every deployed pod's rollout, then the stand-in's name looked up in one of them."""
    dns = workloads.dns_check_pod()
    dns_ns = namespaces.get(dns.namespace, dns.namespace)
    return Step(
        f"Wait for the deployed pods, and for {sites.resolved_names()[0]} to resolve to the stand-in in them",
        [
            *(
                k + ["rollout", "status", "-n", ns, target, "--timeout=180s"]
                for ns, target in workloads.rollouts(namespaces)
            ),
            k
            + [
                "exec",
                "-n",
                dns_ns,
                f"deploy/{dns.workload}",
                "-c",
                dns.container,
                "--",
                "getent",
                "hosts",
                sites.resolved_names()[0],
            ],
        ],
        run=run,
    )


def first_convergence_step(k: list[str], run: Action | None) -> Step:
    """The last setup step: setup's time until here is the backend's cold start."""
    return Step(
        "First convergence: a new marker ServiceEntry (server-side apply over REST), until every proxy has "
        f"its cluster and istiod sees every xDS type ACKed (deadline {FIRST_CONVERGENCE_TIMEOUT}s)",
        [k + list(KUBECTL_APPLY_EQUIVALENT), *convergence_cmds(k, configz=False)],
        run=run,
        timing="cold_start",
    )


def per_test_steps(istioctl_bin: str, k: list[str], namespaces: str = "") -> list[Step]:
    """What the suites do per test (printed, with no action: setup ends before it), then the scenarios."""
    return [
        Step(
            "Per test: validate (istioctl validate -f -), server-side apply (one PATCH per object over REST, "
            "harness/kube_rest.py; the kubectl equivalent below), wait until every proxy has the config",
            [[istioctl_bin, "validate", "-f", "-"], k + list(KUBECTL_APPLY_EQUIVALENT), *convergence_cmds(k)],
            note="the scenario manifests below, one stage × mTLS mode at a time",
        ),
        *(Step(f"Scenario {stage} [{mode}]{namespaces}", [], text) for stage, mode, text in scenario_manifests()),
    ]
