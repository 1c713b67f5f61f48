"""`make e2e BACKEND=kind DRY_RUN=1`: the plan is complete, exact, and made without touching anything.

The end-to-end check runs pytest with the real conftest (`--egress-backend=kind --egress-dry-run`) in a
subprocess whose cache directory is empty and whose Docker host does not exist: the plan must
come out all the same, and the cache must still be empty afterwards.
"""

from __future__ import annotations

import functools
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from harness import manifests
from harness.backends import cluster, kind, kube_steps, steps, tools, upstream_image
from harness.errors import HarnessError
from harness.kube.trust import trust_values

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def kind_plan_text(istio_binaries) -> str:
    return kind.kind_plan(cluster_name="egress-harness", keep_cluster=False, istio_version="1.31").render()


def test_plan_has_versions_and_pins(kind_plan_text):
    hub, tag = tools.istio_images("1.31")
    for needle in (
        f"kind: {tools.KIND_VERSION}",
        tools.kind_node_image(),
        f"kubectl: {tools.KUBECTL_VERSION}",
        "Kubernetes: 1.37",
        f"{hub}/pilot:{tag}",
        f"{hub}/proxyv2:{tag}",
        "istioctl 1.31-dev",
        f"NetworkPolicy enforced by kindnet from {tools.KIND_MIN_NETWORK_POLICY}",
        "pytest-kind-ng: 26.",
        "Debian bookworm minbase + python3-minimal, curl, openssl",
    ):
        assert needle in kind_plan_text, needle


def test_plan_has_the_exact_commands(kind_plan_text, istio_binaries):
    kubeconfig = Path(".pytest-kind/egress-harness/kubeconfig")
    hub, tag = tools.istio_images("1.31")
    kind = tools.resolve_kind(fetch=False)
    kind_bin = str(kind.path or "<cache>/toolchain/kind-v0.33.0-<key>/bin/kind")
    # Written out literally: built with the function under test, the expectation could not fail.
    fixtures = REPO / "fixtures" / "kind"
    create = (
        f"{kind_bin} create cluster --name=egress-harness --kubeconfig={kubeconfig} "
        f"--image={tools.kind_node_image()} --config {fixtures / 'cluster.yaml'}"
    )
    install = (
        f"{istio_binaries.istioctl} install --kubeconfig={kubeconfig} -y -f {fixtures / 'istio-operator.yaml'} "
        f"-f <artifacts>/kind/istio-meshconfig.yaml --set=hub={hub} --set=tag={tag} "
        "--set=components.egressGateways[0].name=istio-egressgateway "
        "--set=components.egressGateways[0].enabled=true --set=meshConfig.accessLogFile=/dev/stdout "
        "--readiness-timeout=5m"
    )
    assert f"$ {create}" in kind_plan_text
    assert f"$ {install}" in kind_plan_text
    for flag in (
        "--set=components.egressGateways[0].name=istio-egressgateway",
        "--set=components.egressGateways[0].enabled=true",
        "--set=meshConfig.accessLogFile=/dev/stdout",
        f"--set=hub={hub}",
        f"--set=tag={tag}",
        "-f " + str(kube_steps.ISTIO_OPERATOR),
        "--readiness-timeout=5m",
    ):
        assert flag in install
    for needle in (
        f"load docker-image --name egress-harness {upstream_image.sleep_tag()}",
        "rollout status -n istio-system deployment/istiod --timeout=300s",
        "rollout status -n istio-system deployment/istio-egressgateway --timeout=300s",
        "docker build --network=none",
        "--network kind",
        "-p 127.0.0.1::9901",
        "rollout restart -n kube-system deployment/coredns",
        "getent hosts edition.cnn.com",
        "istioctl validate -f -",
        "pilot-agent request GET config_dump?resource=dynamic_active_clusters",
        "pilot-discovery request GET /debug/syncz",
    ):
        assert needle in kind_plan_text, needle
    teardown = kind_plan_text.split("## Teardown", 1)[1]
    assert "delete cluster --name=egress-harness" in teardown


def _indented(text: str) -> str:
    return "\n".join(f"   {line}" if line else "" for line in text.rstrip("\n").splitlines())


def test_plan_has_every_manifest(kind_plan_text):
    # The kind config and the IstioOperator, verbatim.
    assert _indented(kube_steps.KIND_CONFIG.read_text()) in kind_plan_text
    assert _indented(kube_steps.ISTIO_OPERATOR.read_text()) in kind_plan_text
    assert _indented(kube_steps.mesh_config_overlay()) in kind_plan_text  # the second -f, from harness/meshconfig.py
    assert "REGISTRY_ONLY" in kind_plan_text and "accessLogEncoding: JSON" in kind_plan_text
    # The cluster-side manifests (with placeholders for the run's PEMs).
    for name, text in kube_steps.setup_manifests(sleep_image=upstream_image.sleep_tag()).items():
        assert f"Apply {name}" in kind_plan_text
        assert _indented(text) in kind_plan_text, name
    assert "edition.cnn.com:53 {" in kind_plan_text
    # Every scenario stage in both modes, exactly as the backend will apply it.
    for stage in manifests.STAGES:
        for mode in manifests.MODES:
            text = manifests.to_yaml(manifests.render(stage, mode=mode, trust=trust_values()))
            assert f"Scenario {stage} [{mode}]" in kind_plan_text
            assert _indented(text) in kind_plan_text, (stage, mode)


def test_keep_cluster_plan_does_not_delete(istio_binaries):
    text = kind.kind_plan(cluster_name="mine", keep_cluster=True, istio_version="1.31").render()
    teardown = text.split("## Teardown", 1)[1]
    assert "delete cluster" not in teardown and "Keep the cluster" in teardown
    assert "--name=mine" in text


def _kind_backend(tmp_path, monkeypatch, images: str):
    """A KindBackend as make_remote_backend makes it, not started (nothing is contacted)."""
    from harness.backends.kind import KindBackend

    monkeypatch.setenv("EGRESS_HARNESS_IMAGES", images)
    if images == "source":  # what with_engine sets for the suites
        monkeypatch.setenv("DOCKER_HOST", "unix:///run/eh-engine/docker.sock")
    return KindBackend(cluster_name="egress-harness", keep_cluster=False, istio_version="1.31", artifacts=tmp_path)


def _cluster_backend(tmp_path, monkeypatch):
    """A ClusterBackend as make_remote_backend makes it, with stand-in tools (nothing is contacted)."""
    from harness.backends.cluster import ClusterBackend

    kubectl = tmp_path / "bin" / "kubectl"
    kubectl.parent.mkdir()
    kubectl.write_text('#!/bin/sh\necho \'{"clientVersion": {"gitVersion": "v1.37.0"}}\'\n')
    kubectl.chmod(0o755)
    (tmp_path / "bin" / "istioctl").write_text("")
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text("apiVersion: v1\nkind: Config\n")
    for name, value in {
        "EGRESS_HARNESS_KUBECTL": str(kubectl),
        "EGRESS_HARNESS_ISTIO_BIN": str(kubectl.parent),
        "EGRESS_HARNESS_SLEEP_IMAGE": "registry.example/sleep:1",
        "EGRESS_HARNESS_UPSTREAM_IMAGE": "registry.example/mock-upstream:1",
    }.items():
        monkeypatch.setenv(name, value)
    return ClusterBackend(kubeconfig=kubeconfig, istio_version="1.31", artifacts=tmp_path / "artifacts")


@pytest.fixture(params=["kind", "kind IMAGES=source", "cluster"])
def real_and_dry(request, tmp_path, monkeypatch) -> tuple[steps.Plan, steps.Plan]:
    """A real run's plan (its backend made, not started) and the dry run's, for the same run."""
    if request.param == "cluster":
        backend = _cluster_backend(tmp_path, monkeypatch)
        dry = cluster.cluster_plan(kubeconfig=backend.kubectl.kubeconfig, istio_version="1.31", run_id=backend.run_id)
        return backend.make_plan(), dry
    images = "source" if "source" in request.param else "registry"
    real = _kind_backend(tmp_path, monkeypatch, images).make_plan()
    return real, kind.kind_plan(cluster_name="egress-harness", keep_cluster=False, istio_version="1.31", images=images)


def test_the_dry_run_prints_the_steps_a_real_run_runs(real_and_dry):
    """One function makes both: a real run's plan (with actions) prints exactly as the dry run's."""
    real, dry = real_and_dry
    assert [s.title for s in real.steps] == [s.title for s in dry.steps]
    assert [s.title for s in real.teardown] == [s.title for s in dry.teardown]
    assert real.render() == dry.render()
    assert not [s.title for s in dry.steps + dry.teardown if s.run is not None], "a dry run has nothing to run"


def test_every_setup_step_of_a_real_run_has_an_action(real_and_dry):
    """start() runs every step before the per-test one, so none can be printed but not run; the only
    exceptions are with_engine's (IMAGES=source), which run outside pytest and say so."""
    real, _ = real_and_dry
    per_test = next(i for i, s in enumerate(real.steps) if s.title.startswith("Per test:"))
    setup = real.steps[:per_test]
    assert all((s.run is None) == (s.by == kube_steps.WITH_ENGINE) for s in setup)
    assert not [s.title for s in real.steps[per_test:] if s.run is not None], "per-test steps run in the suites"
    timings = [s.timing for s in setup if s.timing]
    if real.backend == "kind":
        assert all((s.run is None) == (s.by == kube_steps.WITH_ENGINE) for s in real.teardown)
        assert timings == ["tools", "cluster", "images", "istio", "cold_start"]
    else:  # ClusterBackend.stop() does its teardown itself, every part even when one fails
        assert timings == ["cold_start"]
    engine = kind.source_engine_steps() if real.versions.get("images", "").startswith("source") else []
    assert [s.title for s in setup if s.run is None] == [s.title for s in engine]


def test_start_and_stop_run_the_plans_steps_in_order(tmp_path, monkeypatch, capsys):
    """KindBackend.start() and stop() run the plan's actions in its order, one numbered line each, and
    write the phase timings; the actions are recorders here (nothing is started)."""
    import json

    from harness.backends import kind

    class Engine:
        closed = False

        def close(self):
            self.closed = True

    engine = Engine()
    monkeypatch.setattr(kind, "preflight", lambda: None)
    monkeypatch.setattr(kind, "docker_client", lambda: engine)
    backend = _kind_backend(tmp_path, monkeypatch, "registry")
    bound = backend.make_plan()
    ran: list[str] = []
    for step in bound.steps + bound.teardown:
        if step.run is not None:
            step.run = functools.partial(ran.append, step.title)
    monkeypatch.setattr(backend, "make_plan", lambda: bound)
    backend.timings = {}  # KubeBackend's, which the real first step sets up

    backend.start()
    setup = [s.title for s in bound.steps if s.run is not None]
    assert ran == setup
    err = capsys.readouterr().err
    last = len(setup)
    assert f"[egress-harness] kind step 1/{last}: Resolve the tools" in err
    install = next(i for i, s in enumerate(bound.steps, 1) if s.title == "Install Istio with the egress gateway")
    assert f"[egress-harness] kind step {install}/{last}: Install Istio with the egress gateway\n" in err
    timings = json.loads((tmp_path / "kind" / "timings.json").read_text())
    assert list(timings["cumulative_seconds"]) == ["tools", "cluster", "images", "istio", "cold_start"]

    ran.clear()
    backend.stop()
    assert ran == [s.title for s in bound.teardown] and engine.closed
    assert "[egress-harness] kind teardown 2/2: Delete the cluster" in capsys.readouterr().err


def test_cluster_start_runs_the_plans_setup_steps_in_order(tmp_path, monkeypatch, capsys):
    backend = _cluster_backend(tmp_path, monkeypatch)
    bound = backend.make_plan()
    ran: list[str] = []
    for step in bound.steps:
        if step.run is not None:
            step.run = functools.partial(ran.append, step.title)
    monkeypatch.setattr(backend, "make_plan", lambda: bound)

    backend.start()
    assert ran == [s.title for s in bound.steps if s.run is not None]
    assert ran[0] == "Refuse unless Istio and its egress gateway are installed" and ran[-1].startswith("First")
    assert f"[egress-harness] cluster step 1/{len(ran)}: Refuse unless" in capsys.readouterr().err
    assert list(backend.timings) == ["cold_start"]


def test_cluster_plan_refusal_hint_and_namespaces(tmp_path, istio_binaries):
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text("apiVersion: v1\nkind: Config\n")
    text = cluster.cluster_plan(kubeconfig=kubeconfig, istio_version="1.31", run_id="abc123").render()
    assert "otherwise: istioctl install" in text and "components.egressGateways[0].enabled=true" in text
    assert "name: eh-abc123-default" in text and "name: eh-abc123-test-egress" in text
    assert 'egress-harness/run: "abc123"' in text
    assert "create cluster" not in text and "delete cluster" not in text


def test_cluster_plan_touches_only_what_is_its_own_or_put_back(tmp_path, istio_binaries):
    """On a cluster it shares with its owner the backend names its Secrets and its marker by the
    run, and changes the Corefile by a patch that CoreDNS's reload plugin reads: no restart, no
    `apply` (whose last-applied annotation would stay). tests/kind/test_cluster_backend.py holds
    the same against a real cluster, by listing it before and after."""
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text("apiVersion: v1\nkind: Config\n")
    plan = cluster.cluster_plan(kubeconfig=kubeconfig, istio_version="1.31", run_id="abc123")
    text = plan.render()
    trust = next(s for s in plan.steps if s.title == "Apply trust-secrets.yaml")
    secrets = {(d["metadata"]["namespace"], d["metadata"]["name"]) for d in yaml.safe_load_all(trust.manifest or "")}
    assert secrets == {
        ("istio-system", "eh-abc123-edition-cnn-com-ca"),
        ("istio-system", "eh-abc123-untrusted-ca"),
        ("istio-system", "eh-abc123-edition-cnn-com-client"),
    }
    coredns = next(s for s in plan.steps if s.title.startswith("CoreDNS"))
    assert [c[2:5] for c in coredns.commands] == [
        ["get", "configmap", "coredns"],
        ["patch", "configmap", "coredns"],
    ]
    assert "rollout restart" not in text
    teardown = " ".join(" ".join(c) for s in plan.teardown for c in s.commands)
    assert "delete serviceentry -n istio-system egress-harness-sync-abc123" in teardown
    assert "patch configmap coredns" in teardown


def test_dry_run_through_pytest_touches_nothing(tmp_path, istio_binaries):
    """What `make e2e BACKEND=kind DRY_RUN=1` runs: the suites with --egress-backend=kind --egress-dry-run print
    the plan and exit 0, with an empty cache that stays empty, no Docker engine, no kind on PATH."""
    cache = tmp_path / "cache"
    cache.mkdir()
    artifacts = tmp_path / "artifacts"
    path_dirs = [d for d in os.environ.get("PATH", "").split(os.pathsep) if d and not (Path(d) / "kind").exists()]
    env = dict(
        os.environ,
        EGRESS_HARNESS_CACHE=str(cache),
        DOCKER_HOST="unix:///nonexistent/docker.sock",
        EGRESS_HARNESS_ISTIO_BIN=str(istio_binaries.istioctl.parent),
        PATH=os.pathsep.join(path_dirs),
    )
    env.pop("PYTEST_ADDOPTS", None)
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "suites/test_troubleshooting.py",
            "-q",
            "-p",
            "no:cacheprovider",
            "--egress-backend=kind",
            "--egress-dry-run",
            "--egress-cluster-name=ci-kind",
            f"--egress-artifacts={artifacts}",
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "# egress-harness plan: backend kind" in proc.stdout
    assert "create cluster --name=ci-kind" in proc.stdout
    assert "dry run: the kind plan is printed above" in proc.stdout + proc.stderr
    assert (artifacts / "plan-kind.txt").read_text() in proc.stdout
    assert list(cache.iterdir()) == [], "the dry run wrote to the cache"
    assert not (REPO / ".pytest-kind" / "ci-kind").exists()


def test_bad_input_is_one_line_before_anything_starts(tmp_path):
    from harness.backends.remote import make_remote_backend

    class Config:
        """What setting() reads of a pytest config: options by dest, no ini file."""

        def __init__(self, **opts):
            self.opts = {
                "egress_backend": "kind",
                "egress_istio_version": "1.31",
                "egress_cluster_name": "egress-harness",
                "egress_keep_cluster": False,
                "egress_kubeconfig": None,
                "egress_dry_run": False,
                **opts,
            }

        def getoption(self, name, default=None):
            return self.opts[name]

        def getini(self, name):
            return None

    cases = [
        (Config(egress_cluster_name="Bad_Name"), "not a valid kind cluster name"),
        (Config(egress_istio_version="0.8"), "unknown Istio version"),
        (Config(egress_kubeconfig=str(tmp_path / "k")), "--egress-kubeconfig is for BACKEND=cluster"),
        (Config(egress_backend="cluster", egress_dry_run=True), "needs a kubeconfig"),
        (Config(egress_backend="cluster", egress_kubeconfig=str(tmp_path / "missing")), "does not exist"),
    ]
    env_kc = os.environ.pop("KUBECONFIG", None)
    try:
        for config, message in cases:
            with pytest.raises(HarnessError, match=message) as info:
                make_remote_backend(config, tmp_path / "artifacts")
            assert "\n" not in str(info.value)
    finally:
        if env_kc is not None:
            os.environ["KUBECONFIG"] = env_kc
    assert not (tmp_path / "artifacts").exists()


def test_nightly_workflow_runs_the_kind_suites_and_uploads_artifacts():
    import yaml

    from harness.versions import resolve_release

    wf = yaml.safe_load((REPO / ".github/workflows/nightly.yml").read_text())
    job = wf["jobs"]["e2e-kind"]
    # Released versions: istioctl and images of the release, nothing of Istio built on the runner.
    assert len(job["strategy"]["matrix"]["istio"]) >= 2
    assert all(resolve_release(v).released for v in job["strategy"]["matrix"]["istio"])
    assert all(tools.istio_images(v) == ("docker.io/istio", v) for v in job["strategy"]["matrix"]["istio"])
    runs = [s.get("run", "") for s in job["steps"]]
    assert any("make e2e BACKEND=kind" in r and "DRY_RUN" not in r for r in runs)
    assert any("DRY_RUN=1" in r for r in runs)
    upload = next(s for s in job["steps"] if str(s.get("uses", "")).startswith("actions/upload-artifact"))
    assert upload["if"] == "always()"
    assert job["timeout-minutes"] <= 90


def test_a_pod_is_one_row_on_the_kubernetes_backends(tmp_path, monkeypatch, istio_binaries):
    """A row added to (a copy of) harness/pod_table.py is all it takes: its namespace, manifest and
    rollout appear in the kind and the cluster plans, and the backend finds and can redeploy it."""
    from harness import pod_table
    from harness.backends.kube import KubeBackend
    from harness.kube.kubectl import Kubectl

    row = pod_table.PodSpec(
        "payments", "client", "payments-client", "sidecar", "app", {"app": "payments-client"}, workload="client"
    )
    monkeypatch.setattr(pod_table, "PODS", {**pod_table.PODS, row.key: row})

    kind_text = kind.kind_plan(cluster_name="egress-harness", keep_cluster=False, istio_version="1.31").render()
    assert "Apply client-payments.yaml" in kind_text
    assert "rollout status -n payments deployment/client --timeout=180s" in kind_text
    for needle in ("name: client", "serviceAccountName: payments-client", "- name: app", 'app: "payments-client"'):
        assert needle in kind_text, needle
    namespaces = kind_text.split("Apply namespaces.yaml", 1)[1].split("--->8---", 1)[0]
    assert "name: payments" in namespaces and namespaces.count("istio-injection: enabled") == 2, namespaces

    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text("apiVersion: v1\nkind: Config\n")
    cluster_text = cluster.cluster_plan(kubeconfig=kubeconfig, istio_version="1.31", run_id="abc123").render()
    assert "Apply client-payments.yaml" in cluster_text and "name: eh-abc123-payments" in cluster_text
    assert "rollout status -n eh-abc123-payments deployment/client" in cluster_text

    no_pods = tmp_path / "kubectl"  # a kubectl that lists no pods: the lookup, not a cluster, is tested
    no_pods.write_text("#!/bin/sh\necho '{\"items\": []}'\n")
    no_pods.chmod(0o755)
    backend = KubeBackend(artifacts=tmp_path, kubectl=Kubectl(no_pods, kubeconfig))
    with pytest.raises(HarnessError, match="expected one running pod for payments/client"):
        backend.pod_name("payments/client")  # found in the table, so looked for by its labels
    with pytest.raises(HarnessError, match=r"only the pods the backend deploys \(.*payments/client\)"):
        backend.redeploy(pod_table.GATEWAY, sidecar=True)
