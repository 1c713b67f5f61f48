"""BACKEND=cluster on a cluster the harness did not make for it: the suites run through the cluster
backend against this session's kind cluster (Istio installed by the kind backend, as a team's
cluster has it), from a machine state with none of the harness's builds: an empty cache
(EGRESS_HARNESS_CACHE), builds refused (EGRESS_HARNESS_NO_BUILDS), and only what a cluster user
brings: a kubeconfig, kubectl, istioctl, and the two images in a registry the cluster pulls from
(here: loaded into the kind node, before the first listing).

The cluster is listed before and after (every listable object's kind, namespace and name; the
contents of ConfigMaps and Secrets; every namespace's labels), and the two listings must be equal:
the run leaves the cluster as it found it. Both listings and the nested run's output are written
to the test's evidence (on a failure, under its artifacts folder)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from harness.backends.kind import KindBackend
from harness.backends.kube_steps import kind_load_cmd
from harness.backends.upstream_image import sleep_tag
from harness.istio_binaries import NO_BUILDS_ENV
from harness.kube.kubectl import Kubectl
from harness.project_files import SUITES
from harness.pytest_options import setting

pytestmark = pytest.mark.kind

# Objects whose number or content changes with time on an idle cluster: leader-election leases,
# events, endpoint bookkeeping of pods that restart on their own schedule.
VOLATILE = {
    "events",
    "events.events.k8s.io",
    "leases.coordination.k8s.io",
    "endpoints",
    "endpointslices.discovery.k8s.io",
    "controllerrevisions.apps",
}
# The nested run's own deadline: the suites through the cluster backend, with the setup and teardown
# of its namespaces (measured about 4 minutes on this machine's kind).
NESTED_TIMEOUT = 1200


def digest(obj: object) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:12]


def listing(kubectl: Kubectl) -> list[str]:
    """One line per object of every listable kind (but VOLATILE), with what a run could change in
    place: ConfigMaps' and Secrets' data, labels and annotation keys (a `kubectl apply` leaves
    one), namespaces' labels, and the pod template of every workload (a rollout restart stamps it)."""
    kinds = kubectl.run("api-resources", "--verbs=list", "-o", "name", timeout=60).stdout.split()
    kinds = sorted(k for k in kinds if k not in VOLATILE)
    items = kubectl.json("get", ",".join(kinds), "--all-namespaces", "--ignore-not-found")["items"]
    lines = []
    for obj in items:
        meta = obj["metadata"]
        what = f"{obj['kind']} {meta.get('namespace', '')}/{meta['name']}"
        if obj["kind"] in ("ConfigMap", "Secret"):
            what += f" data={digest([obj.get('data'), obj.get('binaryData')])}"
            what += f" labels={digest(meta.get('labels'))} annotations={sorted(meta.get('annotations') or {})}"
        if obj["kind"] in ("Deployment", "DaemonSet", "StatefulSet"):
            what += f" template={digest(obj['spec']['template'])}"
        if obj["kind"] == "Namespace":
            what += f" labels={json.dumps(meta.get('labels') or {}, sort_keys=True)}"
        lines.append(what)
    return sorted(set(lines))


def users_environment(mesh: KindBackend, cache: Path, bin_dir: Path, artifacts: Path) -> dict[str, str]:
    """What a cluster user's shell has: the kubeconfig, their kubectl and istioctl (copied out of
    the harness's cache into a folder of their own), their images; none of this session's harness
    settings, an empty cache and builds refused."""
    assert mesh.kubectl is not None and mesh.istioctl is not None
    bin_dir.mkdir()
    kubectl = bin_dir / "kubectl"
    shutil.copy2(mesh.kubectl.path, kubectl)
    shutil.copy2(mesh.istioctl, bin_dir / "istioctl")
    cache.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("EGRESS_HARNESS_")}
    env.update(
        KUBECONFIG=str(mesh.kubectl.kubeconfig),
        EGRESS_HARNESS_CACHE=str(cache),
        EGRESS_HARNESS_KUBECTL=str(kubectl),
        EGRESS_HARNESS_ISTIO_BIN=str(bin_dir),
        EGRESS_HARNESS_SLEEP_IMAGE=sleep_tag(),
        EGRESS_HARNESS_UPSTREAM_IMAGE=str(mesh.upstream_image),
        EGRESS_HARNESS_ARTIFACTS=str(artifacts),
    )
    env[NO_BUILDS_ENV] = "1"
    return env


def test_the_suites_pass_through_the_cluster_backend_and_leave_the_cluster_as_found(
    mesh, pytestconfig, evidence, tmp_path: Path
):
    if setting(pytestconfig, "backend") != "kind":
        raise pytest.UsageError("tests/kind runs on a kind cluster: make test-kind (or pytest --egress-backend=kind)")
    assert isinstance(mesh, KindBackend), type(mesh)
    assert mesh.kind_tool is not None and mesh.kind_tool.path is not None and mesh.upstream_image
    out = tmp_path

    def keep(name: str, text: str) -> None:  # in the evidence, and in tmp_path after a pass too
        evidence.add_text(name, text)
        (out / name).write_text(text)

    # The user's registry: the stand-in's image in the node, as the sleep image already is.
    subprocess.run(
        kind_load_cmd(str(mesh.kind_tool.path), mesh.cluster_name, mesh.upstream_image),
        check=True,
        capture_output=True,
        timeout=300,
    )
    mesh.wait_converged()  # the suite tests before this one left nothing half-applied
    before = listing(mesh.kubectl)
    keep("cluster-before.txt", "\n".join(before) + "\n")
    cache = out / "empty-cache"
    env = users_environment(mesh, cache, out / "users-bin", out / "nested")
    argv = [
        sys.executable,
        "-m",
        "pytest",
        "-p",
        "no:cacheprovider",
        str(SUITES),
        "--egress-backend=cluster",
        f"--egress-istio-version={setting(pytestconfig, 'istio_version')}",
        "-q",
    ]
    nested = subprocess.run(argv, env=env, cwd=out, capture_output=True, text=True, timeout=NESTED_TIMEOUT)
    keep("nested-run.txt", f"$ {' '.join(argv)}\n{nested.stdout}\n{nested.stderr}")
    after = listing(mesh.kubectl)
    keep("cluster-after.txt", "\n".join(after) + "\n")
    tail = "\n".join(nested.stdout.splitlines()[-15:])
    assert nested.returncode == 0, f"the suites through BACKEND=cluster: exit {nested.returncode}\n{tail}"
    assert " passed" in tail and "skipped" not in tail, tail
    gone, new = sorted(set(before) - set(after)), sorted(set(after) - set(before))
    assert not gone and not new, f"the cluster changed: gone {gone}, new {new}"
    built = sorted(str(p.relative_to(cache)) for p in cache.rglob("*") if p.is_file())
    keep("cache-after.txt", "\n".join(built) + "\n")
    assert not any(p.startswith("istio-") for p in built), f"the run put Istio builds in the empty cache: {built}"
    evidence.observe(nested=tail.splitlines()[-1], listed=len(before), cache_files=len(built))
