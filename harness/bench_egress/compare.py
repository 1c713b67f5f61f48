"""Two benchmark results side by side: the upgrade question ("did 1.31 make egress slower than 1.30?").

For each path and load present in both: p90 and Envoy CPU per 1000 requests in A and B, and B/A.
A path is flagged when B/A of its p90 *relative to its floor* or of its Envoy CPU per request moves
by more than the threshold *and* the two runs' ranges over their repeats (min–max) do not overlap:
a move inside the repeats' own spread is noise, not a regression. The floor-relative p90 is
compared rather than the raw one because the two runs may sit minutes or days apart on a machine
whose speed varies; the floor, measured in the same run, carries part of that variation. CPU per
request is already per request, and is the steadier of the two: on our shared 2-core machine two
runs of the same build gave Envoy CPU per request within ±15 % and floor-relative p90 up to 5× apart
(README, "What each egress path costs"). A warning says when the machine was much busier in one run.
"""

from __future__ import annotations

import statistics

from harness.bench_egress.report import loads_of

DEFAULT_THRESHOLD = 0.20


def _median(row: dict, key: str) -> float | None:
    stat = row.get(key)
    return None if stat is None else stat["median"]


def _ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or a == 0:
        return None
    return b / a


def _disjoint(ra: dict, rb: dict, key: str) -> bool:
    """The two runs' min–max ranges over repeats do not overlap (with one repeat: a point each)."""
    sa, sb = ra.get(key), rb.get(key)
    if sa is None or sb is None:
        return False
    return sa["max"] < sb["min"] or sb["max"] < sa["min"]


def _busy(result: dict) -> float:
    """Median 1-minute load average over the run's samples (older results: start and end)."""
    values = [s["loadavg_1m"] for s in result["samples"] if "loadavg_1m" in s]
    if not values:
        env = result["environment"]
        values = [x[0] for x in (env.get("loadavg_at_start"), env.get("loadavg_at_end")) if x]
    return statistics.median(values) if values else 0.0


def load_warning(a: dict, b: dict) -> str | None:
    """One line when the machine's 1-minute load average at the start differs a lot between runs."""
    la, lb = (_busy(r) for r in (a, b))
    cpus = a["environment"].get("cpus") or 1
    if max(la, lb) > cpus and max(la, lb) > 1.5 * max(min(la, lb), 0.1):
        return (
            f"the machine was much busier in one run (median load average {la:.1f} in A, {lb:.1f} in B, {cpus} CPUs): "
            f"latency moves are likely the machine's; trust CPU per request more"
        )
    if min(la, lb) > cpus:
        return (
            f"the machine was busy in both runs (median load average {la:.1f} in A, {lb:.1f} in B, {cpus} CPUs): "
            f"latency waits for a CPU and moves with other work; trust CPU per request more"
        )
    return None


def compare(a: dict, b: dict, threshold: float = DEFAULT_THRESHOLD) -> tuple[list[dict], list[str]]:
    """Rows (one per path × load in both) and the flags (one line each)."""
    rows: list[dict] = []
    flags: list[str] = []
    loads = [x for x in loads_of(a["samples"]) if x in set(loads_of(b["samples"]))]
    for path in a["summary"]:
        if path not in b["summary"]:
            continue
        for load in loads:
            ra, rb = a["summary"][path].get(load), b["summary"][path].get(load)
            if ra is None or rb is None:
                continue
            row = {"path": path, "load": load}
            for key in ("p90_ms", "p90_ms_x_floor", "cpu_envoys", "actual_qps"):
                row[f"{key}_a"], row[f"{key}_b"] = _median(ra, key), _median(rb, key)
                row[f"{key}_ratio"] = _ratio(row[f"{key}_a"], row[f"{key}_b"])
            for key, what in (("p90_ms_x_floor", "p90 relative to its floor"), ("cpu_envoys", "Envoy CPU per request")):
                r = row[f"{key}_ratio"]
                if r is not None and abs(r - 1) > threshold and _disjoint(ra, rb, key):
                    flags.append(
                        f"{path} at {load}: {what} ×{r:.2f} (A {row[key + '_a']:.3f} → B {row[key + '_b']:.3f})"
                    )
            rows.append(row)
    return rows, flags


def render_markdown(
    a: dict, b: dict, rows: list[dict], flags: list[str], threshold: float, names: tuple[str, str]
) -> str:
    def f(v: float | None, d: int = 3) -> str:
        return "–" if v is None else f"{v:.{d}f}"

    lines = [
        "# Egress benchmark: A vs B",
        "",
        f"- A: `{names[0]}`: {a['environment']['istio']}, {a['environment']['started_utc']}",
        f"- B: `{names[1]}`: {b['environment']['istio']}, {b['environment']['started_utc']}",
        "",
        f"Flagged when p90/floor or Envoy CPU per request moves by more than {threshold:.0%} and outside "
        "both runs' spread over repeats.",
        "",
        *([f"Warning: {w}", ""] if (w := load_warning(a, b)) else []),
        "| path | load | p90 ms A | p90 ms B | B/A | p90 ×floor A | ×floor B | B/A | Envoy CPU-ms/1k A | B | B/A |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['path']} | {r['load']} | {f(r['p90_ms_a'])} | {f(r['p90_ms_b'])} | {f(r['p90_ms_ratio'], 2)} | "
            f"{f(r['p90_ms_x_floor_a'], 2)} | {f(r['p90_ms_x_floor_b'], 2)} | {f(r['p90_ms_x_floor_ratio'], 2)} | "
            f"{f(r['cpu_envoys_a'], 0)} | {f(r['cpu_envoys_b'], 0)} | {f(r['cpu_envoys_ratio'], 2)} |"
        )
    lines += ["", "## Flags", ""] + ([f"- {x}" for x in flags] or ["none"]) + [""]
    return "\n".join(lines)
