"""A backend's plan as steps: what a dry run prints and a real run performs, one list for both.

Given the backend (a real run), each step carries the action that performs it (Step.run), numbered
and titled as printed; steps run elsewhere have none (IMAGES=source: the engine and image builds, by
with_engine outside pytest; per test: the suites)."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from harness.backends import tools
from harness.errors import HarnessFault

if TYPE_CHECKING:  # imported where the steps are made: kind.py and cluster.py import this module
    from harness.backends.kube import KubeBackend


Action = Callable[[], object]


@dataclass
class Step:
    """One step as the plan prints it and, in a real run, as the backend performs it."""

    title: str
    commands: list[list[str]] = field(default_factory=list)
    manifest: str | None = None  # YAML (or Corefile text) the step applies
    note: str = ""
    by: str = ""  # who runs it when the backend does not (IMAGES=source: with_engine, outside pytest)
    # Bound only in a real run, so they are neither printed nor compared: a dry run's steps equal a real run's.
    run: Action | None = field(default=None, repr=False, compare=False)
    timing: str = field(default="", repr=False, compare=False)  # the backend's timings key, set once it is done


@dataclass
class Plan:
    backend: str
    versions: dict[str, str]
    tools: list[tools.Tool]
    steps: list[Step]
    teardown: list[Step]

    def render(self) -> str:
        out = [
            f"# egress-harness plan: backend {self.backend} (dry run: nothing below has been run)",
            "",
            "## Versions",
        ]
        out += [f"  {k}: {v}" for k, v in self.versions.items()]
        out += ["", "## Tools"] + [
            f"  {t.describe()}" + (f"\n      fetch: {' '.join(t.fetch)}" if t.fetch and not t.path else "")
            for t in self.tools
        ]
        for title, steps in (("Steps", self.steps), ("Teardown", self.teardown)):
            out += ["", f"## {title}"]
            for i, step in enumerate(steps, 1):
                out.append(f"{i}. {step.title}")
                if step.by:
                    out.append(f"   # run by {step.by}")
                if step.note:
                    out.append(f"   # {step.note}")
                out += [f"   $ {' '.join(cmd)}" for cmd in step.commands]
                if step.manifest is not None:
                    out.append("   ---8<--- manifest")
                    out += [f"   {line}" if line else "" for line in step.manifest.rstrip("\n").splitlines()]
                    out.append("   --->8---")
        return "\n".join(out) + "\n"


def run_steps(
    label: str, steps: list[Step], done: Callable[[Step], None] = lambda step: None, *, keep_going: bool = False
) -> None:
    """Run the steps that have an action, in order, each after one line `<label> N/M: <title>`,
    numbered as the plan prints them. The others run elsewhere: with_engine's, or the suites' per test.
    keep_going (teardown): a step that fails does not stop the later ones; the failures are
    raised together at the end."""
    last = max((number for number, step in enumerate(steps, 1) if step.run is not None), default=0)
    failures: list[str] = []
    for number, step in enumerate(steps, 1):
        if step.run is None:
            continue
        print(f"[egress-harness] {label} {number}/{last}: {step.title}", file=sys.stderr, flush=True)
        if not keep_going:
            step.run()
            done(step)
            continue
        try:
            step.run()
            done(step)
        except Exception as exc:  # noqa: BLE001 - every teardown step runs; all failures are reported
            failures.append(f"{step.title}: {exc}")
    if failures:
        raise HarnessFault(f"{label} left work undone: " + "; ".join(failures))


Bind = Callable[..., Action | None]


def bind_actions(backend: KubeBackend | None) -> Bind:
    """act(Backend.method, *args): the step's action bound to a real run's backend; None in a dry run."""

    def act(method: Callable[..., object], *args: object) -> Action | None:
        return None if backend is None else functools.partial(method, backend, *args)

    return act
