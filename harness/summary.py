"""artifacts/summary.md: scenario × mode × result, with the key observations of each test."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

_ICON = {"passed": "pass", "failed": "**FAIL**", "skipped": "skip", "harness error": "**HARNESS ERROR**"}


@dataclass
class SummaryWriter:
    rows: list[tuple[str, str, str, str, dict]] = field(default_factory=list)

    def add(self, item, outcome: str, observations: dict) -> None:
        module = item.module.__name__.rsplit(".", 1)[-1].removeprefix("test_") if getattr(item, "module", None) else ""
        callspec = getattr(item, "callspec", None)
        mode = callspec.params.get("mode", "-") if callspec else "-"
        self.rows.append(
            (
                module,
                item.originalname if hasattr(item, "originalname") else item.name,
                mode,
                outcome,
                dict(observations),
            )
        )

    def write(self, path: Path) -> None:
        counts: dict[str, int] = {}
        for *_, outcome, _ in self.rows:
            counts[outcome] = counts.get(outcome, 0) + 1
        lines = [
            "# egress-harness summary",
            "",
            ", ".join(f"{n} {k}" for k, n in sorted(counts.items())),
            "",
            "| scenario | test | mode | result | observations |",
            "|---|---|---|---|---|",
        ]
        for scenario, test, mode, outcome, obs in self.rows:
            facts = "<br>".join(f"{k}: {v}" for k, v in obs.items()).replace("|", "\\|")
            lines.append(f"| {scenario} | {test} | {mode} | {_ICON.get(outcome, outcome)} | {facts} |")
        path.write_text("\n".join(lines) + "\n")
