"""The egress benchmark (harness/bench_egress, issue 12).

Unit tests of its arithmetic (fortio's JSON, medians and ratios to the floor, the compare flags) on
hand-written samples, and a smoke test that runs every path briefly on a real local mesh with real
fortio and checks the report is complete and sane: every path measured, no errors, meshed paths
not faster than their floor, the plot drawn. The benchmark itself is not a timed test.
"""

from __future__ import annotations

import json

import pytest

from harness.bench_egress import compare, report
from harness.bench_egress.load import parse_fortio_json
from harness.bench_egress.paths import BY_NAME, PATHS
from harness.bench_egress.procstat import parse_stat
from harness.bench_egress.runner import HOP_NAMES, BenchConfig
from harness.errors import HarnessError


def fortio_json(p50: float, p90: float, p99: float, codes: dict, qps: str = "100") -> dict:
    count = sum(codes.values())
    return {
        "RequestedQPS": qps,
        "ActualQPS": 99.5,
        "ActualDuration": 10_000_000_000,
        "NumThreads": 4,
        "RetCodes": codes,
        "DurationHistogram": {
            "Count": count,
            "Max": 0.004,
            "Avg": p50 / 1000 * 1.1,
            "Percentiles": [
                {"Percentile": 50, "Value": p50 / 1000},
                {"Percentile": 90, "Value": p90 / 1000},
                {"Percentile": 99, "Value": p99 / 1000},
                {"Percentile": 99.9, "Value": 0.003},
            ],
        },
    }


def test_parse_fortio_json_counts_non_200_as_errors():
    r = parse_fortio_json(fortio_json(0.2, 0.3, 0.9, {"200": 990, "-1": 7, "503": 3}), client_cpu_s=0.42)
    assert (r.count, r.ok, r.errors) == (1000, 990, 10)
    assert (r.p50_ms, r.p90_ms, r.p99_ms, r.max_ms) == (0.2, 0.3, 0.9, 4.0)
    assert r.requested_qps == 100 and r.duration_s == 10.0 and r.client_cpu_s == 0.42
    assert parse_fortio_json(fortio_json(1, 2, 3, {"200": 5}, qps="max")).requested_qps == 0


def test_parse_fortio_json_without_the_percentiles_says_so():
    data = fortio_json(1, 2, 3, {"200": 5})
    data["DurationHistogram"]["Percentiles"] = data["DurationHistogram"]["Percentiles"][:1]
    with pytest.raises(ValueError, match="p\\[90, 99\\]"):
        parse_fortio_json(data)


def test_parse_stat_reads_cpu_of_a_comm_with_spaces():
    line = "4242 (envoy (x) y) S 4241 4242 4242 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 9 0 1 2 3"
    comm, ppid, cpu = parse_stat(line)
    assert (comm, ppid) == ("envoy (x) y", 4241)
    assert cpu == pytest.approx(300 / __import__("os").sysconf("SC_CLK_TCK"))


def sample(repeat: int, path: str, load: str, p90: float, cpu: dict, qps: float = 100.0) -> dict:
    return {
        "repeat": repeat,
        "path": path,
        "load": load,
        "actual_qps": qps,
        "count": 1000,
        "errors": 0,
        "p50_ms": p90 / 2,
        "p90_ms": p90,
        "p99_ms": p90 * 2,
        "max_ms": p90 * 4,
        "avg_ms": p90 / 2,
        "cpu_ms_per_1k": cpu,
        "memory_mib": {h: 30.0 for h in cpu if h in ("sidecar", "gateway")},
    }


def synthetic(gateway_p90: tuple[float, ...], floor_p90: tuple[float, ...], gw_cpu: float = 200.0) -> dict:
    samples = []
    for r, (gw, fl) in enumerate(zip(gateway_p90, floor_p90, strict=True)):
        samples.append(sample(r, "baseline", "100", fl, {"upstream": 20.0, "client": 50.0}))
        samples.append(
            sample(
                r, "gateway-mtls", "100", gw, {"sidecar": gw_cpu, "gateway": gw_cpu, "upstream": 20.0, "client": 50.0}
            )
        )
    return {
        "environment": {"istio": "Istio test", "started_utc": "2026-01-01T00:00:00Z"},
        "samples": samples,
        "summary": report.summarize(samples),
    }


def test_summary_takes_ratios_within_each_repeat_then_the_median():
    s = synthetic(gateway_p90=(1.0, 3.0, 1.2), floor_p90=(0.5, 1.5, 0.4))["summary"]
    row = s["gateway-mtls"]["100"]
    assert row["floor"] == "baseline"
    assert row["p90_ms"] == {"median": 1.2, "min": 1.0, "max": 3.0, "n": 3}
    # per-repeat ratios 2, 2, 3 → median 2 (a ratio of medians would say 1.2 / 0.5 = 2.4)
    assert row["p90_ms_x_floor"]["median"] == 2.0
    assert row["p90_ms_added"]["median"] == pytest.approx(0.8)
    assert row["cpu_envoys"]["median"] == 400.0
    assert row["cpu_total_x_floor"]["median"] == pytest.approx(470 / 70, rel=1e-3)
    assert s["baseline"]["100"]["cpu_envoys"]["median"] == 0


def test_compare_flags_a_path_whose_floor_relative_p90_or_cpu_moved():
    a = synthetic((1.0, 1.0, 1.0), (0.5, 0.5, 0.5))
    same_but_slower_machine = synthetic((2.0, 2.0, 2.0), (1.0, 1.0, 1.0))
    rows, flags = compare.compare(a, same_but_slower_machine, 0.2)
    row = next(r for r in rows if r["path"] == "gateway-mtls")
    assert flags == [] and row["p90_ms_ratio"] == 2.0  # raw p90 doubled, relative to the floor it did not
    worse = synthetic((1.5, 1.5, 1.5), (0.5, 0.5, 0.5), gw_cpu=300.0)
    _, flags = compare.compare(a, worse, 0.2)
    assert any("gateway-mtls at 100: p90 relative to its floor ×1.50" in f for f in flags)
    assert any("Envoy CPU per request ×1.50" in f for f in flags)


def test_compare_does_not_flag_a_move_inside_the_spread_of_repeats():
    a = synthetic((1.0, 2.0, 1.5), (0.5, 0.5, 0.5))
    b = synthetic((1.4, 2.6, 2.2), (0.5, 0.5, 0.5))  # median ×floor 3 → 4.4, but the ranges overlap
    rows, flags = compare.compare(a, b, 0.2)
    row = next(r for r in rows if r["path"] == "gateway-mtls")
    assert row["p90_ms_x_floor_ratio"] == pytest.approx(4.4 / 3) and flags == []


def test_compare_refuses_a_file_that_is_not_a_result(tmp_path):
    bad = tmp_path / "x.json"
    bad.write_text(json.dumps({"hello": 1}))
    with pytest.raises(HarnessError, match="not an egress benchmark result"):
        report.load_result(bad)
    with pytest.raises(HarnessError, match="cannot read"):
        report.load_result(tmp_path / "missing.json")


def test_bad_config_is_one_line_before_anything_starts():
    with pytest.raises(HarnessError, match="unknown path"):
        BenchConfig(paths=("baseline", "nope")).validate()
    with pytest.raises(HarnessError, match="need their floor"):
        BenchConfig(paths=("gateway-mtls",)).validate()
    with pytest.raises(HarnessError, match="--rates"):
        BenchConfig(rates=(0,)).validate()


def test_every_meshed_path_uses_a_suite_stage_and_has_a_floor():
    from harness.manifests import STAGES

    for p in PATHS:
        assert BY_NAME[p.floor].stage is None
        assert p.stage is None or p.stage in STAGES


@pytest.mark.mesh
@pytest.mark.slow
def test_smoke_every_path_briefly_on_the_local_mesh(istio_binaries, tmp_path):
    """Every path for one short rate and a short max run: complete, error-free and sane."""
    from harness.bench_egress.__main__ import run_benchmark
    from harness.local.mesh import preflight
    from harness.toolchain.fortio import ensure_fortio

    preflight()
    config = BenchConfig(rates=(200,), duration=1.0, max_duration=0.5, warmup=0.3, repeats=1)
    result = run_benchmark(istio_binaries, ensure_fortio(), config, tmp_path, "smoke test", say=print)
    summary = result["summary"]
    assert list(summary) == [p.name for p in PATHS], "every path measured"
    for name, rows in summary.items():
        assert set(rows) == {"200", "max"}, f"{name}: {sorted(rows)}"
        for load, row in rows.items():
            assert row["errors"] == 0, f"{name} at {load}: {row['errors']} errors"
            assert row["requests"] > 0
    for p in PATHS:
        row = summary[p.name]["200"]
        assert row["actual_qps"]["median"] > 150, f"{p.name} did not sustain 200 req/s: {row['actual_qps']}"
        if p.stage is None:
            continue
        # Not faster than the floor: one or two Envoys more cannot make a request quicker.
        assert row["p50_ms_x_floor"]["median"] > 1.0, f"{p.name} p50 {row['p50_ms']} vs floor: {row['p50_ms_x_floor']}"
        for pod in p.proxies:
            hop = HOP_NAMES[pod]
            assert row[f"cpu_{hop}"]["median"] > 0, f"{p.name}: no CPU measured for the {hop}'s Envoy"
    assert (tmp_path / "report.md").read_text().count("| passthrough |") >= 3
    assert (tmp_path / "latency.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert json.loads((tmp_path / "egress-bench.json").read_text())["samples"]


def test_fortio_override_that_is_not_fortio_is_one_line(tmp_path, monkeypatch):
    from harness.toolchain.fortio import ensure_fortio

    monkeypatch.setenv("EGRESS_HARNESS_FORTIO", str(tmp_path / "nope"))
    with pytest.raises(HarnessError, match="does not exist"):
        ensure_fortio()
    fake = tmp_path / "fortio"
    fake.write_text("#!/bin/sh\necho not fortio >&2\nexit 3\n")
    fake.chmod(0o755)
    monkeypatch.setenv("EGRESS_HARNESS_FORTIO", str(fake))
    with pytest.raises(HarnessError, match="not a working fortio"):
        ensure_fortio()
