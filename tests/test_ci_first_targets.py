""".ci/run on a new machine: every make target it calls before `make test` (the one that installs
the system packages) must need none of them, and build nothing.

A new machine has none of the Debian packages harness.system_packages installs, and no cache. CI
lands a submission from the developer's own machine, where both are there, so without this test a
target that quietly needs one stays green there and fails on every new machine (issue 17: `make
unit` failed in 39 s). Here each such target runs with every command of those packages hidden
(bind-mounted over by /dev/null in a private mount namespace: the host is never changed) and an
empty cache (so a Go build it would start is refused, EGRESS_HARNESS_NO_BUILDS, or would be seen).
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import tempfile
from pathlib import Path

import pytest

from harness.system_packages import TARGETS, find_command

REPO = Path(__file__).resolve().parents[1]
CI_RUN = REPO / ".ci/run"
# The make targets that install system packages (their recipes run harness.system_packages).
INSTALLING = {"test", "test-kind", "e2e", "mesh", "upgrade", "bench-mesh", "bench-egress", "kind-images"}


def make_targets_before_test(script: str) -> list[str]:
    """The targets of each `make …` line of .ci/run before the first line that installs packages."""
    targets: list[str] = []
    for line in script.splitlines():
        words = shlex.split(line, comments=True)
        if not words or words[0] != "make":
            continue
        goals = [w for w in words[1:] if not w.startswith("-") and "=" not in w]
        if INSTALLING & set(goals):
            return targets
        targets += goals
    raise AssertionError(f"{CI_RUN} has no `make test` line")


def test_the_parser_reads_lines_up_to_make_test():
    script = "set -e\n# make nope\nmake lint\nmake unit PYTEST_ARGS=-x\nmake test\nmake fidelity\n"
    assert make_targets_before_test(script) == ["lint", "unit"]


def _package_commands() -> list[str]:
    """Every command a package of any target provides that is installed here, to hide."""
    commands = {need.command for needs in TARGETS.values() for need in needs if not need.command.startswith("/")}
    # unshare starts the hiding namespace itself; it is in util-linux, which every Debian has.
    commands.discard("unshare")
    return sorted(c for c in commands if find_command(c))


@pytest.mark.slow
@pytest.mark.parametrize("target", make_targets_before_test(CI_RUN.read_text()))
def test_a_first_target_of_ci_passes_without_the_packages_and_caches(target: str, tmp_path: Path):
    if os.geteuid() != 0:
        pytest.skip("hiding a command needs a mount namespace of root (make test runs as root in CI)")
    hidden = _package_commands()
    assert "newuidmap" in hidden and "dockerd" in hidden, "make test installed uidmap and docker.io before this test"
    mounts = " && ".join(f"mount --bind /dev/null {shlex.quote(str(find_command(c)))}" for c in hidden)
    cache = Path(tempfile.mkdtemp(prefix="egress-harness-empty-cache-"))
    try:
        argv = ["make", "-s", "-C", str(REPO), target, f"ARTIFACTS={tmp_path / 'artifacts'}"]
        proc = subprocess.run(
            ["unshare", "--mount", "--propagation", "private", "sh", "-c", f"{mounts} && exec {shlex.join(argv)}"],
            capture_output=True,
            text=True,
            timeout=900,
            env=dict(os.environ, EGRESS_HARNESS_CACHE=str(cache)),
        )
        built = sorted(p.name for p in cache.iterdir())
    finally:
        subprocess.run(["rm", "-rf", str(cache)], check=False)
    tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-30:])
    assert proc.returncode == 0, f"make {target} with {', '.join(hidden)} hidden exited {proc.returncode}:\n{tail}"
    assert built == [], f"make {target} wrote {built} into an empty cache (it must build nothing)"
    assert not re.search(r"installing Debian packages", proc.stderr), tail
