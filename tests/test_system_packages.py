"""harness/system_packages.py: the two commands install what they need, or say in one line what
to run; a hidden command (bind-mounted over by /dev/null in a private mount namespace, so the host
is never changed) makes the run stop with that line and start nothing."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from harness.system_packages import TARGETS, Need, check_go, find_command, missing, packages_of
from tests.helpers.mount_namespace import in_private_mounts

REPO = Path(__file__).resolve().parents[1]
NOBODY = 65534
# The system's own Python: what a newcomer's `python3` is (the venv's may sit under /root).
SYSTEM_PYTHON = "/usr/bin/python3"


def test_every_target_names_a_package_and_a_reason_for_each_command():
    for target, needs in TARGETS.items():
        assert needs, target
        for need in needs:
            assert need.package and need.why, need


def test_packages_are_listed_once_and_sorted():
    needs = [Need("iptables", "iptables", "x"), Need("iptables-restore", "iptables", "x"), Need("ip", "iproute2", "y")]
    assert packages_of(needs) == ["iproute2", "iptables"]


@pytest.mark.packages
def test_nothing_is_missing_here_after_make_installed_it():
    """make test ran `harness.system_packages test` first: everything is there now."""
    assert missing(["test"], rootless=False) == []
    assert check_go() is None


def _hidden(
    commands: list[str], argv: list[str], *, as_nobody: bool, list_netns: bool = False
) -> subprocess.CompletedProcess:
    """Run argv with `commands` hidden behind /dev/null (not executable) in a private mount namespace.
    list_netns: the namespace gets a /var/run/netns of its own (a tmpfs), listed after argv on a
    last line `netns: …`, so what argv created is told apart from other runs on the machine."""
    mounts = " && ".join(f"mount --bind /dev/null {find_command(c)}" for c in commands)
    user = f"setpriv --reuid={NOBODY} --regid={NOBODY} --clear-groups " if as_nobody else ""
    command = user + " ".join(f"'{a}'" for a in argv)
    if list_netns:
        Path("/var/run/netns").mkdir(parents=True, exist_ok=True)
        script = f"{mounts} && mount -t tmpfs egress-harness-test /var/run/netns && {command}; rc=$?; "
        script += 'echo "netns: $(ls -A /var/run/netns)"; exit $rc'
    else:
        script = f"{mounts} && exec {command}"
    return in_private_mounts(script)


@pytest.fixture
def root_only():
    if os.geteuid() != 0:
        pytest.skip("hiding a command needs a mount namespace of root (make test runs as root in CI)")


@pytest.mark.packages  # hides iptables, which must be there to hide
def test_not_root_gets_the_exact_apt_command(root_only):
    proc = _hidden(["iptables"], [SYSTEM_PYTHON, "-m", "harness.system_packages", "e2e"], as_nobody=True)
    assert proc.returncode == 2, proc.stderr
    [line] = proc.stderr.splitlines()
    assert "sudo apt-get install -y iptables" in line and "istio-iptables" in line, line


@pytest.mark.packages  # hides iptables, which must be there to hide
def test_no_apt_get_names_the_debian_packages(root_only):
    proc = _hidden(["iptables", "apt-get"], [SYSTEM_PYTHON, "-m", "harness.system_packages", "e2e"], as_nobody=False)
    assert proc.returncode == 2, proc.stderr
    [line] = proc.stderr.splitlines()
    assert "no apt-get" in line and "iptables" in line, line


@pytest.fixture
def newcomer_dir():
    """A folder a non-root user can work in (pytest's tmp_path sits under 0700 folders)."""
    path = Path(tempfile.mkdtemp(prefix="egress-harness-newcomer-"))
    path.chmod(0o777)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.mark.packages  # hides iptables, which must be there to hide
def test_make_e2e_stops_with_the_line_and_starts_nothing(root_only, newcomer_dir):
    """The whole first command as a non-root newcomer would type it: one line, exit 2, no
    namespace, no virtualenv work, no Istio build."""
    tmp_path = newcomer_dir
    proc = _hidden(
        ["iptables"],
        ["make", "-s", "-f", str(REPO / "Makefile"), "-C", str(tmp_path), "e2e", f"PYTHON={SYSTEM_PYTHON}"],
        as_nobody=True,
        list_netns=True,
    )
    assert proc.returncode != 0
    lines = [line for line in (proc.stdout + proc.stderr).splitlines() if line.strip()]
    [netns] = [line for line in lines if line.startswith("netns:")]
    output = [line for line in lines if not line.startswith("netns:")]
    assert output[0].startswith("egress-harness: missing system packages") and "sudo apt-get install" in output[0], (
        output
    )
    assert all(line.startswith("make") for line in output[1:]), output  # make's own "Error 2" only
    assert netns == "netns: ", "the stopped run created network namespaces"
    assert list(tmp_path.iterdir()) == []


def test_go_too_old_or_missing_says_which_go_and_where(monkeypatch, tmp_path):
    fake = tmp_path / "go"
    fake.write_text("#!/bin/sh\necho go version go1.19.8 linux/amd64\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))
    line = check_go()
    assert line and "Go >= 1.25" in line and "is 1.19" in line and "EGRESS_HARNESS_ISTIO_BIN" in line
