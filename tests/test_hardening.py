"""The defects found when the harness was tried as a new user would, then abused: each test here
failed before its fix.

1. the user's shell environment reached the pods (DRY_RUN put istio-iptables in dry-run mode);
3. two runs sharing an artifacts folder read each other's logs;
4. a non-root login PATH without /usr/sbin hid iptables;
5. a Jinja syntax error gave a traceback per test; 6. a schema error was found only when applied;
7. an unwritable artifacts folder gave a junitxml traceback; 8. the "cleaned up after a dead run"
line was swallowed; 9. an unknown Istio version left an empty cache folder, `make -f` from another
folder failed, an artifacts folder with a space wrote a stray file, SIGHUP skipped teardown.
(2, rootless leftovers after SIGKILL, is in test_rootless.py.)
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from harness.backend import SLEEP, TEST_EGRESS_SLEEP
from harness.errors import HarnessError
from harness.istio_binaries import cache_root, ensure_istio
from harness.local.netns import POD_PATH
from harness.manifests import FIXTURES, FixtureSet
from harness.system_packages import find_command
from harness.wait import poll

REPO = Path(__file__).resolve().parents[1]
LEAKY_ENV = {
    "DRY_RUN": "1",
    "http_proxy": "http://203.0.113.99:3128",
    "https_proxy": "http://203.0.113.99:3128",
    "CURL_CA_BUNDLE": "/nonexistent/ca.pem",
    "SSL_CERT_FILE": "/nonexistent/ca.pem",
}


def _child_pytest(args: list[str], *, env: dict | None = None, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        env=dict(os.environ, **(env or {})),
        **kwargs,
    )


def _one_line(proc: subprocess.CompletedProcess) -> str:
    """The single line of a run stopped before anything started."""
    out = proc.stdout + proc.stderr
    assert "Traceback" not in out, out[-3000:]
    lines = [line for line in out.splitlines() if "egress-harness:" in line]
    assert len(lines) == 1, out[-3000:]
    return lines[0]


# 1 ------------------------------------------------------------------------------------------
@pytest.mark.mesh
def test_pods_get_a_pods_environment_not_the_users(mesh, monkeypatch):
    for key, value in LEAKY_ENV.items():
        monkeypatch.setenv(key, value)
    env = dict(line.split("=", 1) for line in mesh.exec(SLEEP, ["env"]).stdout.splitlines() if "=" in line)
    assert not set(LEAKY_ENV) & set(env), env
    assert env["PATH"] == POD_PATH and env["HOSTNAME"] == "sleep"
    # istio-iptables, run with that environment when a pod gets its sidecar, must install rules.
    try:
        mesh.redeploy(TEST_EGRESS_SLEEP, sidecar=True)
        rules = mesh.pod(TEST_EGRESS_SLEEP).netns.exec(["iptables-save", "-t", "nat"]).stdout
        assert "-A ISTIO_OUTPUT" in rules and "ISTIO_REDIRECT" in rules, rules
    finally:
        mesh.redeploy(TEST_EGRESS_SLEEP, sidecar=False)


def test_dry_run_on_the_local_backend_is_one_line(tmp_path):
    proc = _child_pytest(["suites", "--egress-dry-run", "--egress-artifacts", str(tmp_path / "a")], timeout=60)
    assert proc.returncode == 4
    assert "dry run prints the plan of --egress-backend kind or cluster" in _one_line(proc)


# 3 ------------------------------------------------------------------------------------------
def test_an_artifacts_folder_in_use_stops_a_second_run(tmp_path):
    artifacts = tmp_path / "shared"
    artifacts.mkdir()
    fd = os.open(artifacts / ".lock", os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX)  # what a first run holds for its whole session
    try:
        proc = _child_pytest(["tests/test_pki.py", "--egress-artifacts", str(artifacts)], timeout=60)
    finally:
        os.close(fd)
    assert proc.returncode == 4
    assert "in use by another run" in _one_line(proc)


# 4 ------------------------------------------------------------------------------------------
@pytest.mark.packages  # iptables: make test installs it; a new machine has none
def test_commands_in_sbin_are_found_without_sbin_on_path(monkeypatch):
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    assert find_command("iptables") in ("/usr/sbin/iptables", "/sbin/iptables")
    if os.geteuid() == 0:
        from harness.local.mesh import preflight

        preflight()  # no "missing commands: iptables"


# 5, 6 ---------------------------------------------------------------------------------------
@pytest.fixture
def fixtures_copy(tmp_path) -> Path:
    dest = tmp_path / "fixtures"
    shutil.copytree(FIXTURES, dest)
    return dest


def test_a_jinja_syntax_error_is_one_line_naming_file_and_line(fixtures_copy):
    template = fixtures_copy / "http-gateway/gateway.yaml.j2"
    lines = template.read_text().splitlines()
    broken_at = next(i for i, line in enumerate(lines) if "{%- if" in line)
    lines[broken_at] = lines[broken_at].replace("{%- if", "{%- iff")
    template.write_text("\n".join(lines) + "\n")
    with pytest.raises(HarnessError) as caught:
        FixtureSet(fixtures_copy).check()
    message = str(caught.value)
    assert f"{template}:{broken_at + 1}: template syntax error" in message and "\n" not in message


def test_a_schema_error_is_found_at_start_naming_the_template(fixtures_copy, istio_binaries):
    template = fixtures_copy / "http-gateway/virtualservice.yaml.j2"
    text = template.read_text()
    template.write_text(text.replace("host: edition.cnn.com", "host: 5", 1))
    fixtures = FixtureSet(fixtures_copy)
    fixtures.check()  # it renders: only Istio's schema refuses it
    with pytest.raises(HarnessError) as caught:
        fixtures.validate_all(istio_binaries.istioctl)
    message = str(caught.value)
    assert str(template) in message and "stage http/gateway" in message and "\n" not in message


def test_the_project_fixtures_all_validate(istio_binaries):
    assert FixtureSet(FIXTURES).validate_all(istio_binaries.istioctl) > 10


# 7 ------------------------------------------------------------------------------------------
def test_an_unwritable_artifacts_folder_is_one_line_and_exit_2(tmp_path):
    proc = _child_pytest(["tests/test_pki.py", "--egress-artifacts", "/proc/egress-harness-artifacts"], timeout=60)
    assert proc.returncode == 4
    assert "cannot write the artifacts folder /proc/egress-harness-artifacts" in _one_line(proc)


# 8, 9 (SIGHUP, empty state folder) ----------------------------------------------------------
def _start_holding_child(tmp_path: Path, state_dir: Path) -> tuple[subprocess.Popen, str, Path]:
    ready, hold = tmp_path / "ready", tmp_path / "hold"
    os.mkfifo(hold)
    artifacts = tmp_path / "artifacts"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "pytest",
            "-p",
            "no:cacheprovider",
            "-q",
            "tests/helpers/hold_mesh.py",
            "--egress-artifacts",
            str(artifacts),
        ],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=dict(os.environ, EH_READY=str(ready), EH_HOLD=str(hold), EGRESS_HARNESS_STATE_DIR=str(state_dir)),
    )
    try:
        run_id = poll(
            "the child mesh to be up",
            lambda: ready.read_text() if ready.exists() else "",
            ok=bool,
            timeout=60,
            interval=0.1,
        )
    except BaseException:
        proc.kill()
        raise
    return proc, run_id, artifacts


@pytest.mark.mesh
@pytest.mark.slow
def test_dead_run_cleanup_is_shown_and_sighup_tears_down(tmp_path):
    state_dir = tmp_path / "state"
    # A run that died: its owner pid is gone, and it left a folder behind.
    left = tmp_path / "left-by-dead-run"
    left.mkdir()
    dead = state_dir / "deadbeef"
    dead.mkdir(parents=True)
    gone = subprocess.Popen(["true"])
    gone.wait()
    (dead / "state.json").write_text(
        json.dumps(
            {
                "run_id": "deadbeef",
                "owner_pid": gone.pid,
                "owner_start": None,
                "netns": [],
                "processes": [],
                "paths": [str(left)],
            }
        )
    )
    proc, run_id, artifacts = _start_holding_child(tmp_path, state_dir)
    proc.send_signal(signal.SIGHUP)
    out, _ = proc.communicate(timeout=60)
    assert f"cleaned up after a dead run: removed {left}" in out, out[-3000:]
    assert not left.exists()
    assert (artifacts / "junit.xml").exists(), out[-3000:]  # SIGHUP took the clean path
    assert not (state_dir / run_id).exists()
    assert not state_dir.exists(), "the empty state folder is removed with the last run"
    netns = [n for n in os.listdir("/var/run/netns") if run_id in n] if os.path.isdir("/var/run/netns") else []
    assert not netns


# 9 ------------------------------------------------------------------------------------------
def test_an_unbuildable_version_leaves_no_cache_folder():
    version = "v0.0.0-20200101000000-0123456789ab"
    with pytest.raises(HarnessError):
        ensure_istio(version)
    assert not (cache_root() / f"istio-{version}").exists()


@pytest.mark.slow
def test_make_from_another_folder_with_a_space_in_artifacts(tmp_path):
    proc = subprocess.run(
        [
            "make",
            "-f",
            str(REPO / "Makefile"),
            "unit",
            "ARTIFACTS=my artifacts",
            "PYTEST_ARGS=tests/test_system_packages.py -k listed_once",  # a test make unit selects
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    assert (tmp_path / "my artifacts" / "unit" / "junit.xml").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["my artifacts"], "a stray file was written"


def test_a_bare_make_lists_the_targets_and_installs_nothing(tmp_path):
    """As found: a bare `make` ran the first rule, the virtualenv's, and installed it."""
    venv = tmp_path / "venv"
    proc = subprocess.run(
        ["make", "-f", str(REPO / "Makefile"), f"VENV={venv}"], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "egress-harness: make TARGET" in proc.stdout and "  e2e " in proc.stdout, proc.stdout
    assert list(tmp_path.iterdir()) == [], "a bare make wrote something"
