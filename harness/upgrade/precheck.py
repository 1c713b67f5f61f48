"""TO's istioctl on the mesh before its control plane is upgraded, as Istio's upgrade docs ask.

- `istioctl x precheck --from-version FROM` needs a Kubernetes API: on the local mesh it gets the
  real kube-apiserver the mesh runs (harness/local/apiserver.py), through istiod's own kubeconfig
  inside istiod's pod namespace, where that server listens; whatever it says is recorded as it is.
- `istioctl analyze --use-kube=false` on every scenario's manifests (each stage × mode, rendered as
  the suites apply them), with the mesh's own mesh config; its messages go into the report.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from harness.istio_binaries import IstioBinaries
from harness.manifests import MODES, render, stages, to_yaml

PRECHECK_TIMEOUT = 15.0
_OK_LINES = ("No validation issues found", "✔", "To get started")


def _messages(text: str) -> list[str]:
    return [ln.strip() for ln in text.splitlines() if ln.strip() and not any(ok in ln for ok in _OK_LINES)]


def run_istioctl_checks(mesh, to: IstioBinaries, out: Path, from_version: str, *, precheck: bool = True) -> list[dict]:
    out.mkdir(parents=True, exist_ok=True)
    checks = []
    if precheck:
        checks.append(_precheck(mesh, to, out, from_version))
    checks.append(_analyze(mesh, to, out))
    return checks


def _precheck(mesh, to: IstioBinaries, out: Path, from_version: str) -> dict:
    kubeconfig = mesh.running_istiod.kubeconfig
    # --from-version: "check for behavioral changes since a specific version" (istioctl x precheck --help).
    argv = [
        str(to.istioctl),
        "x",
        "precheck",
        f"--kubeconfig={kubeconfig}",
        f"--from-version={from_version}",
        "--output-threshold=Info",
        "--kubeclient-timeout=10s",
    ]
    res = mesh.pod("istio-system/istiod").netns.exec(argv, timeout=PRECHECK_TIMEOUT)
    (out / "precheck.txt").write_text(res.stdout + res.stderr)
    messages = _messages(res.stdout + res.stderr)
    if res.exit_code == 124:
        messages = [f"did not finish within {PRECHECK_TIMEOUT:.0f} s against the local mesh's API server"]
    return {
        "command": f"istioctl {to.version} x precheck --from-version={from_version} (against the local mesh's API server)",
        "rc": res.exit_code,
        "messages": messages,
    }


def _analyze(mesh, to: IstioBinaries, out: Path) -> dict:
    mesh_file = mesh.istiod.mesh_file
    messages, worst = [], 0
    trust = mesh.upstream_trust()
    for stage in stages():
        for mode in MODES:
            objs = [o for o in render(stage, mode=mode, trust=trust) if o.get("kind") != "NetworkPolicy"]
            if not objs:
                continue
            f = out / f"{stage.replace('/', '-')}.{mode}.yaml"
            f.write_text(to_yaml(objs))
            proc = subprocess.run(
                [
                    str(to.istioctl),
                    "analyze",
                    "--use-kube=false",
                    f"--meshConfigFile={mesh_file}",
                    "--failure-threshold=Error",
                    str(f),
                ],
                capture_output=True,
                text=True,
                timeout=120,
            )
            worst = max(worst, proc.returncode)
            messages += [f"[{stage} {mode}] {m}" for m in _messages(proc.stdout + proc.stderr)]
    (out / "analyze.txt").write_text("\n".join(messages) + "\n")
    return {
        "command": f"istioctl {to.version} analyze --use-kube=false (every stage × mode)",
        "rc": worst,
        "messages": messages,
    }
