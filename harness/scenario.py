"""A scenario in progress: stages applied in one mTLS mode, traces taken, cleanup guaranteed."""

from __future__ import annotations

import time

from harness.manifests import render, to_yaml
from harness.trace import Trace


class Scenario:
    def __init__(self, backend, evidence, mode: str):
        self.backend = backend
        self.evidence = evidence
        self.mode = mode
        self.applied: list[dict] = []
        self.stages: list[str] = []
        self._undo: list = []

    def render(self, stage: str, **values) -> list[dict]:
        return render(stage, mode=self.mode, trust=self.backend.upstream_trust(), **values)

    def apply(self, stage: str, **values) -> list[dict]:
        """Apply `stage` (rendered for this mode); replaces what an earlier stage of this test applied."""
        return self.apply_objects(self.render(stage, **values), stage)

    def apply_objects(self, objs: list[dict], stage: str) -> list[dict]:
        stale = [o for o in self.applied if _key(o) not in {_key(n) for n in objs}]
        if stale:
            self.backend.delete(stale)
        started = time.monotonic()
        self.backend.apply(objs)
        self.evidence.observe(**{f"converged.{stage}": f"{time.monotonic() - started:.2f}s"})
        self.applied = objs
        self.stages.append(stage)
        self.evidence.add_text(f"manifests.{len(self.stages)}.{stage.replace('/', '_')}.yaml", to_yaml(objs))
        return objs

    def defer(self, undo) -> None:
        """Run `undo()` at cleanup, after a failed test's evidence is collected (last in, first out)."""
        self._undo.append(undo)

    def delete_all(self, *, wait: bool = True) -> None:
        """Undo everything, newest first; every step runs even if an earlier one fails.
        wait=False leaves the last convergence to the backend's next apply or command."""
        errors = []
        while self._undo:
            try:
                self._undo.pop()()
            except Exception as exc:  # noqa: BLE001 - keep cleaning up; report at the end
                errors.append(exc)
        if self.applied:
            self.backend.delete(self.applied, wait=wait)
            self.applied = []
        if errors:
            raise errors[0]

    def trace(self, source: str, label: str, counters: list[tuple[str, str]] = ()) -> Trace:
        return Trace(self.backend, self.evidence, source, label, list(counters)).begin()


def _key(obj: dict) -> tuple:
    meta = obj.get("metadata") or {}
    return obj.get("kind"), meta.get("namespace"), meta.get("name")
