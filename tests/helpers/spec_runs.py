"""Run pytest sessions as a user would (an egress spec, or suite tests) and read their verdicts
back from the JUnit file, as CI does."""

from __future__ import annotations

import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def run_pytest(artifacts: Path, istio_version: str, *args: str) -> dict[str, str | None]:
    """Each test's name → None (passed) or its failure's first line."""
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            *args,
            f"--egress-artifacts={artifacts}",
            f"--egress-istio-version={istio_version}",
            "-p",
            "no:cacheprovider",
            "-q",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    junit = artifacts / "junit.xml"
    assert junit.exists(), proc.stdout[-3000:] + proc.stderr[-2000:]
    results: dict[str, str | None] = {}
    for case in ET.parse(junit).iter("testcase"):
        problem = case.find("failure")
        if problem is None:
            problem = case.find("error")
        results[case.get("name", "")] = None if problem is None else (problem.get("message") or "").splitlines()[0]
    assert results, proc.stdout[-3000:]
    return results


def run_spec(tmp_path: Path, spec: Path, istio_version: str) -> dict[str, str | None]:
    """Each expectation's id → None (passed) or its failure's first line."""
    results = run_pytest(tmp_path / "artifacts", istio_version, "suites/test_egress_spec.py", f"--egress-spec={spec}")
    return {name[name.index("[") + 1 : -1]: verdict for name, verdict in results.items()}
