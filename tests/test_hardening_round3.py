"""Hardening, round 3: each defect found by abusing the harness, as it was found, and what it does now.

(Defect 1, the API server's loopback forwarder, is tests/test_loopback_forwarder.py.)
"""

from __future__ import annotations

import fcntl
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from harness import artifacts
from harness.artifacts import ArtifactsProblem, claim
from harness.backends.cluster import kubeconfig_from
from harness.errors import HarnessError
from tests.helpers.mount_namespace import in_private_mounts

REPO = Path(__file__).resolve().parents[1]


def _pytest(args: list[str], *, cwd: Path = REPO, env: dict | None = None, timeout: int = 300):
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-p", "no:pytest-kind-ng", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env or dict(os.environ, PYTHONPATH=str(REPO)),
    )


@pytest.fixture
def root_only():
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root (make test runs as root in CI)")


# 2 -------------------------------------------------------------------------------------------
def _trivial_tests(tmp_path: Path) -> Path:
    """A test folder of one passing test that requests a harness fixture: the plugin claims the
    artifacts folder for that session (for one that requests none it does nothing)."""
    tests = tmp_path / "trivial"
    tests.mkdir()
    (tests / "test_trivial.py").write_text("def test_ok(artifacts_dir):\n    pass\n")
    return tests


def test_a_full_artifacts_disk_is_one_line_before_anything_starts(root_only, tmp_path):
    """As found: ARTIFACTS on a 256 KiB tmpfs gave a HopFailure (an access-log line not written),
    then pytest crashed in junitxml with ENOSPC."""
    folder = tmp_path / "tiny"
    folder.mkdir()
    script = (
        f"mount -t tmpfs -o size=256k egress-harness-test {folder} && "
        f"exec {sys.executable} -m pytest -p no:cacheprovider -p no:pytest-kind-ng {_trivial_tests(tmp_path)} -q --egress-artifacts={folder}/a"
    )
    proc = in_private_mounts(script)
    assert proc.returncode == 4, proc.stdout + proc.stderr
    out = proc.stdout + proc.stderr
    assert "is full" in out and "KiB free" in out and "ARTIFACTS=" in out, out


_FILLS_THE_DISK = """
from pathlib import Path

def test_fills_the_disk_then_fails(artifacts_dir):
    try:
        with open(Path(artifacts_dir) / "mesh-logs.bin", "wb") as f:
            while True:
                f.write(b"x" * 65536)
    except OSError:
        pass
    assert False, "the gateway logged 0 of 1 request(s)"

def test_never_runs():
    pass
"""


def test_a_disk_that_fills_mid_run_is_a_harness_error_and_the_reports_are_written(root_only, tmp_path):
    folder = tmp_path / "small"
    folder.mkdir()
    tests = tmp_path / "t"
    tests.mkdir()
    (tests / "test_fill.py").write_text(_FILLS_THE_DISK)
    size_mib = artifacts.MIN_FREE_BYTES // 2**20 + 8
    script = (
        f"mount -t tmpfs -o size={size_mib}m egress-harness-test {folder} && "
        f"{{ {sys.executable} -m pytest -p no:cacheprovider -p no:pytest-kind-ng {tests} -q --egress-artifacts={folder}/a; "
        f"ls {folder}/a; }}"
    )
    proc = in_private_mounts(script)
    out = proc.stdout + proc.stderr
    assert "HARNESS ERROR" in out and "is full" in out, out
    assert "Interrupted: egress-harness: the artifacts folder" in out and "passed" not in out, out
    assert "OSError" not in out.split("short test summary")[-1], out  # junitxml did not crash
    assert "junit.xml" in out and "summary.md" in out, out  # the listing of the folder after the run


# 3 -------------------------------------------------------------------------------------------
def test_make_mesh_refuses_an_artifacts_folder_in_use(tmp_path):
    """As found: `python -m harness.local.up --artifacts DIR` deleted DIR/mesh-logs of a run in progress."""
    folder, fd = claim(tmp_path / "art")
    try:
        sentinel = folder / "mesh-logs" / "istiod.log"
        sentinel.parent.mkdir()
        sentinel.write_text("a running test's log\n")
        proc = subprocess.run(
            [sys.executable, "-m", "harness.local.up", "--artifacts", str(folder)],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert proc.returncode == 2, proc.stdout + proc.stderr
        assert "in use by another run" in proc.stderr, proc.stderr
        assert sentinel.read_text() == "a running test's log\n"
    finally:
        os.close(fd)


# 4 -------------------------------------------------------------------------------------------
def _e2e_command(pytest_args: str) -> str:
    proc = subprocess.run(
        ["make", "-n", "-C", str(REPO), "e2e", f"PYTEST_ARGS={pytest_args}"], capture_output=True, text=True
    )
    [line] = [ln for ln in proc.stdout.splitlines() if " -m pytest" in ln]
    return line.split(" -m pytest", 1)[1]


def test_a_test_id_in_pytest_args_is_what_runs():
    """As found: `make e2e PYTEST_ARGS=suites/test_http_gateway.py::test_nope` ran all 32 and exited 0."""
    assert _e2e_command("suites/test_http_gateway.py::test_nope").split()[0] == "--egress-backend=local"
    assert _e2e_command("-x suites/test_cleanup.py").split()[0] == "--egress-backend=local"
    assert _e2e_command("-k http").split()[0] == "suites"
    proc = _pytest(
        ["suites/test_http_gateway.py::test_nope", "--collect-only", "-q", "--egress-artifacts", "/dev/null/x"]
    )
    assert proc.returncode == 4 and "not found" in proc.stdout + proc.stderr, proc.stdout


# 8 -------------------------------------------------------------------------------------------
def test_make_clean_removes_only_what_the_harness_wrote(tmp_path):
    """As found: `make -n clean ARTIFACTS=/tmp` printed `rm -rf "/tmp"`."""
    foreign = tmp_path / "not-ours"
    foreign.mkdir()
    (foreign / "junit.xml").write_text("someone else's")
    proc = subprocess.run(
        ["make", "-s", "-C", str(REPO), "clean", f"ARTIFACTS={foreign}"], capture_output=True, text=True
    )
    assert proc.returncode != 0 and "was not made by egress-harness" in proc.stderr, proc.stderr
    assert (foreign / "junit.xml").exists()

    ours, fd = claim(tmp_path / "ours")
    os.close(fd)
    (ours / "evidence" / "t").mkdir(parents=True)
    (ours / "summary.md").write_text("x")
    (ours / "my-notes.txt").write_text("the user's own file")
    nested, fd = claim(ours / "test")
    os.close(fd)
    (nested / "junit.xml").write_text("x")
    proc = subprocess.run(["make", "-s", "-C", str(REPO), "clean", f"ARTIFACTS={ours}"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in ours.iterdir()) == ["my-notes.txt"], proc.stdout


def test_clean_refuses_a_folder_in_use(tmp_path):
    folder, fd = claim(tmp_path / "busy")
    try:
        with pytest.raises(ArtifactsProblem, match="in use by a run"):
            artifacts.clean(folder)
        assert (folder / artifacts.MARKER).exists()
    finally:
        os.close(fd)


# 9 -------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("egress-host\n", "is not a kubeconfig (it holds plain text)"),
        ("a: [1, 2\n", "is not YAML at line"),
        ("apiVersion: v1\nclusters: []\ncontexts: []\n", "has no current-context"),
        ("clusters: []\ncurrent-context: gone\n", "names current-context 'gone', which it does not define"),
    ],
)
def test_a_bad_kubeconfig_says_what_is_wrong_with_it(tmp_path, text, says):
    """As found: KUBECONFIG=/etc/hostname gave "cannot reach the cluster … ['error: … json parse error …']"."""
    path = tmp_path / "kubeconfig"
    path.write_text(text)
    with pytest.raises(HarnessError) as caught:
        kubeconfig_from(str(path))
    assert says in str(caught.value) and "\n" not in str(caught.value), caught.value


def test_the_kubeconfig_is_checked_before_the_images(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("EGRESS_HARNESS_") and k != "KUBECONFIG"}
    env["PYTHONPATH"] = str(REPO)
    proc = _pytest(
        [
            "suites/test_troubleshooting.py",
            "--egress-backend=cluster",
            "--egress-kubeconfig=/etc/hostname",
            "--egress-dry-run",
        ]
        + ["-q", f"--egress-artifacts={tmp_path / 'a'}"],
        env=env,
    )
    assert proc.returncode == 4, proc.stdout + proc.stderr
    lines = [ln for ln in (proc.stdout + proc.stderr).splitlines() if "egress-harness:" in ln]
    assert lines and "kubeconfig /etc/hostname is not a kubeconfig" in lines[0], lines


# 10 ------------------------------------------------------------------------------------------
@pytest.mark.mesh
@pytest.mark.slow
def test_sighup_to_make_mesh_tears_down_and_leaves_no_temp_folder(tmp_path):
    """As found: SIGHUP skipped `make mesh`'s own teardown: the egress-mesh-* temp folder stayed."""
    own_tmp = Path(tempfile.mkdtemp(prefix="egress-harness-sighup-"))
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "harness.rootless", sys.executable, "-m", "harness.local.up"],
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=dict(os.environ, TMPDIR=str(own_tmp), PYTHONPATH=str(REPO)),
        )
        assert proc.stdout is not None
        seen = []
        for line in proc.stdout:
            seen.append(line)
            if "Ctrl-C to tear it down" in line:
                break
        assert any("is up" in ln for ln in seen), "".join(seen)
        assert [p.name for p in own_tmp.iterdir() if p.name.startswith("egress-mesh-")], "the mesh's temp folder"
        proc.send_signal(signal.SIGHUP)
        rest, _ = proc.communicate(timeout=120)
        assert proc.returncode == 0 and "torn down" in rest, "".join(seen) + rest
        assert not [p.name for p in own_tmp.iterdir() if p.name.startswith("egress-mesh-")]
    finally:
        if proc.poll() is None:  # a hung teardown: the watchdog cleans up after a SIGKILL
            proc.kill()
            proc.wait(timeout=30)
        subprocess.run(["rm", "-rf", str(own_tmp)], check=False)


# 11 ------------------------------------------------------------------------------------------
def test_artifacts_naming_a_file_says_so(tmp_path):
    """As found: ARTIFACTS=<a regular file> said "File exists"."""
    path = tmp_path / "a-file"
    path.write_text("x")
    with pytest.raises(ArtifactsProblem, match="is a file: pass --egress-artifacts DIR"):
        claim(path)
    proc = _pytest([str(_trivial_tests(tmp_path)), "-q", f"--egress-artifacts={path}"])
    assert proc.returncode == 4 and "is a file: pass --egress-artifacts DIR" in proc.stdout + proc.stderr, proc.stdout


def test_a_claimed_folder_holds_its_lock_and_marker(tmp_path):
    folder, fd = claim(tmp_path / "x")
    try:
        assert (folder / artifacts.MARKER).exists() and (folder / artifacts.RESERVE).stat().st_size > 0
        other = os.open(folder / artifacts.LOCK, os.O_RDWR)
        with pytest.raises(BlockingIOError):
            fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)
        os.close(other)
    finally:
        os.close(fd)


def test_the_cluster_backend_installs_no_local_mesh_package_and_runs_in_the_users_namespaces():
    """An existing cluster needs istioctl and the kubeconfig: not the local mesh's Debian packages,
    and not harness.rootless (a user namespace with its own network would not reach the cluster)."""
    proc = subprocess.run(
        ["make", "-n", "-C", str(REPO), "e2e", "BACKEND=cluster"], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    assert "harness.system_packages" not in proc.stdout and "harness.toolchain" not in proc.stdout, proc.stdout
    [line] = [ln for ln in proc.stdout.splitlines() if " -m pytest" in ln]
    assert "harness.rootless" not in line and "--egress-backend=cluster" in line, line
    local = subprocess.run(["make", "-n", "-C", str(REPO), "e2e"], capture_output=True, text=True, timeout=60)
    assert "harness.system_packages e2e" in local.stdout and "harness.rootless" in local.stdout, local.stdout
