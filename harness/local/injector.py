"""istiod's injection templates on the local mesh, rendered offline by the build's own istioctl.

Why: istiod's Gateway API deployment controller renders a Gateway's Deployment from the
injector's `kube-gateway` template. On a cluster `istioctl install` writes them into the
`istio-sidecar-injector` ConfigMap; without it istiod logs `no "kube-gateway" template defined`
and deploys nothing. istiod reads the same two keys (`config`, `values`) from files under its
working directory (`./var/lib/istio/inject/`, pilot/pkg/bootstrap/sidecarinjector.go) before it
looks for the ConfigMap, so each istiod of the local mesh gets its own version's files, as each
revision on a cluster has its own ConfigMap: an upgraded istiod renders its own template.

`istioctl manifest generate` renders the ConfigMap from the charts compiled into istioctl (no
network, no cluster); the two keys are kept beside the build (`inject/`), once per build.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import yaml

from harness.errors import HarnessError
from harness.istio_binaries import IstioBinaries

CONFIGMAP = "istio-sidecar-injector"
KEYS = ("config", "values")
# Where istiod looks, relative to its working directory (pilot-discovery's InjectionDirectory).
INJECT_DIR = Path("var/lib/istio/inject")


def _kept(binaries: IstioBinaries) -> Path:
    return binaries.bootstrap_template.parent / "inject"


def render(istioctl: Path) -> dict[str, str]:
    """The ConfigMap's `config` and `values`, from `istioctl manifest generate`."""
    proc = subprocess.run(
        [str(istioctl), "manifest", "generate"], capture_output=True, text=True, timeout=120, check=False
    )
    if proc.returncode != 0:
        raise HarnessError(f"istioctl manifest generate failed: {(proc.stderr or proc.stdout).strip()[:300]}")
    for doc in yaml.safe_load_all(proc.stdout):
        if doc and doc.get("kind") == "ConfigMap" and (doc.get("metadata") or {}).get("name") == CONFIGMAP:
            data = doc.get("data") or {}
            if all(k in data for k in KEYS) and "kube-gateway" in yaml.safe_load(data["config"]).get("templates", {}):
                return {k: data[k] for k in KEYS}
            raise HarnessError(f"istioctl manifest generate: {CONFIGMAP} lacks the kube-gateway template")
    raise HarnessError(f"istioctl manifest generate rendered no {CONFIGMAP} ConfigMap")


def injection_files(binaries: IstioBinaries) -> dict[str, Path]:
    """The two files of `binaries`' istioctl, rendered once and kept beside the build."""
    kept = _kept(binaries)
    paths = {k: kept / k for k in KEYS}
    if all(p.exists() for p in paths.values()):
        return paths
    data = render(binaries.istioctl)
    try:
        kept.mkdir(parents=True, exist_ok=True)
    except OSError:  # a read-only EGRESS_HARNESS_ISTIO_BIN: rendered again each run
        return {}
    for key, path in paths.items():
        tmp = path.with_name(f".{key}.{os.getpid()}")
        tmp.write_text(data[key])
        os.replace(tmp, path)
    return paths


def injection_data(binaries: IstioBinaries) -> dict[str, str]:
    """`config` and `values` for an istiod of `binaries` (Istiod writes them under its workdir)."""
    paths = injection_files(binaries)
    return {k: p.read_text() for k, p in paths.items()} if paths else render(binaries.istioctl)
