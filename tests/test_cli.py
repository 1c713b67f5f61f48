"""The console script (harness/cli.py), as installed in the venv: its commands, --help on each,
one line for an unknown one, and diff-config on two real files."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from harness.cli import COMMANDS
from tests.test_config_diff import _cluster, gateway_dump

SCRIPT = Path(sys.executable).parent / "egress-harness"


def _run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    assert SCRIPT.exists(), f"{SCRIPT} is not installed: make installs the venv with pip install -e ."
    return subprocess.run([str(SCRIPT), *args], capture_output=True, text=True, timeout=120, cwd=cwd)


def test_help_lists_every_command():
    proc = _run("--help")
    assert proc.returncode == 0, proc.stderr
    assert all(f"  {name} " in proc.stdout for name in COMMANDS), proc.stdout


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_each_command_has_help(command: str):
    proc = _run(command, "--help")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "usage:" in proc.stdout, proc.stdout


def test_an_unknown_command_is_one_line():
    proc = _run("e2ee")
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.strip() == (
        "egress-harness: no command 'e2ee': one of e2e, mesh, upgrade, bench, diff-config, fidelity "
        "(egress-harness --help)"
    )


def test_diff_config_names_the_change_and_exits_1(tmp_path: Path):
    before, after = gateway_dump(), gateway_dump()
    del _cluster(after)["transport_socket"]["typed_config"]["sni"]
    (tmp_path / "a.json").write_text(json.dumps(before))
    (tmp_path / "b.json").write_text(json.dumps(after))
    proc = _run("diff-config", "a.json", "b.json", cwd=tmp_path)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "cluster outbound|443||edition.cnn.com: transport_socket.sni edition.cnn.com → (unset)" in proc.stdout
    same = _run("diff-config", "a.json", "a.json", cwd=tmp_path)
    assert same.returncode == 0, same.stdout + same.stderr


def test_e2e_collects_the_suites_by_default(tmp_path: Path):
    proc = _run("e2e", "--collect-only", "-q", f"--egress-artifacts={tmp_path}", cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "suites/test_http_gateway.py::" in proc.stdout, proc.stdout[-2000:]
