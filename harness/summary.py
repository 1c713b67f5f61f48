"""artifacts/summary.md: scenario × mode × result, with the key observations of each test."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

_ICON = {"passed": "pass", "failed": "**FAIL**", "skipped": "skip", "harness error": "**HARNESS ERROR**"}


# The terminal's words and order for the totals ("1 failed, 30 passed, 2 errors"), so that the two agree.
_TOTALS = (("failed", "failed"), ("passed", "passed"), ("skipped", "skipped"), ("harness error", "error"))


def result_cell(outcome: str) -> str:
    return _ICON.get(outcome, outcome)


def observations_cell(observations: dict) -> str:
    return "<br>".join(f"{k}: {v}" for k, v in observations.items())


def totals_line(counts: dict[str, int], deselected: int = 0) -> str:
    """The totals as pytest's last line says them: one test, one count, harness errors as errors."""
    parts = []
    for outcome, word in _TOTALS:
        n = counts.get(outcome, 0)
        if word == "error" and n:
            parts.append(f"{n} error{'s' if n != 1 else ''}")
        elif n:
            parts.append(f"{n} {word}")
        if word == "skipped" and deselected:
            parts.append(f"{deselected} deselected")
    parts += [f"{n} {k}" for k, n in sorted(counts.items()) if k not in dict(_TOTALS) and n]
    return ", ".join(parts) or "no tests ran"


@dataclass(frozen=True)
class Row:
    """One test: a row of summary.md (scenario, test, mode, result, observations) and of summary.json
    (with its full id and the hop that failed)."""

    id: str
    scenario: str
    test: str  # the test's name with every parameter but the mode (which has its column)
    mode: str
    outcome: str
    observations: dict
    hop: str | None = None


@dataclass
class SummaryWriter:
    rows: list[Row] = field(default_factory=list)
    deselected: int = 0
    stopped: str | None = None  # the harness fault that stopped the session before every test ran

    def add(self, item, outcome: str, observations: dict, hop: str | None = None) -> None:
        module = item.module.__name__.rsplit(".", 1)[-1].removeprefix("test_") if getattr(item, "module", None) else ""
        callspec = getattr(item, "callspec", None)
        mode = callspec.params.get("mode", "-") if callspec else "-"
        # Every parameter but the mode in the name: the three cleanup stages of one mode are three
        # rows that say which.
        others = [str(v) for k, v in (callspec.params.items() if callspec else ()) if k != "mode"]
        name = getattr(item, "originalname", item.name) + (f"[{'-'.join(others)}]" if others else "")
        self.rows.append(Row(item.nodeid, module, name, mode, outcome, dict(observations), hop))

    def counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for row in self.rows:
            counts[row.outcome] = counts.get(row.outcome, 0) + 1
        return counts

    def as_json(self, properties: dict[str, str]) -> dict:
        """summary.json: the rows of summary.md with each test's full id and failed hop."""
        return {
            "totals": self.counts(),
            "deselected": self.deselected,
            "stopped": self.stopped,
            "properties": properties,
            "tests": [asdict(row) for row in self.rows],
        }

    def write(self, path: Path) -> None:
        counts = self.counts()
        lines = [
            "# egress-harness summary",
            "",
            totals_line(counts, self.deselected),
            *(
                ["", "errors are HARNESS ERRORs: faults of the harness, not failures of the mesh"]
                if counts.get("harness error")
                else []
            ),
            *(["", f"the session stopped early: {self.stopped}"] if self.stopped else []),
            "",
            "| scenario | test | mode | result | observations |",
            "|---|---|---|---|---|",
        ]
        for row in self.rows:
            facts = observations_cell(row.observations).replace("|", "\\|")
            lines.append(f"| {row.scenario} | {row.test} | {row.mode} | {result_cell(row.outcome)} | {facts} |")
        path.write_text("\n".join(lines) + "\n")
