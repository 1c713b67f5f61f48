"""A scenario in progress: stages applied in one mTLS mode, named steps, traces, cleanup guaranteed.

`values` are what the last applied stage rendered with (harness/manifests.py): checks read the
gateway port and the like from there, never from a rule of their own. `step(name)` names a part
of a check; a failure inside it carries the step's name, and every step is listed in the test's
evidence and in summary.md.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from harness import gateway_api
from harness.backend import GATEWAY
from harness.errors import HopFailure
from harness.manifests import Mode, mode_of, render, stage_values, to_yaml
from harness.trace import Trace

if TYPE_CHECKING:
    from harness.backend import Backend
    from harness.evidence import Evidence


class Scenario:
    def __init__(self, backend: Backend, evidence: Evidence, mode: str | Mode):
        self.backend = backend
        self.evidence = evidence
        self.mode = mode_of(mode)
        self.applied: list[dict] = []
        self.stages: list[str] = []
        self.values: dict = stage_values_for_mode(self.mode)
        self.steps: list[str] = []
        self._undo: list[Callable[[], object]] = []

    def render(self, stage: str, **values: object) -> list[dict]:
        return render(stage, mode=self.mode, trust=self.backend.upstream_trust(), **values)

    def apply(self, stage: str, **values: object) -> list[dict]:
        """Apply `stage` (rendered for this mode); replaces what an earlier stage of this test applied."""
        objs = self.apply_objects(self.render(stage, **values), stage)
        self.values = stage_values(stage, mode=self.mode, trust=self.backend.upstream_trust(), **values)
        return objs

    def apply_changed(self, stage: str, change: Callable[[list[dict]], object], label: str) -> list[dict]:
        """Apply `stage` after `change` edited its rendering in place (a deliberately broken mesh),
        under `label`; `values` are the stage's, so the checks read its ports as for `apply`."""
        objs = self.render(stage)
        change(objs)
        self.apply_objects(objs, label)
        self.values = stage_values(stage, mode=self.mode, trust=self.backend.upstream_trust())
        return objs

    def apply_objects(self, objs: list[dict], stage: str) -> list[dict]:
        stale = [o for o in self.applied if _key(o) not in {_key(n) for n in objs}]
        if stale:
            self.backend.delete(stale)
        started = time.monotonic()
        # What was sent is what cleanup deletes, even if the apply failed part way (stored, then
        # not converged): none of it may be left for the next test.
        self.applied = objs
        self.stages.append(stage)
        self.backend.apply(objs)
        self.evidence.observe(**{f"converged.{stage}": f"{time.monotonic() - started:.2f}s"})
        self.evidence.add_text(f"manifests.{len(self.stages)}.{stage.replace('/', '_')}.yaml", to_yaml(objs))
        return objs

    def apply_extra(self, objs: list[dict], label: str) -> None:
        """Apply objects beside the stage (a NetworkPolicy), kept in the evidence and deleted at cleanup."""
        self.backend.apply(objs)
        self.evidence.add_text(f"manifests.extra.{label.replace('/', '_')}.yaml", to_yaml(objs))
        self.defer(lambda: self.backend.delete(objs))

    @contextlib.contextmanager
    def step(self, name: str) -> Iterator[None]:
        """A named part of a check: a hop failure inside it says which step it was."""
        started = time.monotonic()
        try:
            yield
        except HopFailure as exc:
            self.steps.append(f"✗ {name}")
            self.evidence.observe(steps=list(self.steps))
            exc.step = name
            exc.args = (f"[step: {name}] {exc.args[0]}",)
            raise
        self.steps.append(f"✓ {name} ({time.monotonic() - started:.1f}s)")
        self.evidence.observe(steps=list(self.steps))

    def defer(self, undo: Callable[[], object]) -> None:
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

    @property
    def gateway(self) -> str:
        """The egress gateway's pod in this mode: istio-egressgateway (Istio API), or the pod
        istiod deployed for the Gateway API Gateway the stage applied."""
        if self.mode.api == "istio":
            return GATEWAY
        return self.backend.deployed_gateway(self._gateway_namespace, gateway_api.SEED_GATEWAY)

    @property
    def _gateway_namespace(self) -> str:
        return str(self.values.get("gateway_namespace", gateway_api.SEED_NAMESPACE))

    def trace(self, source: str, label: str, counters: list[tuple[str, str]] | tuple = ()) -> Trace:
        if self.mode.api == "istio":
            return Trace(self.backend, self.evidence, source, label, list(counters)).begin()
        namespace = self._gateway_namespace
        return Trace(
            self.backend,
            self.evidence,
            source,
            label,
            list(counters),
            gateway=self.gateway,
            gateway_spiffe=gateway_api.deployed_spiffe(namespace, gateway_api.SEED_GATEWAY),
            gateway_route=("", gateway_api.deployed_service_host(namespace, gateway_api.SEED_GATEWAY)),
        ).begin()


def stage_values_for_mode(mode: Mode) -> dict:
    """Before any stage: the mode's own values."""
    return {"mode": mode.hop, "api": mode.api, "gateway_port": mode.gateway_port, "hop_tls": mode.hop_tls}


def _key(obj: dict) -> tuple:
    meta = obj.get("metadata") or {}
    return obj.get("kind"), meta.get("namespace"), meta.get("name")
