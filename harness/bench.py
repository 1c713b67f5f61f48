"""Benchmark of the local mesh (`make bench-mesh`): cold start and apply → converged.

Cold start: from nothing to istiod ready and every proxy ready (binaries cached). Convergence:
from writing a scenario's manifests to every proxy having ACKed config that contains them, for
apply and for delete; for seed §1 in the Istio API and in the Gateway API, where an apply also
waits for the gateway istiod deploys (its pod run by the node agent, Ready, an endpoint of every
sidecar) and a delete for that pod to be gone. Prints the median of several runs and every
sample, as JSON at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from harness.console import description
from harness.errors import HarnessError
from harness.istio_binaries import ensure_istio
from harness.local.mesh import LocalMesh
from harness.manifests import render
from harness.versions import DEFAULT_ISTIO_VERSION


def run(istio_version: str, runs: int, converge_rounds: int) -> dict:
    binaries = ensure_istio(istio_version)
    cold: list[float] = []
    apply_s: list[float] = []
    delete_s: list[float] = []
    gw_apply_s: list[float] = []
    gw_delete_s: list[float] = []
    deployed_s: list[float] = []
    for _ in range(runs):
        with tempfile.TemporaryDirectory(prefix="egress-bench-") as tmp:
            mesh = LocalMesh(binaries, Path(tmp))
            started = time.monotonic()
            try:
                mesh.start()
                cold.append(time.monotonic() - started)
                objs = render("http/gateway", mode="istio-mutual", trust=mesh.upstream_trust())
                gateway_api = render("http/gateway", mode="gateway-api-plaintext", trust=mesh.upstream_trust())
                for _ in range(converge_rounds):
                    t = time.monotonic()
                    mesh.apply(objs)
                    apply_s.append(time.monotonic() - t)
                    t = time.monotonic()
                    mesh.delete(objs)
                    delete_s.append(time.monotonic() - t)
                    t = time.monotonic()
                    mesh.apply(gateway_api)
                    gw_apply_s.append(time.monotonic() - t)
                    deployed_s.append(mesh.timings["deployed_gateway"])
                    t = time.monotonic()
                    mesh.delete(gateway_api)
                    gw_delete_s.append(time.monotonic() - t)
            finally:
                mesh.stop()
    return {
        "istio": binaries.describe(),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "cold_start_median_s": round(statistics.median(cold), 3),
        "apply_converged_median_s": round(statistics.median(apply_s), 3),
        "delete_converged_median_s": round(statistics.median(delete_s), 3),
        "gateway_api_apply_converged_median_s": round(statistics.median(gw_apply_s), 3),
        "gateway_api_deployed_gateway_ready_median_s": round(statistics.median(deployed_s), 3),
        "gateway_api_delete_converged_median_s": round(statistics.median(gw_delete_s), 3),
        "samples": {
            "cold_start_s": [round(x, 3) for x in cold],
            "apply_s": [round(x, 3) for x in apply_s],
            "delete_s": [round(x, 3) for x in delete_s],
            "gateway_api_apply_s": [round(x, 3) for x in gw_apply_s],
            "gateway_api_deployed_gateway_ready_s": [round(x, 3) for x in deployed_s],
            "gateway_api_delete_s": [round(x, 3) for x in gw_delete_s],
        },
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m harness.bench", description=description(__doc__))
    parser.add_argument("--istio-version", default=DEFAULT_ISTIO_VERSION)
    parser.add_argument("--runs", type=int, default=5, help="mesh cold starts")
    parser.add_argument("--converge-rounds", type=int, default=5, help="apply/delete rounds per mesh")
    args = parser.parse_args(argv)
    try:
        result = run(args.istio_version, args.runs, args.converge_rounds)
    except HarnessError as exc:
        print(f"egress-harness: error: {exc}", file=sys.stderr)
        return 2
    print(f"{result['istio']}; load average at the end {result['load_average']} on {os.cpu_count()} CPUs")
    print(f"mesh cold start, median of {args.runs}: {result['cold_start_median_s']} s (goal <= 5 s)")
    print(f"apply -> converged, median: {result['apply_converged_median_s']} s (goal <= 0.3 s)")
    print(f"delete -> converged, median: {result['delete_converged_median_s']} s")
    print(
        "Gateway API (seed §1, its deployed gateway included): apply -> converged, median "
        f"{result['gateway_api_apply_converged_median_s']} s (the deployed gateway Ready after "
        f"{result['gateway_api_deployed_gateway_ready_median_s']} s); delete -> converged "
        f"{result['gateway_api_delete_converged_median_s']} s"
    )
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
