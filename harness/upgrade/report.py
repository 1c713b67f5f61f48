"""The upgrade report: `artifacts/upgrade/report.md` for people, `report.json` for tools.

Sections: the two builds; istioctl's precheck and analyze messages; phase × scenario × mode with the
hop of each failure; traffic continuity per transition (sent, failed, longest gap; Istio's own
upgrade test accepts 95 % success); the semantic config diff FROM → TO of each proxy, per
scenario; the stat names the suites read that appeared or vanished.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from harness.config_diff import Change
from harness.upgrade.suites_runner import CaseResult
from harness.upgrade.traffic import TrafficFigures

ISTIO_UPGRADE_SUCCESS_THRESHOLD = 95.0
MD_DIFF_LINES = 120  # per scenario in report.md; all of them in report.json and config-diff.txt


@dataclass
class UpgradeReport:
    from_version: str
    to_version: str
    builds: dict[str, str] = field(default_factory=dict)  # version → describe()
    flows: list[str] = field(default_factory=list)  # "in-place", "canary"
    checks: list[dict] = field(default_factory=list)  # istioctl precheck / analyze: {"command", "rc", "messages"}
    results: list[CaseResult] = field(default_factory=list)
    traffic: list[TrafficFigures] = field(default_factory=list)
    diff: dict[str, list[Change]] = field(default_factory=dict)  # snapshot name → changes
    diff_origin: dict[str, list[str]] = field(default_factory=dict)  # snapshot name → "istiod"/"proxy" per change
    proxy_versions: dict[str, dict[str, str]] = field(default_factory=dict)  # phase → pod → versions
    wall_seconds: float = 0.0
    error: str = ""  # what stopped the run, if anything did
    timeline: Path | None = None  # traffic-timeline.png, once write() drew it

    # ---------------------------------------------------------------- verdicts
    def failures(self) -> list[CaseResult]:
        return [r for r in self.results if r.outcome != "passed"]

    def lossy_transitions(self) -> list[TrafficFigures]:
        return [t for t in self.traffic if t.failed]

    def passed(self) -> bool:
        return (
            not self.error
            and bool(self.results)
            and not self.failures()
            and all(t.success_rate >= ISTIO_UPGRADE_SUCCESS_THRESHOLD for t in self.traffic if t.held_to_threshold)
        )

    def diff_line_count(self) -> int:
        return sum(len(c) for c in self.diff.values())

    def _origins(self, name: str) -> list[str]:
        return self.diff_origin.get(name) or ["?"] * len(self.diff.get(name, []))

    # ---------------------------------------------------------------- output
    def as_json(self) -> dict:
        return {
            "from": self.from_version,
            "to": self.to_version,
            "builds": self.builds,
            "flows": self.flows,
            "passed": self.passed(),
            "error": self.error,
            "wall_seconds": round(self.wall_seconds, 1),
            "checks": self.checks,
            "results": [asdict(r) for r in self.results],
            "traffic": [t.as_json() for t in self.traffic],
            "config_diff": {
                name: [{**c.as_json(), "origin": o} for c, o in zip(changes, self._origins(name), strict=False)]
                for name, changes in self.diff.items()
            },
            "proxy_versions": self.proxy_versions,
        }

    def write(self, directory: Path) -> Path:
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "report.json").write_text(json.dumps(self.as_json(), indent=2, default=str))
        with open(directory / "config-diff.txt", "w") as f:
            for name, changes in self.diff.items():
                for c, origin in zip(changes, self._origins(name), strict=False):
                    f.write(f"[{name}] ({origin}) {c.line()}\n")
        from harness.upgrade.timeline import draw

        self.timeline = draw(directory / "traffic", directory / "traffic-timeline.png")
        path = directory / "report.md"
        path.write_text(self.markdown())
        return path

    def markdown(self) -> str:
        out = [
            f"# Istio upgrade {self.from_version} → {self.to_version}: {'PASSED' if self.passed() else 'FAILED'}",
            "",
        ]
        if self.error:
            out += [f"**Stopped:** {self.error}", ""]
        out += [f"Wall time {self.wall_seconds:.0f} s; flows: {', '.join(self.flows) or 'none'}.", ""]
        out += ["## Builds", ""] + [f"- `{v}`: {d}" for v, d in self.builds.items()] + [""]
        for phase, pods in self.proxy_versions.items():
            out.append(f"- after *{phase}*: " + "; ".join(f"{p}: {v}" for p, v in pods.items()))
        out += ["", "## istioctl checks before the control-plane upgrade (TO's istioctl)", ""]
        for chk in self.checks:
            out.append(f"- `{chk['command']}` → exit {chk['rc']}")
            out += [f"  - {m}" for m in chk["messages"][:30]] or ["  - (no messages)"]
        out += ["", "## Phase × scenario × mode", ""]
        phases = list(dict.fromkeys(r.phase for r in self.results))
        rows: dict[tuple[str, str], dict[str, CaseResult]] = {}
        for r in self.results:
            rows.setdefault((r.case, r.mode), {})[r.phase] = r
        out.append("| scenario | mode | " + " | ".join(phases) + " |")
        out.append("|---|---|" + "---|" * len(phases))
        for (case, mode), by_phase in rows.items():
            cells = []
            for p in phases:
                case_result = by_phase.get(p)
                cells.append(
                    "–"
                    if case_result is None
                    else (
                        "pass"
                        if case_result.outcome == "passed"
                        else f"**FAIL** ({case_result.hop or case_result.message[:60]})"
                    )
                )
            out.append(f"| `{case}` | {mode} | " + " | ".join(cells) + " |")
        failures = self.failures()
        if failures:
            out += ["", "Failures:"] + [f"- {r.phase} `{r.case}` [{r.mode}]: {r.message[:300]}" for r in failures]
        # The kinds of request the traffic alternated: the seed's http and passthrough, or a spec's paths.
        names = list(dict.fromkeys(k for t in self.traffic for k in t.by_kind)) or ["http", "passthrough"]
        out += [
            "",
            f"## Traffic continuity (requests through the gateway during each transition: {', '.join(names)}; "
            f"Istio's upgrade test accepts {ISTIO_UPGRADE_SUCCESS_THRESHOLD:.0f} %)",
            "",
            "| transition | seconds | sent | failed | success | longest gap | "
            + " | ".join(f"{n} ok/sent" for n in names)
            + " | errors | held to 95 % |",
            "|---|---|---|---|---|---|" + "---|" * len(names) + "---|---|",
        ]
        for t in self.traffic:
            found = [t.by_kind.get(n) for n in names]
            kinds = " | ".join(f"{k.sent - k.failed}/{k.sent}" if k else "–" for k in found)
            errors: dict[str, int] = {}
            for k in t.by_kind.values():
                for e, n in k.errors.items():
                    errors[e] = errors.get(e, 0) + n
            out.append(
                f"| {t.transition} | {t.seconds:.1f} | {t.sent} | {t.failed} | {t.success_rate:.1f} % | "
                f"{t.longest_gap_s:.2f} s | {kinds} | "
                f"{', '.join(f'{e}×{n}' for e, n in sorted(errors.items())) or '–'} | "
                f"{'yes' if t.held_to_threshold else 'no: in-place proxy restart'} |"
            )
        lossy = self.lossy_transitions()
        out += [
            "",
            "Transitions that dropped requests: "
            + (", ".join(f"{t.transition} ({t.failed})" for t in lossy) if lossy else "none")
            + ".",
            "",
            *(
                [f"![every request over time, the transitions marked]({self.timeline.name})", ""]
                if self.timeline is not None
                else []
            ),
            "A proxy restarted in place (same pod, same ports: the pocket cluster has one replica and "
            "no rolling update) drops the requests in flight while the new pilot-agent and Envoy start; "
            "on Kubernetes the new pod comes up beside the old one. Those transitions are reported, not "
            "held to 95 %; control-plane transitions are.",
        ]
        out += [
            "",
            f"## Envoy config diff {self.from_version} → {self.to_version} (semantic, egress paths only)",
            "",
            f"{self.diff_line_count()} changed leaves in all; all of them in `config-diff.txt` and `report.json`. "
            "Read with `python -m harness.config_diff snapshots/before/<scenario> snapshots/after/<scenario>`. "
            "(istiod): the change is there already with TO's istiod and FROM's proxies (snapshot "
            "`control-plane`); (proxy): it came with TO's pilot-agent and Envoy.",
            "",
        ]
        for name, changes in self.diff.items():
            stats = [c for c in changes if c.kind == "stat"]
            out += [f"### {name}: {len(changes)} changes ({len(stats)} stat names)", "", "```"]
            out += [f"({o}) {c.line()}" for c, o in zip(changes[:MD_DIFF_LINES], self._origins(name), strict=False)]
            if len(changes) > MD_DIFF_LINES:
                out.append(f"… {len(changes) - MD_DIFF_LINES} more in config-diff.txt")
            out += ["```", ""]
        return "\n".join(out) + "\n"
