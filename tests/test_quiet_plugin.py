"""The plugin is installed for the whole venv (the pytest11 entry point): a session that requests
no harness fixture must find pytest as it would be without it. No artifacts folder, no lock, no
junit.xml redirected, no signal handler changed; a session that does request one gets all four."""

from __future__ import annotations

import inspect
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


def _run(tmp_path: Path, source: str) -> subprocess.CompletedProcess:
    (tmp_path / "test_it.py").write_text(source)
    # A folder outside the repository: its conftest.py (which makes every session of the
    # repository's own a harness session) is not loaded, as in a user's project.
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "test_it.py"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
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
