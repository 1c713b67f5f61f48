"""The workflows a team copies (.github/workflows) cannot run here (no GitHub, no registry). They
are checked by actionlint (built from the Go module proxy by the harness's Go builder): syntax,
expressions, runner labels and action inputs; not the `run:` scripts (no shellcheck here)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from harness.toolchain import programs
from harness.toolchain.gobuild import ensure_program

REPO = Path(__file__).resolve().parents[1]
WORKFLOWS = sorted((REPO / ".github/workflows").glob("*.yml"))


@pytest.mark.slow  # a Go build on a new machine (seconds once cached)
def test_every_workflow_passes_actionlint():
    assert {w.name for w in WORKFLOWS} >= {"pr.yml", "nightly.yml", "nightly-cluster.yml"}
    actionlint = ensure_program(programs.ACTIONLINT) / "actionlint"
    # -shellcheck= and -pyflakes=: those linters are not installed here; actionlint's own checks run.
    proc = subprocess.run(
        [str(actionlint), "-shellcheck=", "-pyflakes=", *map(str, WORKFLOWS)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_the_pr_workflow_runs_lint_and_unit():
    import yaml

    job = yaml.safe_load((REPO / ".github/workflows/pr.yml").read_text())["jobs"]["lint-unit"]
    runs = [s.get("run", "") for s in job["steps"]]
    assert "make lint" in runs and any(r.startswith("make unit") for r in runs), runs
