"""What the kind and cluster backends will do, as exact commands and manifests: the DRY_RUN plan,
from the command line.

The plans are the code that runs: kind_plan() (harness/backends/kind.py) and cluster_plan()
(cluster.py) make each backend's one list of steps (harness/backends/steps.py), beside the methods
the steps name; a dry run prints it, and KindBackend.start()/stop() and ClusterBackend.start() run
it. Making a plan touches nothing: no cluster, no Docker, no download, no cache write; tools that
are not there yet are shown with the command that would fetch them, values only known at run time
as <placeholders>. This module is only the command line:

    python -m harness.backends.plan --backend kind [--istio-version 1.31] [--cluster-name NAME]
    make e2e BACKEND=kind DRY_RUN=1
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from harness.backends.cluster import cluster_plan
from harness.backends.kind import kind_plan
from harness.backends.kube_steps import mesh_config_overlay
from harness.console import description
from harness.errors import HarnessError

if TYPE_CHECKING:  # imported where the steps are made: kind.py and cluster.py import this module
    pass


def main(argv: list[str] | None = None) -> int:
    from harness.versions import DEFAULT_ISTIO_VERSION

    parser = argparse.ArgumentParser(prog="python -m harness.backends.plan", description=description(__doc__))
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
