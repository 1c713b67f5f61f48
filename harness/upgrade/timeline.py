"""traffic-timeline.png of an upgrade report: every request of the continuous traffic over time, one
panel per transition, one row per kind of request (green answered as expected, red not), the
transition's moments marked (change begins, change applied, traffic recovered). The figures say
how many failed; this shows when, and whether the failures cluster at the change or trail it.

It reads what the run wrote under <report>/traffic/: traffic-<transition>.jsonl (one request per
line: its kind, send time `t` from the sender's start and on the wall clock `wall`, ok) and
traffic-<transition>.marks.json (the harness's marks, on the same wall clock).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from harness.pyplot import pyplot

OK, FAILED = "#55a868", "#c44e52"


@dataclass
class Panel:
    transition: str
    kinds: list[str]
    points: list[tuple[float, str, bool]] = field(default_factory=list)  # (t, kind, ok)
    marks: list[tuple[float, str]] = field(default_factory=list)  # (t, label), on the points' time axis


def panels(traffic_dir: Path) -> list[Panel]:
    """One panel per traffic file, in the order the transitions ran (their files' names sort so)."""
    out = []
    for path in sorted(traffic_dir.glob("traffic-*.jsonl"), key=lambda p: p.stat().st_mtime):
        records = [json.loads(line) for line in path.read_text().splitlines() if line.strip().endswith("}")]
        if not records:
            continue
        transition = path.stem.removeprefix("traffic-")
        panel = Panel(transition, list(dict.fromkeys(r["kind"] for r in records)))
        panel.points = [(r["t"], r["kind"], bool(r["ok"])) for r in records]
        marks_file = path.with_suffix(".marks.json")
        with_wall = next((r for r in records if "wall" in r), None)
        if marks_file.exists() and with_wall is not None:
            t0_wall = with_wall["wall"] - with_wall["t"]  # the sender's start on the wall clock
            panel.marks = [(m["wall"] - t0_wall, m["label"]) for m in json.loads(marks_file.read_text())]
        out.append(panel)
    return out


def draw(traffic_dir: Path, out: Path) -> Path | None:
    """The plot, or None when the run sent no traffic (it stopped before a transition)."""
    found = panels(traffic_dir)
    if not found:
        return None
    plt = pyplot()

    fig, axes = plt.subplots(len(found), 1, figsize=(11, 1.6 + 1.1 * len(found)), squeeze=False)
    for ax, panel in zip((row[0] for row in axes), found, strict=True):
        rows = {kind: i for i, kind in enumerate(panel.kinds)}
        for ok, color, label in ((True, OK, "answered"), (False, FAILED, "failed")):
            xs = [t for t, _, good in panel.points if good is ok]
            ys = [rows[k] for _, k, good in panel.points if good is ok]
            ax.scatter(xs, ys, s=9 if ok else 22, color=color, marker="|" if ok else "x", label=label)
        for t, label in panel.marks:
            ax.axvline(t, color="0.35", linestyle="--", linewidth=0.9)
            ax.annotate(label, (t, len(rows) - 0.45), fontsize=7, rotation=90, va="top", ha="right", color="0.25")
        failed = sum(not ok for _, _, ok in panel.points)
        ax.set_title(f"{panel.transition}: {len(panel.points)} requests, {failed} failed", fontsize=9, loc="left")
        ax.set_yticks(range(len(rows)))
        ax.set_yticklabels(panel.kinds, fontsize=8)
        ax.set_ylim(-0.6, len(rows) - 0.4)
        ax.set_xlabel("seconds since the traffic started", fontsize=8)
        ax.grid(axis="x", alpha=0.3)
    axes[0][0].legend(loc="upper right", fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
