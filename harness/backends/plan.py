"""What the kind and cluster backends will do, as exact commands and manifests: the DRY_RUN plan.

The kind plan is the code that runs: kind_plan() makes the one list of steps, a dry run prints it,
and KindBackend.start() and stop() run it. Given the backend (a real run), each step carries the
action that performs it (Step.run), numbered and titled as printed; steps run elsewhere have none
(IMAGES=source: the engine and image builds, by with_engine outside pytest; per test: the suites).
Actions read what exists only at run time (tool paths, the run's certificates, the stand-in's
address, the built images' tags) when they run, and build their commands with the same *_cmd
builders below. cluster_plan() is made the same way and ClusterBackend.start() runs its setup
steps; its teardown is printed only (ClusterBackend.stop() does every part even when one fails).

Making the plan touches nothing: no cluster, no Docker, no download, no cache write; tools that
are not there yet are shown with the command that would fetch them. Values only known at run time
(the stand-in's address, the run's certificates) are shown as <placeholders>.

    python -m harness.backends.plan --backend kind [--istio-version 1.31] [--cluster-name NAME]
    make e2e BACKEND=kind DRY_RUN=1
"""

from __future__ import annotations

import argparse
import functools
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING

from harness import manifests
from harness.backends import tools, upstream_image
from harness.backends.kube import (
    CONFIGZ_EXEC,
    ISTIO_NAMESPACE,
    KIND_FIXTURES,
    SYNCZ_EXEC,
    TRUST_NAMES,
    UPSTREAM_HOST,
    add_hosts_block,
    pilot_agent_request_args,
    render_fixture,
    trust_values,
)
from harness.errors import HarnessError, HarnessFault
from harness.kube_rest import KUBECTL_APPLY_EQUIVALENT

if TYPE_CHECKING:  # imported where the steps are made: kind.py and cluster.py import this module
    from harness.backends.cluster import ClusterBackend
    from harness.backends.kind import KindBackend
    from harness.backends.kube import KubeBackend

KIND_CONFIG = KIND_FIXTURES / "cluster.yaml"
ISTIO_OPERATOR = KIND_FIXTURES / "istio-operator.yaml"
KIND_NETWORK = "kind"  # kind's fixed Docker network (KIND_EXPERIMENTAL_DOCKER_NETWORK overrides it)
READINESS_TIMEOUT = "5m"
PEM = "<PEM: {} (made at run time)>"
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


def kind_load_cmd(kind: str, name: str, image: str) -> list[str]:
    return [kind, "load", "docker-image", "--name", name, image]


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


# ------------------------------------------------------------------------------ plan
Action = Callable[[], object]


@dataclass
class Step:
    """One step as the plan prints it and, in a real run, as the backend performs it."""

    title: str
    commands: list[list[str]] = field(default_factory=list)
    manifest: str | None = None  # YAML (or Corefile text) the step applies
    note: str = ""
    by: str = ""  # who runs it when the backend does not (IMAGES=source: with_engine, outside pytest)
    # Bound only in a real run, so they are neither printed nor compared: a dry run's steps equal a real run's.
    run: Action | None = field(default=None, repr=False, compare=False)
    timing: str = field(default="", repr=False, compare=False)  # the backend's timings key, set once it is done


@dataclass
class Plan:
    backend: str
    versions: dict[str, str]
    tools: list[tools.Tool]
    steps: list[Step]
    teardown: list[Step]

    def render(self) -> str:
        out = [
            f"# egress-harness plan: backend {self.backend} (dry run: nothing below has been run)",
            "",
            "## Versions",
        ]
        out += [f"  {k}: {v}" for k, v in self.versions.items()]
        out += ["", "## Tools"] + [
            f"  {t.describe()}" + (f"\n      fetch: {' '.join(t.fetch)}" if t.fetch and not t.path else "")
            for t in self.tools
        ]
        for title, steps in (("Steps", self.steps), ("Teardown", self.teardown)):
            out += ["", f"## {title}"]
            for i, step in enumerate(steps, 1):
                out.append(f"{i}. {step.title}")
                if step.by:
                    out.append(f"   # run by {step.by}")
                if step.note:
                    out.append(f"   # {step.note}")
                out += [f"   $ {' '.join(cmd)}" for cmd in step.commands]
                if step.manifest is not None:
                    out.append("   ---8<--- manifest")
                    out += [f"   {line}" if line else "" for line in step.manifest.rstrip("\n").splitlines()]
                    out.append("   --->8---")
        return "\n".join(out) + "\n"


def run_steps(
    label: str, steps: list[Step], done: Callable[[Step], None] = lambda step: None, *, keep_going: bool = False
) -> None:
    """Run the steps that have an action, in order, each after one line `<label> N/M: <title>`,
    numbered as the plan prints them. The others run elsewhere: with_engine's, or the suites' per test.
    keep_going (teardown): a step that fails does not stop the later ones; the failures are
    raised together at the end."""
    last = max((number for number, step in enumerate(steps, 1) if step.run is not None), default=0)
    failures: list[str] = []
    for number, step in enumerate(steps, 1):
        if step.run is None:
            continue
        print(f"[egress-harness] {label} {number}/{last}: {step.title}", file=sys.stderr, flush=True)
        if not keep_going:
            step.run()
            done(step)
            continue
        try:
            step.run()
            done(step)
        except Exception as exc:  # noqa: BLE001 - every teardown step runs; all failures are reported
            failures.append(f"{step.title}: {exc}")
    if failures:
        raise HarnessFault(f"{label} left work undone: " + "; ".join(failures))


Bind = Callable[..., Action | None]


def _bind(backend: KubeBackend | None) -> Bind:
    """act(Backend.method, *args): the step's action bound to a real run's backend; None in a dry run."""

    def act(method: Callable[..., object], *args: object) -> Action | None:
        return None if backend is None else functools.partial(method, backend, *args)

    return act


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "not installed"


def _source_overlay() -> str:
    from harness.backends.kind import source_overlay

    return source_overlay(mesh_config_overlay())


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
    ns_default: str = "default",
    ns_test_egress: str = "test-egress",
    run_labels: dict[str, str] | None = None,
    pems: dict[str, str] | None = None,
) -> dict[str, str]:
    """The cluster-side manifests the backends apply before the suites run, by file name."""
    pems = pems or {}
    ca = pems.get("public_ca", PEM.format("test public CA that signs the stand-in"))
    return {
        "namespaces.yaml": render_fixture(
            "namespaces.yaml.j2", ns_default=ns_default, ns_test_egress=ns_test_egress, run_labels=run_labels or {}
        ),
        "trust-secrets.yaml": render_fixture(
            "trust-secrets.yaml.j2",
            gateway_namespace=ISTIO_NAMESPACE,
            run_labels=run_labels or {},
            trust_name=TRUST_NAMES["trust"],
            wrong_trust_name=TRUST_NAMES["wrong_trust"],
            client_name=TRUST_NAMES["client"],
            public_ca_pem=ca,
            untrusted_ca_pem=pems.get("untrusted_ca", PEM.format("a CA that signed nothing here")),
            client_cert_pem=pems.get("client_cert", PEM.format("the gateway's client certificate")),
            client_key_pem=pems.get("client_key", PEM.format("its key")),
        ),
        "sleep-default.yaml": render_fixture(
            "sleep.yaml.j2", namespace=ns_default, image=sleep_image, sidecar=True, upstream_ca_pem=ca
        ),
        "sleep-test-egress.yaml": render_fixture(
            "sleep.yaml.j2", namespace=ns_test_egress, image=sleep_image, sidecar=False, upstream_ca_pem=ca
        ),
    }


def source_engine_steps() -> list[Step]:
    """IMAGES=source: the harness's engine and every image build (harness/images), as they run: by
    with_engine, before pytest starts, so they have no action in KindBackend."""
    from harness.images import engine, kind_images
    from harness.images.kind_images import STEPS, _programs_title
    from harness.toolchain import programs
    from harness.toolchain.gobuild import go_mod_text

    k8s = programs.KUBERNETES_PROGRAM
    return [
        Step(
            f"Start the harness's Docker engine in network namespace {engine.NETNS} (no route off the machine)",
            [
                ["ip", "netns", "add", engine.NETNS],
                engine.nsenter(engine.dockerd_argv()),
                *[engine.nsenter(["ip", "route", "get", a]) for a in engine.PROBE_ADDRESSES],
            ],
            note="each `ip route get` must fail (nothing is sent); the runc wrapper is the default runtime only "
            "when CAP_SYS_RESOURCE is missing from the capability bounding set",
            by=WITH_ENGINE,
        ),
        Step(
            "images: " + _programs_title(),
            [
                ["go", "mod", "tidy"],
                [
                    "go",
                    "build",
                    "-trimpath",
                    "-ldflags",
                    "<version stamps>",
                    "-o",
                    f"<cache>/toolchain/{k8s.name}-{k8s.version}-<key>/bin/",
                    *k8s.packages,
                ],
            ],
            go_mod_text(k8s),
            note="one wrapper module per program, cached by a content key; the Kubernetes one is shown",
            by=WITH_ENGINE,
        ),
        *[
            Step(
                f"images: {STEPS[name]}",
                [],
                note="docker build --network=none, tag = hash of its inputs; skipped when the tag exists",
                by=WITH_ENGINE,
            )
            for name in list(STEPS)[1:]
        ],
        Step(
            f"Run pytest inside {engine.NETNS}",
            [engine.nsenter(["python", "-m", "pytest", "suites", "--backend=kind", "…"])],
            note=f"DOCKER_HOST={engine.docker_host()} EGRESS_HARNESS_IMAGES=source GOPROXY=off; kind, kubectl, istioctl and "
            f"port-forwards reach the cluster on that namespace's 127.0.0.1 ({kind_images.__name__})",
            by=WITH_ENGINE,
        ),
    ]


# ------------------------------------------------------------------------------ the kind plan
@dataclass(frozen=True)
class _KindNames:
    """What the kind steps' text names: the values known when the plan is made, placeholders for the rest."""

    cluster_name: str
    keep_cluster: bool
    source: bool
    kubeconfig: Path
    kind: tools.Tool
    kubectl: tools.Tool
    istioctl: tools.Tool
    hub: str
    tag: str
    node_image: str

    @property
    def kind_bin(self) -> str:
        return str(self.kind.path or f"<cache>/tools/kind-{tools.KIND_VERSION}/kind")

    @property
    def kubectl_bin(self) -> str:
        return str(self.kubectl.path or f"<cache>/tools/kubectl-{tools.KUBECTL_VERSION}/kubectl")

    @property
    def istioctl_bin(self) -> str:
        return str(self.istioctl.path or "istioctl")

    @property
    def k(self) -> list[str]:
        return [self.kubectl_bin, f"--kubeconfig={self.kubeconfig}"]


def kind_plan(
    *,
    cluster_name: str,
    keep_cluster: bool,
    istio_version: str,
    kubeconfig: Path | None = None,
    images: str = "registry",
    backend: KindBackend | None = None,
) -> Plan:
    """The kind backend's steps, in the order they run. A dry run prints them; given `backend` (a real
    run), the same steps carry the actions KindBackend.start() and stop() run."""
    source = images == "source"
    kind, kubectl, istioctl = _kind_tools(istio_version, source)
    hub, tag, node_image = _kind_images(istio_version, source)
    names = _KindNames(
        cluster_name,
        keep_cluster,
        source,
        kubeconfig or Path(".pytest-kind") / cluster_name / "kubeconfig",
        kind,
        kubectl,
        istioctl,
        hub,
        tag,
        node_image,
    )
    act = _bind(backend)
    return Plan(
        "kind",
        _kind_versions(names, istio_version),
        [kind, kubectl, istioctl],
        _kind_steps(names, act),
        _kind_teardown(names, act),
    )


def _kind_tools(istio_version: str, source: bool) -> tuple[tools.Tool, tools.Tool, tools.Tool]:
    """kind, kubectl and istioctl as they are now (IMAGES=source: kind and kubectl come with the images)."""
    if source:
        from harness.toolchain import programs

        return (
            tools.Tool("kind", programs.KIND.version, "built by harness/toolchain", None),
            tools.Tool("kubectl", programs.KUBERNETES, "built by harness/toolchain", None),
            tools.resolve_istioctl(istio_version, fetch=False),
        )
    return (
        tools.resolve_kind(fetch=False),
        tools.resolve_kubectl(fetch=False),
        tools.resolve_istioctl(istio_version, fetch=False),
    )


def _kind_images(istio_version: str, source: bool) -> tuple[str, str, str]:
    """Istio's hub and tag, and the node image (IMAGES=source: the tags' keys are known once built)."""
    if source:
        from harness.images.istio import HUB
        from harness.toolchain import programs

        return HUB, f"{istio_version}-<key>", f"egress-harness/kind-node:{programs.KUBERNETES}-<key>"
    hub, tag = tools.istio_images(istio_version)
    return hub, tag, tools.kind_node_image()


def _kind_versions(n: _KindNames, istio_version: str) -> dict[str, str]:
    versions = {
        "kind": f"{tools.KIND_VERSION} (NetworkPolicy enforced by kindnet from {tools.KIND_MIN_NETWORK_POLICY})",
        "node image": n.node_image,
        "Kubernetes": tools.DEFAULT_KUBERNETES,
        "kubectl": tools.KUBECTL_VERSION + f" (±1 minor of Kubernetes {tools.DEFAULT_KUBERNETES})",
        "Istio": f"{istio_version} (istioctl {n.istioctl.version}); images {n.hub}/pilot:{n.tag}, {n.hub}/proxyv2:{n.tag}",
        "image base": f"Debian {upstream_image.SUITE} {upstream_image.VARIANT} + {', '.join(upstream_image.BASE_PACKAGES)}",
        "pytest-kind-ng": _version("pytest-kind-ng"),
        "docker SDK": _version("docker"),
        "images": "source: every image built on this machine" if n.source else "registry: pulled by the Docker engine",
    }
    if n.source:
        versions["kind"] = (
            f"{tools.KIND_VERSION} (NetworkPolicy enforced by kube-router's firewall: harness/toolchain/programs.py)"
        )
        versions["Kubernetes"] = n.kubectl.version
        versions["kubectl"] = f"{n.kubectl.version} (built with Kubernetes)"
    return versions


def _kind_config_text(source: bool) -> str:
    if not source:
        return KIND_CONFIG.read_text()
    import tempfile

    from harness.backends.kind import source_kind_config

    with tempfile.TemporaryDirectory() as tmp:
        return source_kind_config(Path(tmp)).read_text()


def _convergence_cmds(k: list[str], *, configz: bool = True) -> list[list[str]]:
    """How the backend sees that every proxy runs the config (kube.py's wait_converged); configz:
    first, that istiod holds what was applied (the first convergence follows no apply)."""
    dump = "config_dump?resource=dynamic_active_clusters&name_regex=<marker cluster>"
    agent = pilot_agent_request_args("<ns>", "<pod>", dump)
    return [*([k + list(CONFIGZ_EXEC)] if configz else []), k + list(agent), k + list(SYNCZ_EXEC)]


def _seed_wait_step(k: list[str], ns_default: str, ns_test_egress: str, run: Action | None) -> Step:
    return Step(
        f"Wait for the sleep pods, and for {UPSTREAM_HOST} to resolve to the stand-in in them",
        [
            k + ["rollout", "status", "-n", ns_default, "deployment/sleep", "--timeout=180s"],
            k + ["rollout", "status", "-n", ns_test_egress, "deployment/sleep", "--timeout=180s"],
            k + ["exec", "-n", ns_test_egress, "deploy/sleep", "-c", "sleep", "--", "getent", "hosts", UPSTREAM_HOST],
        ],
        run=run,
    )


def _first_convergence_step(k: list[str], run: Action | None) -> Step:
    """The last setup step: setup's time until here is the backend's cold start."""
    return Step(
        "First convergence: a new marker ServiceEntry (server-side apply over REST), until every proxy has "
        f"its cluster and istiod sees every xDS type ACKed (deadline {FIRST_CONVERGENCE_TIMEOUT}s)",
        [k + list(KUBECTL_APPLY_EQUIVALENT), *_convergence_cmds(k, configz=False)],
        run=run,
        timing="cold_start",
    )


def _per_test_steps(istioctl_bin: str, k: list[str], namespaces: str = "") -> list[Step]:
    """What the suites do per test (printed, with no action: setup ends before it), then the scenarios."""
    return [
        Step(
            "Per test: validate (istioctl validate -f -), server-side apply (one PATCH per object over REST, "
            "harness/kube_rest.py; the kubectl equivalent below), wait until every proxy has the config",
            [[istioctl_bin, "validate", "-f", "-"], k + list(KUBECTL_APPLY_EQUIVALENT), *_convergence_cmds(k)],
            note="the scenario manifests below, one stage × mTLS mode at a time",
        ),
        *(Step(f"Scenario {stage} [{mode}]{namespaces}", [], text) for stage, mode, text in scenario_manifests()),
    ]


def _kind_steps(n: _KindNames, act: Bind) -> list[Step]:
    """Setup: run by KindBackend.start() up to the per-test step (IMAGES=source: after with_engine's)."""
    from harness.backends.kind import KindBackend
    from harness.images.istio import image_refs

    k = n.k
    sleep_image = upstream_image.sleep_tag()
    up_image = upstream_image.upstream_tag()
    upstream_name = upstream_container_name(n.cluster_name)
    steps = source_engine_steps() if n.source else []
    steps += [
        Step(
            "Resolve the tools (fetch into the cache what is missing)",
            [list(t.fetch) for t in (n.kind, n.kubectl, n.istioctl) if t.path is None and t.fetch],
            note="first the images with_engine built, named by ensure_all (every one cached by then: nothing is "
            "rebuilt); kind and kubectl are the ones built with them"
            if n.source
            else "",
            run=act(KindBackend.resolve_tools),
            timing="tools",
        ),
        Step(
            f"Create (or with --keep-cluster reuse) the kind cluster {n.cluster_name!r}",
            [kind_create_cmd(n.kind_bin, n.cluster_name, n.kubeconfig, n.node_image)],
            _kind_config_text(n.source),
            note="pytest_kind.KindCluster(name, kubeconfig, image, kind_path, kubectl_path).create(config_file) runs this"
            + (" (kept afterwards)" if n.keep_cluster else ""),
            run=act(KindBackend.create_cluster),
            timing="cluster",
        ),
        Step(
            "Build the images on the local Docker engine (no pull; base from debootstrap, cached)",
            [
                upstream_image.debootstrap_command(Path("<tmp>/root"), "<apt's Debian mirror>"),
                ["docker", "import", str(upstream_image.rootfs_tarball_path()), upstream_image.base_tag()],
                ["docker", "tag", upstream_image.base_tag(), sleep_image],
                [
                    "docker",
                    "build",
                    "--network=none",
                    "--build-arg",
                    f"BASE_IMAGE={upstream_image.base_tag()}",
                    "-t",
                    up_image,
                    "mock_upstream/",
                ],
            ],
            note="through the docker SDK; debootstrap only when the rootfs tarball is not cached",
            run=act(KindBackend.build_images),
        ),
        Step(
            "Load the sleep image into the cluster" + (" (and Istio's pilot, proxyv2)" if n.source else ""),
            [
                kind_load_cmd(n.kind_bin, n.cluster_name, image)
                for image in ([sleep_image, *image_refs(n.hub, n.tag)] if n.source else [sleep_image])
            ],
            run=act(KindBackend.load_images),
            timing="images",
        ),
        Step(
            "Install Istio with the egress gateway",
            [istioctl_install_cmd(n.istioctl_bin, n.kubeconfig, n.hub, n.tag)],
            ISTIO_OPERATOR.read_text() + "---\n" + (_source_overlay() if n.source else mesh_config_overlay()),
            note="the second -f is written from harness/meshconfig.py at run time (shown after the ---)",
            run=act(KindBackend.install_istio),
        ),
        Step(
            "Wait for istiod and the egress gateway (deadline 300s each)",
            rollout_cmds(n.kubectl_bin, n.kubeconfig),
            run=act(KindBackend.wait_for_istio),
            timing="istio",
        ),
        Step(
            f"Run the stand-in for {UPSTREAM_HOST} as a container on the {KIND_NETWORK!r} Docker network",
            [
                [
                    "docker",
                    "create",
                    "--name",
                    upstream_name,
                    "--network",
                    KIND_NETWORK,
                    "-p",
                    "127.0.0.1::9901",
                    "-e",
                    f"{upstream_image.CONTROL_TOKEN_ENV}=<the run's random control token>",
                    up_image,
                    *upstream_image.upstream_command(),
                ],
                ["docker", "cp", "<run's stand-in cert, key, client CA>", "<container>:/etc/mock-upstream/"],
                ["docker", "start", upstream_name],
            ],
            note=(
                "its control port is published on 127.0.0.1 only and answers only the run's token; "
                "its certificate is issued by the run's test public CA"
            ),
            run=act(KindBackend.start_upstream),
        ),
        Step(
            f"Cluster DNS: {UPSTREAM_HOST} -> the stand-in (CoreDNS hosts entry)",
            [
                k + ["get", "configmap", "coredns", "-n", "kube-system", "-o", "json"],
                k + ["apply", "-f", "-", "# the coredns ConfigMap with the block below added"],
                k + ["rollout", "restart", "-n", "kube-system", "deployment/coredns"],
                k + ["rollout", "status", "-n", "kube-system", "deployment/coredns", "--timeout=120s"],
            ],
            add_hosts_block("", "<stand-in address on the kind network>", run=n.cluster_name),
            note="IMAGES=source: the Corefile's `forward` blocks are removed too (nothing leaves the cluster)"
            if n.source
            else "",
            run=act(KindBackend.point_dns_at_upstream),
        ),
        *(
            Step(f"Apply {fname}", [k + ["apply", "-f", "-"]], text, run=act(KindBackend.apply_setup_manifest, fname))
            for fname, text in setup_manifests(sleep_image=sleep_image).items()
        ),
        _seed_wait_step(k, "default", "test-egress", act(KindBackend.wait_for_seed)),
        _first_convergence_step(k, act(KindBackend.wait_converged, FIRST_CONVERGENCE_TIMEOUT)),
        *_per_test_steps(n.istioctl_bin, k),
    ]
    return steps


def _kind_teardown(n: _KindNames, act: Bind) -> list[Step]:
    """Run by KindBackend.stop(), but the engine's (IMAGES=source), which with_engine runs."""
    from harness.backends.kind import KindBackend

    teardown = [
        Step(
            "Stop port-forwards, remove the stand-in container",
            [["docker", "rm", "-f", upstream_container_name(n.cluster_name)]],
            run=act(KindBackend.remove_upstream),
        ),
        Step(
            "Keep the cluster (--keep-cluster), with its CoreDNS put back as it was",
            run=act(KindBackend.release_cluster),
        )
        if n.keep_cluster
        else Step(
            "Delete the cluster",
            [kind_delete_cmd(n.kind_bin, n.cluster_name, n.kubeconfig)],
            run=act(KindBackend.release_cluster),
        ),
    ]
    if n.source:
        from harness.images import engine

        teardown.append(
            Step(
                f"Remove every container and network of the engine, stop dockerd, delete netns {engine.NETNS}",
                [
                    ["docker", "rm", "-f", "<every container>"],
                    ["kill", "-TERM", "<dockerd pid>"],
                    ["ip", "netns", "delete", engine.NETNS],
                ],
                note="always, after pass, failure or Ctrl-C; images stay cached",
                by=WITH_ENGINE,
            )
        )
    return teardown


def cluster_plan(
    *, kubeconfig: Path | None, istio_version: str, run_id: str = "<run>", backend: ClusterBackend | None = None
) -> Plan:
    """The cluster backend's steps, in the order they run. A dry run prints them; given `backend` (a
    real run), the setup steps carry the actions ClusterBackend.start() runs. The teardown is printed
    only: stop() does every part of it even when one fails, and reports them all."""
    from harness.backends.cluster import RUN_LABEL, ClusterBackend, run_namespaces

    kubectl = tools.resolve_kubectl(fetch=False)
    istioctl = tools.resolve_istioctl(istio_version, fetch=False)
    hub, tag = tools.istio_images(istio_version)
    kc = kubeconfig or Path("$KUBECONFIG")
    kubectl_bin = str(kubectl.path or "kubectl")
    k = [kubectl_bin, f"--kubeconfig={kc}"]
    ns = run_namespaces(run_id)
    labels = {RUN_LABEL: run_id}
    act = _bind(backend)
    versions = {"Istio (must already be installed)": istio_version, "kubectl": kubectl.version}
    steps = [
        Step(
            "Refuse unless Istio and its egress gateway are installed",
            [k + ["get", "deployment", "-n", ISTIO_NAMESPACE, "istiod", "istio-egressgateway"]],
            note=f"otherwise: {istio_install_hint(hub, tag)}",
            run=act(ClusterBackend.preflight),
        ),
        Step(
            "Run the stand-in in a namespace of its own",
            [k + ["apply", "-f", "-"]],
            note=f"namespace {ns['internet']}",
            run=act(ClusterBackend.start_upstream),
        ),
        Step(
            "CoreDNS hosts entry (restored at the end)",
            [k + ["apply", "-f", "-"]],
            add_hosts_block("", "<stand-in Service ClusterIP>", run=run_id),
            run=act(ClusterBackend.point_dns_at_upstream),
        ),
        *(
            Step(
                f"Apply {fname}", [k + ["apply", "-f", "-"]], text, run=act(ClusterBackend.apply_setup_manifest, fname)
            )
            for fname, text in setup_manifests(
                sleep_image="$EGRESS_HARNESS_SLEEP_IMAGE",
                ns_default=ns["default"],
                ns_test_egress=ns["test-egress"],
                run_labels=labels,
            ).items()
        ),
        _seed_wait_step(k, ns["default"], ns["test-egress"], act(ClusterBackend.wait_for_seed)),
        _first_convergence_step(k, act(ClusterBackend.wait_converged, FIRST_CONVERGENCE_TIMEOUT)),
        *_per_test_steps(
            str(istioctl.path or "istioctl"), k, f" (namespaces mapped to {ns['default']}, {ns['test-egress']})"
        ),
    ]
    teardown = [
        Step(
            "Delete the run's namespaces and secrets, restore CoreDNS and namespace labels",
            [
                k + ["delete", "namespace", "-l", f"{RUN_LABEL}={run_id}"],
                k + ["delete", "secret", "-n", ISTIO_NAMESPACE, "-l", f"{RUN_LABEL}={run_id}"],
            ],
        )
    ]
    return Plan("cluster", versions, [kubectl, istioctl], steps, teardown)


def main(argv: list[str] | None = None) -> int:
    from harness.versions import DEFAULT_ISTIO_VERSION

    parser = argparse.ArgumentParser(prog="python -m harness.backends.plan", description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=["kind", "cluster"], default="kind")
    parser.add_argument("--istio-version", default=DEFAULT_ISTIO_VERSION)
    parser.add_argument("--cluster-name", default="egress-harness")
    parser.add_argument("--keep-cluster", action="store_true")
    parser.add_argument("--images", choices=["registry", "source"], default="registry")
    parser.add_argument("--kubeconfig", default=None)
    parser.add_argument(
        "--mesh-config-overlay",
        action="store_true",
        help="print only the mesh-config overlay for `istioctl install -f` and exit",
    )
    args = parser.parse_args(argv)
    if args.mesh_config_overlay:
        sys.stdout.write(mesh_config_overlay())
        return 0
    try:
        if args.backend == "kind":
            plan = kind_plan(
                cluster_name=args.cluster_name,
                keep_cluster=args.keep_cluster,
                istio_version=args.istio_version,
                kubeconfig=Path(args.kubeconfig) if args.kubeconfig else None,
                images=args.images,
            )
        else:
            plan = cluster_plan(
                kubeconfig=Path(args.kubeconfig) if args.kubeconfig else None, istio_version=args.istio_version
            )
    except HarnessError as exc:
        print(f"egress-harness: error: {exc}", file=sys.stderr)
        return 2
    sys.stdout.write(plan.render())
    return 0


if __name__ == "__main__":
    sys.exit(main())
