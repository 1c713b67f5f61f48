"""`make bench-spec` (`python -m harness.spec.bench`): what a large egress spec costs on the local
mesh. It writes a generated spec of N hosts × 4 expectations (each host HTTPS through the egress
gateway with mutual TLS on the hop, and plain HTTP left direct, from two namespaces), runs it as
`make e2e SPEC=…` would, and reports the wall time, the mesh's start, the apply of the manifests
and the time per expectation (from the JUnit file), in bench-spec.json and on stdout.

  python -m harness.spec.bench [--hosts 50] [--out artifacts/bench-spec] [--istio-version 1.31]
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import yaml

from harness.console import description

SOURCES = ("payments/app", "reporting/app")


def host_name(i: int) -> str:
    return f"h{i:03d}.bench.example"


def spec_text(hosts: int) -> str:
    expect = []
    for i in range(hosts):
        h = host_name(i)
        for source in SOURCES:
            expect.append(
                {
                    "from": source,
                    "to": f"https://{h}/v1",
                    "status": 200,
                    "via": "gateway",
                    "hop_mtls": True,
                    "tls_by": "app",
                    "sni": h,
                    "counters": "grow",
                }
            )
            expect.append({"from": source, "to": f"http://{h}/", "status": 200, "via": "direct"})
    spec = {
        "hosts": {host_name(i): {"ports": {80: "HTTP", 443: "HTTPS"}} for i in range(hosts)},
        "manifests": ["manifests.yaml"],
        "sources": {s: {"labels": {"app": s.split("/")[0]}} for s in SOURCES},
        "expect": expect,
    }
    return yaml.safe_dump(spec, sort_keys=False)


def manifests(hosts: int) -> list[dict]:
    names = [host_name(i) for i in range(hosts)]
    gw = "istio-egressgateway.istio-system.svc.cluster.local"
    objs: list[dict] = [
        {
            "apiVersion": "networking.istio.io/v1",
            "kind": "Gateway",
            "metadata": {"name": "bench", "namespace": "istio-system"},
            "spec": {
                "selector": {"istio": "egressgateway"},
                # A server per host: each its own filter chain (by SNI), whose TCP route is its host's.
                "servers": [
                    {
                        "port": {"number": 443, "name": f"tls-h{i:03d}", "protocol": "TLS"},
                        "hosts": [n],
                        "tls": {"mode": "ISTIO_MUTUAL"},
                    }
                    for i, n in enumerate(names)
                ],
            },
        },
        {
            "apiVersion": "networking.istio.io/v1",
            "kind": "DestinationRule",
            "metadata": {"name": "bench-gateway", "namespace": "istio-system"},
            "spec": {
                "host": gw,
                "subsets": [
                    {
                        "name": f"h{i:03d}",
                        "trafficPolicy": {
                            "portLevelSettings": [{"port": {"number": 443}, "tls": {"mode": "ISTIO_MUTUAL", "sni": n}}]
                        },
                    }
                    for i, n in enumerate(names)
                ],
            },
        },
    ]
    for i, n in enumerate(names):
        objs.append(
            {
                "apiVersion": "networking.istio.io/v1",
                "kind": "ServiceEntry",
                "metadata": {"name": f"h{i:03d}", "namespace": "istio-system"},
                "spec": {
                    "hosts": [n],
                    "ports": [
                        {"number": 80, "name": "http", "protocol": "HTTP"},
                        {"number": 443, "name": "tls", "protocol": "TLS"},
                    ],
                    "resolution": "DNS",
                    "location": "MESH_EXTERNAL",
                },
            }
        )
        objs.append(
            {
                "apiVersion": "networking.istio.io/v1",
                "kind": "VirtualService",
                "metadata": {"name": f"h{i:03d}", "namespace": "istio-system"},
                "spec": {
                    "hosts": [n],
                    "gateways": ["mesh", "bench"],
                    "tls": [
                        {
                            "match": [{"gateways": ["mesh"], "port": 443, "sniHosts": [n]}],
                            "route": [{"destination": {"host": gw, "subset": f"h{i:03d}", "port": {"number": 443}}}],
                        }
                    ],
                    "tcp": [
                        {
                            "match": [{"gateways": ["bench"], "port": 443}],
                            "route": [{"destination": {"host": n, "port": {"number": 443}}}],
                        }
                    ],
                },
            }
        )
    return objs


def write_spec(directory: Path, hosts: int) -> Path:
    """The generated spec and its manifests in `directory`; the spec's path."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "manifests.yaml").write_text(yaml.safe_dump_all(manifests(hosts), sort_keys=False))
    spec = directory / "egress.yaml"
    spec.write_text(spec_text(hosts))
    return spec


def junit_times(junit: Path) -> tuple[list[float], int, int]:
    """(time of each test case, failures, errors) from pytest's JUnit file."""
    cases = list(ET.parse(junit).iter("testcase"))
    failed = sum(1 for c in cases if c.find("failure") is not None)
    errors = sum(1 for c in cases if c.find("error") is not None)
    return [float(c.get("time", 0)) for c in cases], failed, errors


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m harness.spec.bench", description=description(__doc__))
    parser.add_argument("--hosts", type=int, default=50)
    parser.add_argument("--out", type=Path, default=Path("artifacts/bench-spec"))
    parser.add_argument("--istio-version", default="1.31")
    args = parser.parse_args(argv)
    out = args.out.resolve()
    spec = write_spec(out / "spec", args.hosts)
    started = time.monotonic()
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "suites/test_egress_spec.py",
            f"--egress-spec={spec}",
            f"--artifacts={out / 'run'}",
            f"--istio-version={args.istio_version}",
            "-p",
            "no:cacheprovider",
            "-q",
            "--durations=0",
        ],
        cwd=Path(__file__).resolve().parents[2],
        capture_output=True,
        text=True,
    )
    wall = time.monotonic() - started
    (out / "pytest.log").write_text(proc.stdout + proc.stderr)
    junit = out / "run" / "junit.xml"
    if not junit.exists():
        print(proc.stdout[-3000:] + proc.stderr[-2000:], file=sys.stderr)
        return 2
    times, failed, errors = junit_times(junit)
    phases = _durations(proc.stdout)
    calls = phases.get("call", [])
    result = {
        "hosts": args.hosts,
        "expectations": len(times),
        "failed": failed,
        "errors": errors,
        "wall_seconds": round(wall, 1),
        # The first setup: the mesh's start, istioctl validate, the spec's apply and convergence.
        "session_setup_seconds": round(max(phases.get("setup", [0.0])), 1),
        "session_teardown_seconds": round(max(phases.get("teardown", [0.0])), 1),
        "per_expectation_call_seconds_mean": round(sum(calls) / len(calls), 3) if calls else None,
        "per_expectation_call_seconds_max": round(max(calls), 3) if calls else None,
        "expectation_calls_seconds_total": round(sum(calls), 1),
    }
    (out / "bench-spec.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0 if proc.returncode == 0 else 1


def _durations(stdout: str) -> dict[str, list[float]]:
    """pytest --durations=0's lines ("12.34s setup    suites/..."), by phase."""
    out: dict[str, list[float]] = {}
    for line in stdout.splitlines():
        m = re.match(r"^(\d+(?:\.\d+)?)s (setup|call|teardown) ", line)
        if m:
            out.setdefault(m.group(2), []).append(float(m.group(1)))
    return out


if __name__ == "__main__":
    sys.exit(main())
