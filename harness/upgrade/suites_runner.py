"""The suites of suites/, run as they are against a mesh kept across the upgrade's phases.

Why not pytest per phase: the mesh fixture is session-scoped and a phase must run on the SAME mesh
(the upgrade changes it underneath); a nested pytest session would start its own. So each suite
function (`def test_x(scenario, mode[, stage])`) is called here with a Scenario on that mesh, for
every mode and every `@pytest.mark.parametrize` value, exactly the cases pytest would collect. A
HopFailure gives the hop; a failed case's evidence (the test's own and the mesh's) is written as
the fixtures would write it.
"""

from __future__ import annotations

import importlib.util
import inspect
import itertools
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from harness.errors import HarnessFault, HopFailure
from harness.evidence import Evidence
from harness.manifests import MODES
from harness.scenario import Scenario

SUITES_DIR = Path(__file__).resolve().parents[2] / "suites"
SPEC_SUITE = "test_egress_spec.py"


@dataclass(frozen=True)
class Case:
    suite: str  # module file stem, e.g. test_http_gateway
    name: str  # function name
    params: tuple[tuple[str, object], ...]
    func: Callable

    @property
    def id(self) -> str:
        extra = "-".join(str(v) for _, v in self.params)
        return f"{self.suite}::{self.name}" + (f"[{extra}]" if extra else "")


@dataclass
class CaseResult:
    phase: str
    case: str
    mode: str
    outcome: str  # passed / failed
    hop: str = ""
    message: str = ""
    seconds: float = 0.0


def collect_cases(select: list[str] | None = None) -> list[Case]:
    """Every test function of suites/test_*.py × its parametrize values; `select` keeps the cases
    whose id contains one of the words."""
    cases = []
    for path in sorted(SUITES_DIR.glob("test_*.py")):
        if path.name == SPEC_SUITE:  # an egress spec's runner, not a seed suite (it takes a spec)
            continue
        spec = importlib.util.spec_from_file_location(f"egress_harness_suites.{path.stem}", path)
        if spec is None or spec.loader is None:
            raise HarnessFault(f"cannot load the suite module {path}")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        for name, func in inspect.getmembers(module, inspect.isfunction):
            if not name.startswith("test_") or func.__module__ != module.__name__:
                continue
            grids = []
            for mark in getattr(func, "pytestmark", []):
                if mark.name == "parametrize":
                    argname, values = mark.args[0], mark.args[1]
                    grids.append([(argname, v) for v in values])
            for combo in itertools.product(*grids) if grids else [()]:
                case = Case(path.stem, name, tuple(combo), func)
                if not select or any(word in case.id for word in select):
                    cases.append(case)
    cases.sort(key=lambda c: (c.suite, inspect.getsourcelines(c.func)[1], c.id))
    return cases


class PhaseScenario(Scenario):
    """A Scenario whose rendered manifests can be altered (to prove a changed fixture is caught)."""

    def __init__(self, backend, evidence, mode: str, alter: Callable[[list[dict]], list[dict]] | None = None):
        super().__init__(backend, evidence, mode)
        self._alter = alter

    def render(self, stage: str, **values) -> list[dict]:
        objs = super().render(stage, **values)
        return self._alter(objs) if self._alter else objs


def judge(result: CaseResult, call: Callable[[], object], evidence: Evidence) -> None:
    """Run `call` and set `result` from how it ended: a HopFailure gives the hop, any other error
    is the case's failure too (the phase goes on), with its traceback in the evidence."""
    try:
        call()
    except HopFailure as exc:
        result.outcome, result.hop, result.message = "failed", exc.hop, str(exc).splitlines()[0]
    except AssertionError as exc:
        result.outcome, result.message = "failed", (str(exc).splitlines() or ["AssertionError"])[0]
    except Exception as exc:  # noqa: BLE001 - an error in a case is its failure, the phase goes on
        result.outcome, result.message = "failed", f"{type(exc).__name__}: {exc}".splitlines()[0]
        evidence.add_text("traceback.txt", traceback.format_exc())


def write_failure(mesh, evidence: Evidence, where: Path) -> None:
    """A failed case's evidence: its own and the mesh-wide state, under `where`."""
    try:
        mesh.collect(where / "mesh")
    except Exception as exc:  # noqa: BLE001 - keep the case's own evidence
        evidence.add_text("mesh-collect-error.txt", repr(exc))
    evidence.write(where)


def run_case(
    mesh,
    phase: str,
    case: Case,
    mode: str,
    evidence_root: Path,
    alter: Callable[[list[dict]], list[dict]] | None = None,
) -> CaseResult:
    evidence = Evidence()
    sc = PhaseScenario(mesh, evidence, mode, alter)
    started = time.monotonic()
    result = CaseResult(phase, case.id, mode, "passed")
    kwargs = {"scenario": sc, "mode": mode, **dict(case.params)}
    wanted = inspect.signature(case.func).parameters
    judge(result, lambda: case.func(**{k: v for k, v in kwargs.items() if k in wanted}), evidence)
    if result.outcome == "failed":
        write_failure(
            mesh, evidence, evidence_root / phase / f"{case.id}[{mode}]".replace("/", "_").replace("::", "__")
        )
    try:
        sc.delete_all(wait=True)
    except Exception as exc:  # noqa: BLE001
        if result.outcome == "passed":
            result.outcome, result.message = "failed", f"cleanup: {type(exc).__name__}: {exc}".splitlines()[0]
    result.seconds = round(time.monotonic() - started, 2)
    return result


def run_phase(
    mesh,
    phase: str,
    cases: list[Case],
    evidence_root: Path,
    modes=MODES,
    alter: Callable[[list[dict]], list[dict]] | None = None,
    say=print,
) -> list[CaseResult]:
    results = []
    for case in cases:
        for mode in modes:
            r = run_case(mesh, phase, case, mode, evidence_root, alter)
            say(
                f"  {phase}: {case.id}[{mode}] {r.outcome}"
                + (f" [hop: {r.hop}]" if r.hop else "")
                + (f" {r.message[:160]}" if r.outcome != "passed" and not r.hop else "")
            )
            results.append(r)
    return results
