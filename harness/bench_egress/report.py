"""From samples to figures: medians over repeats with their spread, ratios to each path's floor.

Every ratio is taken within one repeat (the path and its floor measured minutes apart at most, on
the same mesh), then the median of those ratios over repeats is reported: the machine is shared
and noisy, and a ratio cancels what a slow minute does to both. Spread is min–max over repeats.
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path

from harness.bench_egress.paths import BY_NAME, PATHS

LATENCY = ("p50_ms", "p90_ms", "p99_ms", "max_ms")
HOPS = ("sidecar", "gateway")


def _stats(values: list[float | None] | list[float]) -> dict | None:
    values = [v for v in values if v is not None]
    if not values:
        return None
    return {
        "median": round(statistics.median(values), 4),
        "min": round(min(values), 4),
        "max": round(max(values), 4),
        "n": len(values),
    }


def loads_of(samples: list[dict]) -> list[str]:
    """Load labels in run order: the fixed rates ascending, then 'max'."""
    labels = {s["load"] for s in samples}
    return sorted((x for x in labels if x != "max"), key=float) + (["max"] if "max" in labels else [])


def paths_of(samples: list[dict]) -> list[str]:
    present = {s["path"] for s in samples}
    return [p.name for p in PATHS if p.name in present]


def envoy_cpu(sample: dict) -> float:
    """CPU-ms per 1000 requests of all Envoys on the path (0 for a path without Istio)."""
    per = sample["cpu_ms_per_1k"]
    return round(sum(per.get(h) or 0.0 for h in HOPS), 2)


def total_cpu(sample: dict) -> float:
    """Everything the request cost: client + Envoys + upstream, CPU-ms per 1000 requests."""
    per = sample["cpu_ms_per_1k"]
    return round(sum(v for v in per.values() if v is not None), 2)


def summarize(samples: list[dict]) -> dict:
    """{path: {load: figures}}; each figure {median, min, max, n}; ratios and added ms vs the floor."""
    index = {(s["repeat"], s["path"], s["load"]): s for s in samples}
    out: dict[str, dict[str, dict]] = {}
    for name in paths_of(samples):
        floor = BY_NAME[name].floor
        out[name] = {}
        for load in loads_of(samples):
            mine = [s for s in samples if s["path"] == name and s["load"] == load]
            if not mine:
                continue
            # (sample, its floor's sample in the same repeat and load)
            pairs: list[tuple[dict, dict]] = [
                (s, f) for s in mine if (f := index.get((s["repeat"], floor, load))) is not None
            ]
            row: dict = {"floor": floor, "repeats": len(mine)}
            for key in (*LATENCY, "avg_ms", "actual_qps"):
                row[key] = _stats([s[key] for s in mine])
                row[f"{key}_x_floor"] = _stats([s[key] / f[key] for s, f in pairs if f[key]])
            for key in LATENCY:
                row[f"{key}_added"] = _stats([s[key] - f[key] for s, f in pairs])
            row["errors"] = sum(s["errors"] for s in mine)
            row["requests"] = sum(s["count"] for s in mine)
            for hop in (*HOPS, "upstream", "client"):
                row[f"cpu_{hop}"] = _stats([s["cpu_ms_per_1k"].get(hop) for s in mine])
            row["cpu_envoys"] = _stats([envoy_cpu(s) for s in mine])
            row["cpu_total"] = _stats([total_cpu(s) for s in mine])
            row["cpu_total_x_floor"] = _stats([total_cpu(s) / total_cpu(f) for s, f in pairs if total_cpu(f)])
            for hop in HOPS:
                row[f"rss_{hop}"] = _stats([s["memory_mib"].get(hop) for s in mine])
            out[name][load] = row
    return out


def _fmt(stat: dict | None, digits: int = 3, spread: bool = True) -> str:
    if stat is None:
        return "–"
    m = f"{stat['median']:.{digits}f}"
    if spread and stat["n"] > 1:
        return f"{m} ({stat['min']:.{digits}f}–{stat['max']:.{digits}f})"
    return m


def render_markdown(result: dict) -> str:
    env, cfg, summary = result["environment"], result["config"], result["summary"]
    samples = result["samples"]
    loads = loads_of(samples)
    lines = [
        "# Egress paths: latency and CPU per hop",
        "",
        f"{env['istio']}, fortio {env['fortio']}, {env['cpus']} CPUs, load average at start "
        f"{', '.join(f'{x:.2f}' for x in env['loadavg_at_start'])}, at the end "
        f"{', '.join(f'{x:.2f}' for x in env.get('loadavg_at_end') or ())}; started {env['started_utc']}.",
        f"Command: `{result['command']}`",
        "",
        f"{cfg['repeats']} repeat(s); fixed rates {', '.join(map(str, cfg['rates']))} req/s for {cfg['duration']} s each "
        f"and a max-throughput run of {cfg['max_duration']} s, {cfg['connections']} connections, after a "
        f"{cfg['warmup']} s warm-up. Figures: median over repeats (min–max in brackets when repeated). "
        "×floor: the ratio to the path's floor (the same app traffic without Istio) in the same repeat; "
        "+ms: latency added over the floor. CPU: CPU-ms per 1000 requests (= µs per request) from /proc.",
        "",
        "## Paths",
        "",
        "| path | hops | floor | manifests (suites' stage, mode) |",
        "|---|---|---|---|",
    ]
    for name in summary:
        p = BY_NAME[name]
        lines.append(
            f"| {name} | {p.hops} | {p.floor} | {p.stage + ' (' + p.mode + ')' if p.stage else '— (no Istio)'} |"
        )

    def table(load: str, caption: str, header: list[str], cells) -> list[str]:
        """One table of the paths measured at `load`: `cells(row)` gives a path's columns."""
        out = ["", caption, "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        out += [f"| {name} | " + " | ".join(cells(rows[load])) + " |" for name, rows in summary.items() if load in rows]
        return out

    for load in loads:
        title = "as fast as it goes" if load == "max" else f"{load} req/s"
        lines += table(
            load,
            f"## Latency at {title} (ms)",
            ["path", "req/s", "p50", "p90", "p99", "max", "p90 ×floor", "p90 +ms", "p99 +ms", "errors"],
            lambda r, load=load: [
                _fmt(r["actual_qps"], 0, spread=load == "max"),
                _fmt(r["p50_ms"]),
                _fmt(r["p90_ms"]),
                _fmt(r["p99_ms"]),
                _fmt(r["max_ms"], 2),
                _fmt(r["p90_ms_x_floor"], 2),
                _fmt(r["p90_ms_added"]),
                _fmt(r["p99_ms_added"]),
                f"{r['errors']}/{r['requests']}",
            ],
        )
        lines += table(
            load,
            f"CPU at {title}, CPU-ms per 1000 requests; Envoy memory (RSS, MiB) after the run:",
            [
                "path",
                "sidecar",
                "gateway",
                "Envoys",
                "upstream",
                "client",
                "total ×floor",
                "sidecar RSS",
                "gateway RSS",
            ],
            lambda r: [
                _fmt(r["cpu_sidecar"], 0),
                _fmt(r["cpu_gateway"], 0),
                _fmt(r["cpu_envoys"], 0),
                _fmt(r["cpu_upstream"], 0),
                _fmt(r["cpu_client"], 0),
                _fmt(r["cpu_total_x_floor"], 2),
                _fmt(r["rss_sidecar"], 1, spread=False),
                _fmt(r["rss_gateway"], 1, spread=False),
            ],
        )
    max_rows = [(n, rows["max"]) for n, rows in summary.items() if "max" in rows]
    if max_rows:
        lines += ["", "## Max throughput", "", "| path | req/s | ×floor |", "|---|---|---|"]
        for name, r in max_rows:
            lines.append(f"| {name} | {_fmt(r['actual_qps'], 0)} | {_fmt(r['actual_qps_x_floor'], 2)} |")
    lines += ["", "Every sample is in `egress-bench.json`; the plot is `latency.png`.", ""]
    return "\n".join(lines)


def write(result: dict, out_dir: Path) -> dict[str, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path = out_dir / "egress-bench.json"
    json_path.write_text(json.dumps(result, indent=1) + "\n")
    md_path = out_dir / "report.md"
    md_path.write_text(render_markdown(result))
    return {"json": json_path, "report": md_path}


def load_result(path: Path) -> dict:
    from harness.errors import HarnessError

    try:
        data = json.loads(path.read_text())
    except OSError as exc:
        raise HarnessError(
            f"cannot read {path}: {exc.strerror} (give an egress-bench.json from make bench-egress)"
        ) from None
    except ValueError as exc:
        raise HarnessError(f"{path} is not JSON ({exc}): give an egress-bench.json from make bench-egress") from None
    if not isinstance(data, dict) or "samples" not in data or "environment" not in data:
        raise HarnessError(f"{path} is not an egress benchmark result (no samples): give an egress-bench.json")
    data["summary"] = summarize(data["samples"])
    return data
