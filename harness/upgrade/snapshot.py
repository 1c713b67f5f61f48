"""Every proxy's Envoy config and stat names with each egress scenario applied, saved for the diff.

A proxy with no scenario applied carries no egress path, so its config says nothing about them: a
snapshot applies each scenario (a stage × mode), waits until every proxy has it (the convergence
marker), and saves each proxy's /config_dump and /stats as
`<dir>/<stage>.<mode>/<namespace>.<pod>/config_dump.json` (+ `stats.json`), the layout
`python -m harness.config_diff` reads and the evidence folders use.
"""

from __future__ import annotations

import json
from pathlib import Path

from harness.evidence import Evidence
from harness.manifests import MODES
from harness.scenario import Scenario

SNAPSHOT_STAGES = ("http/gateway", "origination/simple", "passthrough/gateway")


def snapshot_name(stage: str, mode: str) -> str:
    return f"{stage.replace('/', '-')}.{mode}"


def take(mesh, directory: Path, stages=SNAPSHOT_STAGES, modes=MODES) -> list[str]:
    names = []
    for stage in stages:
        for mode in modes:
            sc = Scenario(mesh, Evidence(), mode)
            try:
                sc.apply(stage)
                names += take_as_is(mesh, directory, snapshot_name(stage, mode))
            finally:
                sc.delete_all(wait=True)
    return names


def take_as_is(mesh, directory: Path, name: str = "spec") -> list[str]:
    """Every proxy's config and stats with what is applied now, as `<directory>/<name>/<proxy>/`
    (take() calls it per scenario; an egress spec's manifests stay for the whole run)."""
    for proxy in mesh.proxies():
        d = directory / name / f"{proxy.spec.namespace}.{proxy.spec.pod_name}"
        d.mkdir(parents=True, exist_ok=True)
        (d / "config_dump.json").write_text(json.dumps(proxy.admin.config_dump(), indent=1))
        (d / "stats.json").write_text(json.dumps(proxy.admin.stats(""), indent=1))
    return [name]
