"""make_remote_backend(): the kind or cluster backend the plugin's `mesh` fixture asks for.

The plugin's `mesh` fixture (harness/pytest_plugin.py) calls make_remote_backend() for --backend
kind|cluster. With --dry-run it prints the plan (harness/backends/plan.py) and ends the session
without touching anything.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from harness.errors import HarnessError

if TYPE_CHECKING:  # for the annotation only: a backend module is imported once it is chosen
    from harness.backends.kube import KubeBackend

_CLUSTER_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


def _print_plan(pytestconfig, text: str) -> None:
    capman = pytestconfig.pluginmanager.getplugin("capturemanager")
    if capman is not None:
        with capman.global_and_fixture_disabled():
            sys.stdout.write(text)
            sys.stdout.flush()
    else:
        sys.stdout.write(text)


def make_remote_backend(pytestconfig, artifacts_dir: Path):
    """Check the options, then start the backend (or print the plan with --dry-run).

    Bad input raises one HarnessError line before anything is started."""
    import pytest

    from harness.pytest_options import flag, required, setting
    from harness.versions import DEFAULT_ISTIO_VERSION, resolve_release

    backend = required(pytestconfig, "backend")
    istio_version = setting(pytestconfig, "istio_version") or DEFAULT_ISTIO_VERSION
    resolve_release(istio_version)  # unknown versions fail here, before anything starts
    cluster_name = required(pytestconfig, "cluster_name")
    keep = bool(flag(pytestconfig, "keep_cluster"))
    kubeconfig = setting(pytestconfig, "kubeconfig")
    dry_run = bool(flag(pytestconfig, "dry_run"))
    if backend == "kind" and not _CLUSTER_NAME.match(cluster_name or ""):
        raise HarnessError(
            f"--egress-cluster-name {cluster_name!r} is not a valid kind cluster name: use lowercase letters, digits and '-'"
        )
    if backend == "kind" and kubeconfig:
        raise HarnessError(
            "--egress-kubeconfig is for BACKEND=cluster; kind writes its own (drop it, or use --backend cluster)"
        )

    if dry_run:
        if backend == "kind":
            from harness.backends.kind import images_mode, kind_plan

            p = kind_plan(
                cluster_name=cluster_name,
                keep_cluster=keep,
                istio_version=istio_version,
                images=images_mode(running=False),
            )
        else:
            from harness.backends.cluster import cluster_plan, kubeconfig_from

            p = cluster_plan(kubeconfig=kubeconfig_from(kubeconfig), istio_version=istio_version)
        text = p.render()
        artifacts_dir.mkdir(parents=True, exist_ok=True)
        (artifacts_dir / f"plan-{backend}.txt").write_text(text)
        _print_plan(pytestconfig, text)
        pytest.exit(
            f"dry run: the {backend} plan is printed above and in {artifacts_dir / f'plan-{backend}.txt'}; nothing was run",
            returncode=0,
        )

    remote: KubeBackend
    if backend == "kind":
        from harness.backends.kind import KindBackend

        remote = KindBackend(
            cluster_name=cluster_name, keep_cluster=keep, istio_version=istio_version, artifacts=artifacts_dir
        )
    elif backend == "cluster":
        from harness.backends.cluster import ClusterBackend, kubeconfig_from

        remote = ClusterBackend(
            kubeconfig=kubeconfig_from(kubeconfig), istio_version=istio_version, artifacts=artifacts_dir
        )
    else:
        raise HarnessError(f"unknown backend {backend!r}: use local, kind or cluster")
    try:
        remote.start()
    except BaseException:
        remote.stop()
        raise
    return remote
