"""The plugin is installed for the whole venv (the pytest11 entry point): a session that requests
no harness fixture must find pytest as it would be without it. No artifacts folder, no lock, no
junit.xml redirected, no signal handler changed; a session that does request one gets all four."""

from __future__ import annotations

import inspect
import os
import subprocess
import sys
from pathlib import Path

from _pytest.fixtures import FixtureFunctionDefinition

from harness import pytest_plugin
from harness.spec import pytest_spec

# Run in the child session: what SIGTERM and SIGHUP do there, while a test runs.
_SIGNALS = """
import signal

def _handlers():
    return [signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGHUP)]
"""

QUIET = (
    _SIGNALS
    + """
def test_a_users_own_test():
    assert _handlers() == [signal.SIG_DFL, signal.SIG_DFL], _handlers()
"""
)

USES_THE_HARNESS = (
    _SIGNALS
    + """
def test_with_a_harness_fixture(artifacts_dir):
    assert (artifacts_dir / ".lock").exists()
    assert signal.SIG_DFL not in _handlers(), _handlers()
"""
)


REPO = Path(__file__).resolve().parents[1]


def _run(
    tmp_path: Path, source: str, *args: str, env: dict[str, str] | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess:
    (tmp_path / "test_it.py").write_text(source)
    # A folder outside the repository: its conftest.py (which makes every session of the
    # repository's own a harness session) is not loaded, as in a user's project.
    base = {k: v for k, v in os.environ.items() if not k.startswith("EGRESS_HARNESS_")}
    # pytest's own __pycache__ (assertion rewriting) is not the plugin's: kept out of the folder
    # whatever the caller's environment says, so the listing below sees only what the plugin wrote.
    base["PYTHONDONTWRITEBYTECODE"] = "1"
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", *args, str(tmp_path / "test_it.py")],
        cwd=cwd or tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        env={**base, **(env or {})},
    )


def test_a_session_without_harness_fixtures_is_left_alone(tmp_path: Path):
    proc = _run(tmp_path, QUIET)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "egress_harness" in proc.stdout or "1 passed" in proc.stdout, proc.stdout
    assert sorted(p.name for p in tmp_path.iterdir()) == ["test_it.py"], "the plugin wrote into the user's folder"


def test_a_session_with_a_harness_fixture_takes_the_artifacts_folder(tmp_path: Path):
    proc = _run(tmp_path, USES_THE_HARNESS)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    written = {p.name for p in (tmp_path / "artifacts").iterdir()}
    assert {".lock", "junit.xml", "summary.md"} <= written, written


def test_the_harness_fixtures_are_the_plugins_own():
    defined = {
        name
        for module in (pytest_plugin, pytest_spec)
        for name, obj in inspect.getmembers(module)
        if isinstance(obj, FixtureFunctionDefinition)
    }
    assert defined == pytest_plugin.HARNESS_FIXTURES


# ---------------------------------------------------------------- pytest-xdist: one line


def test_xdist_in_a_harness_session_is_one_line_and_starts_nothing(tmp_path: Path):
    proc = _run(tmp_path, USES_THE_HARNESS, "-n", "2")
    out = proc.stdout + proc.stderr
    assert proc.returncode == 4, out
    assert out.count(pytest_plugin.XDIST_REFUSAL) == 1, out
    assert "in use by another run" not in out and "INTERNALERROR" not in out, out
    assert not (tmp_path / "artifacts").exists(), "a refused session claimed the artifacts folder"


def test_xdist_in_a_session_without_harness_fixtures_runs(tmp_path: Path):
    proc = _run(tmp_path, QUIET, "-n", "2")
    assert proc.returncode == 0 and "1 passed" in proc.stdout, proc.stdout + proc.stderr


def test_xdist_in_the_repositorys_own_session_is_refused_before_workers_start(tmp_path: Path):
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-n", "2", "tests/test_pki.py"]
        + [f"--egress-artifacts={tmp_path / 'a'}"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 4, proc.stdout + proc.stderr
    assert f"egress-harness: {pytest_plugin.XDIST_REFUSAL}" in proc.stderr, proc.stderr
    assert "[gw0]" not in proc.stdout, "workers started"


# ---------------------------------------------------------------- options: command line, env, ini

REPORTS_ARTIFACTS = (
    _SIGNALS
    + """
def test_where(artifacts_dir):
    print("ARTIFACTS=" + artifacts_dir.name)
"""
)


def _artifacts_of(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 0, proc.stdout + proc.stderr
    [line] = [ln for ln in proc.stdout.splitlines() if "ARTIFACTS=" in ln]
    return line.split("ARTIFACTS=", 1)[1]


def test_the_command_line_wins_over_the_environment_which_wins_over_the_ini_file(tmp_path: Path):
    (tmp_path / "pytest.ini").write_text("[pytest]\negress_artifacts = from-ini\n")
    env = {"EGRESS_HARNESS_ARTIFACTS": str(tmp_path / "from-env")}
    assert _artifacts_of(_run(tmp_path, REPORTS_ARTIFACTS, "-s")) == "from-ini"
    assert _artifacts_of(_run(tmp_path, REPORTS_ARTIFACTS, "-s", env=env)) == "from-env"
    flag = f"--egress-artifacts={tmp_path / 'from-flag'}"
    assert _artifacts_of(_run(tmp_path, REPORTS_ARTIFACTS, "-s", flag, env=env)) == "from-flag"


def test_a_bad_value_names_where_it_came_from(tmp_path: Path):
    proc = _run(tmp_path, USES_THE_HARNESS, env={"EGRESS_HARNESS_BACKEND": "minikube"})
    assert proc.returncode == 4, proc.stdout + proc.stderr
    assert (
        "egress-harness: EGRESS_HARNESS_BACKEND is 'minikube', not one of local, kind, cluster: "
        "fix EGRESS_HARNESS_BACKEND" in proc.stderr
    ), proc.stderr
    (tmp_path / "pytest.ini").write_text("[pytest]\negress_dry_run = maybe\n")
    proc = _run(tmp_path, USES_THE_HARNESS)
    assert proc.returncode == 4 and "the ini option egress_dry_run" in proc.stderr, proc.stderr


def test_no_option_of_the_plugin_is_unprefixed():
    from harness.pytest_options import OPTIONS

    assert all(o.flag_name.startswith("--egress-") and o.env.startswith("EGRESS_HARNESS_") for o in OPTIONS.values())
