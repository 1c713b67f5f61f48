"""An egress spec through an Istio upgrade (`make upgrade SPEC=… FROM=1.30 TO=1.31`): what the
upgrade flow (harness/upgrade/flow.py) does differently with a spec.

- Each mesh of the run gets the spec's Secrets, Namespace labels and manifests once, at its start;
  they stay through every phase (the upgrade changes Istio underneath them).
- Each phase runs the spec's expectations (checks.run, as `make e2e SPEC=…` does) instead of the
  seed's suites; a failed expectation's evidence is written as a failed case's.
- The continuous traffic of each transition is the spec's gateway paths: the http(s) expectations
  through the gateway that are not refusals, from the first source that has one.
- The snapshots are the mesh with the spec applied, and the config diff is restricted to the
  spec's hosts (and the gateway they go through).
"""

from __future__ import annotations

import functools
import time
from pathlib import Path

from harness.errors import HarnessError
from harness.evidence import Evidence
from harness.spec import checks, world
from harness.spec.load import load_spec
from harness.spec.manifests import Manifest, apply_spec, read_manifests
from harness.spec.model import Spec
from harness.upgrade.suites_runner import CaseResult, judge, write_failure
from harness.upgrade.traffic import Target

MODE = "spec"  # the CaseResult mode of an expectation: the spec's manifests choose the hop's TLS


class SpecUpgrade:
    def __init__(self, path: Path):
        self.spec: Spec = load_spec(path)  # a SpecError is a HarnessError: one line, nothing started
        self.manifests: list[Manifest] = read_manifests(self.spec)
        world.install(self.spec)
        if not self.traffic_targets()[1]:
            raise HarnessError(
                f"{path}: no expectation goes through the gateway over http(s) without being refused: "
                "the upgrade's continuous traffic needs one (add one with `via: gateway`)"
            )

    def validate(self, istioctl: Path) -> None:
        from harness.istioctl_validate import IstioctlValidator
        from harness.spec.manifests import validate

        validate(self.manifests, IstioctlValidator(istioctl))

    def apply(self, mesh) -> None:
        apply_spec(mesh, self.spec, self.manifests)  # for the mesh's life: the upgrade runs under it

    def traffic_targets(self) -> tuple[str, tuple[Target, ...]]:
        """(source pod, targets) of the continuous traffic."""
        paths = [
            e
            for e in self.spec.expectations
            if e.via == "gateway" and not e.refused and e.target.scheme in ("http", "https")
        ]
        if not paths:
            return "", ()
        source = paths[0].source
        targets = tuple(
            Target(f"{e.target.scheme}-{e.target.host}", str(e.target), e.expected_status or 200)
            for e in paths
            if e.source == source
        )
        return source, targets

    def sidecar_sources(self) -> list[str]:
        return [s.key for s in self.spec.sources.values() if s.sidecar]

    def diff_hosts(self) -> tuple[str, ...]:
        names = {n for h in self.spec.hosts for n in (h.name, *h.names)}
        return (*sorted(names), "istio-egressgateway")

    def run_phase(self, mesh, phase: str, evidence_root: Path, say) -> list[CaseResult]:
        results = []
        for e in self.spec.expectations:
            evidence = Evidence()
            started = time.monotonic()
            result = CaseResult(phase, e.id, MODE, "passed")
            judge(result, functools.partial(checks.run, mesh, evidence, e), evidence)
            if result.outcome == "failed":
                write_failure(
                    mesh,
                    evidence,
                    evidence_root / phase / "".join(c if c.isalnum() or c in ".-" else "_" for c in e.id),
                )
            result.seconds = round(time.monotonic() - started, 2)
            say(f"  {phase}: {e.id} {result.outcome}" + (f" [hop: {result.hop}]" if result.hop else ""))
            results.append(result)
        return results
