"""Fixtures of the suites: the mTLS mode parameter, scenario stages with guaranteed cleanup,
traces, and the run summary (artifacts/summary.md).

Every test that applies a stage gets it deleted afterwards and the mesh checked back at baseline
(no scenario listener left on the gateway); on failure the mesh-wide state is collected into the
test's evidence folder before anything is deleted.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.pytest_support import EVIDENCE_KEY, evidence_dir_for, outcome_of, has_failed
from harness.manifests import MODES
from harness.summary import SummaryWriter
from harness.scenario import Scenario

_SUMMARY = pytest.StashKey[SummaryWriter]()


@pytest.fixture(params=MODES)
def mode(request: pytest.FixtureRequest) -> str:
    """The sidecar → gateway hop: istio-mutual or plaintext (the words appear in test ids)."""
    return request.param


@pytest.fixture
def scenario(mesh, evidence, mode, request: pytest.FixtureRequest, artifacts_dir: Path):
    sc = Scenario(mesh, evidence, mode)
    yield sc
    if has_failed(request.node):
        try:
            mesh.collect(evidence_dir_for(artifacts_dir, request.node) / "mesh")
        except Exception as exc:  # noqa: BLE001 - keep the test's own evidence
            evidence.add_text("mesh-collect-error.txt", repr(exc))
    sc.delete_all(wait=False)  # the next test's first apply or command waits for it


def pytest_configure(config: pytest.Config) -> None:
    config.stash[_SUMMARY] = SummaryWriter()


def pytest_runtest_makereport(item: pytest.Item, call) -> None:
    if call.when != "teardown":
        return
    writer = item.config.stash.get(_SUMMARY, None)
    if writer is None:
        return
    ev = item.stash.get(EVIDENCE_KEY, None)
    outcome = "failed" if (has_failed(item) or call.excinfo is not None) else outcome_of(item)
    writer.add(item, outcome, getattr(ev, "observations", {}))


def pytest_sessionfinish(session: pytest.Session) -> None:
    writer = session.config.stash.get(_SUMMARY, None)
    if writer is None or not writer.rows:
        return
    artifacts = Path(session.config.getoption("--artifacts")).resolve()
    try:
        artifacts.mkdir(parents=True, exist_ok=True)
        writer.write(artifacts / "summary.md")
    except OSError as exc:
        print(f"egress-harness: cannot write {artifacts / 'summary.md'}: {exc.strerror}")
