"""latency.png: one panel per load (each fixed rate, then as fast as it goes), one group of bars
per path (p50, p90, p99; medians over repeats, whiskers min–max), floors on grey, so the cost of
each path reads at a glance; a last panel shows the max throughput of each path."""

from __future__ import annotations

from pathlib import Path

from harness.bench_egress.paths import BY_NAME
from harness.pyplot import pyplot

PCTS = (("p50_ms", "p50"), ("p90_ms", "p90"), ("p99_ms", "p99"))
COLORS = {"p50_ms": "#4c72b0", "p90_ms": "#dd8452", "p99_ms": "#c44e52"}


def draw(result: dict, out: Path) -> Path:
    plt = pyplot()

    summary = result["summary"]
    paths = list(summary)
    loads = list(next(iter(summary.values())))  # fixed rates, then max
    panels = len(loads) + (1 if "max" in loads else 0)
    ncols = min(3, panels)  # a grid, so five panels stay readable on one screen
    nrows = -(-panels // ncols)
    fig, grid = plt.subplots(nrows, ncols, figsize=(5.2 * ncols, 4.6 * nrows), squeeze=False)
    axes = [ax for row in grid for ax in row]
    for ax in axes[panels:]:
        ax.set_visible(False)
    width = 0.26
    for ax, load in zip(axes, loads, strict=False):  # axes beyond the loads: the throughput panel
        for i, (key, label) in enumerate(PCTS):
            xs, meds, lo, hi = [], [], [], []
            for j, name in enumerate(paths):
                stat = summary[name].get(load, {}).get(key)
                if stat is None:
                    continue
                xs.append(j + (i - 1) * width)
                meds.append(stat["median"])
                lo.append(stat["median"] - stat["min"])
                hi.append(stat["max"] - stat["median"])
            ax.bar(xs, meds, width, yerr=[lo, hi], capsize=2, label=label, color=COLORS[key])
        ax.set_title(f"{load} req/s" if load != "max" else "as fast as it goes")
        # Log scale: the floors' tenths of a millisecond and the meshed paths' p99 in tens of ms
        # stay readable on one axis.
        ax.set_yscale("log")
        ax.set_ylabel("latency (ms, log scale)")
        ax.set_xticks(range(len(paths)))
        ax.set_xticklabels(paths, rotation=40, ha="right", fontsize=8)
        for j, name in enumerate(paths):
            if BY_NAME[name].stage is None:
                ax.axvspan(j - 0.5, j + 0.5, color="0.9", zorder=0)
        ax.grid(axis="y", alpha=0.3)
    if panels > len(loads):
        ax = axes[panels - 1]
        stats = [summary[n]["max"]["actual_qps"] for n in paths]
        meds = [st["median"] for st in stats]
        ax.bar(
            range(len(paths)),
            meds,
            0.6,
            yerr=[[st["median"] - st["min"] for st in stats], [st["max"] - st["median"] for st in stats]],
            capsize=2,
            color=["0.6" if BY_NAME[n].stage is None else "#55a868" for n in paths],
        )
        ax.set_title("max throughput")
        ax.set_ylabel("req/s")
        ax.set_xticks(range(len(paths)))
        ax.set_xticklabels(paths, rotation=40, ha="right", fontsize=8)
        ax.grid(axis="y", alpha=0.3, which="both")
    axes[0].legend(fontsize=8)
    env = result["environment"]
    fig.suptitle(
        f"Egress paths, Istio {env['istio_version']} (Envoy {env['envoy_version']}), {env['cpus']} CPUs, "
        f"{result['config']['connections']} connections; grey: no Istio (floors)",
        fontsize=10,
    )
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
