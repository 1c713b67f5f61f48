"""Fixtures of the suites: the mTLS mode parameter, scenario stages with guaranteed cleanup,
traces, and the run summary (artifacts/summary.md).

Every test that applies a stage gets it deleted afterwards and the mesh checked back at baseline
(no scenario listener left on the gateway); on failure the mesh-wide state is collected into the
test's evidence folder before anything is deleted.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from harness.pytest_support import EVIDENCE_KEY, evidence_dir_for, outcome_of, has_failed
from harness.backend import GATEWAY
from harness.manifests import MODES, render
from harness.summary import SummaryWriter
from harness.trace import Trace

_SUMMARY = pytest.StashKey[SummaryWriter]()


@pytest.fixture(params=MODES)
def mode(request: pytest.FixtureRequest) -> str:
    """The sidecar → gateway hop: istio-mutual or plaintext (the words appear in test ids)."""
    return request.param


class Scenario:
    def __init__(self, backend, evidence, mode: str):
        self.backend = backend
        self.evidence = evidence
        self.mode = mode
        self.applied: list[dict] = []
        self.stages: list[str] = []

    def apply(self, stage: str, **values) -> list[dict]:
        """Apply `stage` (rendered for this mode); replaces what an earlier stage of this test applied."""
        objs = render(stage, mode=self.mode, trust=self.backend.upstream_trust(), **values)
        stale = [o for o in self.applied if _key(o) not in {_key(n) for n in objs}]
        if stale:
            self.backend.delete(stale)
        started = time.monotonic()
        self.backend.apply(objs)
        self.evidence.observe(**{f"converged.{stage}": f"{time.monotonic() - started:.2f}s"})
        self.applied = objs
        self.stages.append(stage)
        from harness.manifests import to_yaml

        self.evidence.add_text(f"manifests.{len(self.stages)}.{stage.replace('/', '_')}.yaml", to_yaml(objs))
        return objs

    def delete_all(self) -> None:
        if self.applied:
            self.backend.delete(self.applied)
            self.applied = []

    def trace(self, source: str, label: str, counters: list[str] = ()) -> Trace:
        return Trace(self.backend, self.evidence, source, label, list(counters)).begin()


def _key(obj: dict) -> tuple:
    meta = obj.get("metadata") or {}
    return obj.get("kind"), meta.get("namespace"), meta.get("name")


@pytest.fixture
def scenario(mesh, evidence, mode, request: pytest.FixtureRequest, artifacts_dir: Path):
    sc = Scenario(mesh, evidence, mode)
    yield sc
    if has_failed(request.node):
        try:
            mesh.collect(evidence_dir_for(artifacts_dir, request.node) / "mesh")
        except Exception as exc:  # noqa: BLE001 - keep the test's own evidence
            evidence.add_text("mesh-collect-error.txt", repr(exc))
    sc.delete_all()


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
    artifacts.mkdir(parents=True, exist_ok=True)
    writer.write(artifacts / "summary.md")
