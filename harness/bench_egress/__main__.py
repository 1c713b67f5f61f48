"""`python -m harness.bench_egress` (`make bench-egress`): measure every egress path, or compare two results.

  python -m harness.bench_egress [--repeats 3] [--rates 100,500,1000] [--duration 10] [--out artifacts/bench]
  python -m harness.bench_egress --compare A.json B.json [--threshold 0.2]

Writes egress-bench.json (every sample), report.md (the tables) and latency.png into --out.
--compare writes compare.md there and exits 1 when a path is flagged.
"""

from __future__ import annotations

import argparse
import os
import shlex
import signal
import sys
import time
from pathlib import Path

from harness.bench_egress import compare as compare_mod
from harness.bench_egress import plot, report
from harness.bench_egress.runner import BenchConfig, environment, measure
from harness.console import description
from harness.errors import HarnessError
from harness.versions import DEFAULT_ISTIO_VERSION


def _say(msg: str) -> None:
    print(f"[bench-egress] {msg}", file=sys.stderr, flush=True)


def run_benchmark(binaries, fortio: Path, config: BenchConfig, out_dir: Path, command: str, say=_say) -> dict:
    """Start a local mesh, measure, tear it down; write the JSON, report.md and the plot."""
    from harness.local.mesh import LocalMesh
    from harness.toolchain.fortio import fortio_version_of

    config.validate()
    out_dir.mkdir(parents=True, exist_ok=True)
    env = environment(binaries, fortio_version_of(fortio))
    mesh = LocalMesh(binaries, out_dir)
    started = time.monotonic()
    try:
        mesh.start()
        say(
            f"mesh up ({env['istio']}); {len(config.paths)} paths × {config.repeats} repeat(s), "
            f"about {config.estimated_seconds() / 60:.1f} min"
        )
        samples = measure(mesh, fortio, config, say)
    finally:
        mesh.stop()
    env["loadavg_at_end"] = os.getloadavg()
    result = {
        "command": command,
        "environment": env,
        "config": {
            "rates": list(config.rates),
            "duration": config.duration,
            "max_duration": config.max_duration,
            "warmup": config.warmup,
            "connections": config.connections,
            "repeats": config.repeats,
            "paths": list(config.paths),
        },
        "elapsed_s": round(time.monotonic() - started, 1),
        "samples": samples,
    }
    result["summary"] = report.summarize(samples)
    files = report.write(result, out_dir)
    files["plot"] = plot.draw(result, out_dir / "latency.png")
    for kind, path in files.items():
        say(f"{kind}: {path}")
    return result


def _rates(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: give requests per second as integers, e.g. 100,500,1000") from None


def _sigterm_as_interrupt(signum, frame):  # noqa: ARG001
    raise KeyboardInterrupt("SIGTERM")


def main(argv: list[str] | None = None) -> int:
    defaults = BenchConfig()
    parser = argparse.ArgumentParser(prog="python -m harness.bench_egress", description=description(__doc__))
    parser.add_argument("--istio-version", default=DEFAULT_ISTIO_VERSION)
    parser.add_argument(
        "--rates", type=_rates, default=defaults.rates, help="fixed rates, req/s (default 100,500,1000)"
    )
    parser.add_argument(
        "--duration", type=float, default=defaults.duration, help="seconds per fixed-rate run (default 10)"
    )
    parser.add_argument(
        "--max-duration", type=float, default=defaults.max_duration, help="seconds of the max-throughput run"
    )
    parser.add_argument("--warmup", type=float, default=defaults.warmup, help="seconds of warm-up per path (discarded)")
    parser.add_argument("--connections", type=int, default=defaults.connections)
    parser.add_argument("--repeats", type=int, default=defaults.repeats, help="repeats of every path, interleaved")
    parser.add_argument("--paths", default=",".join(defaults.paths), help="comma-separated subset (floors included)")
    parser.add_argument("--out", type=Path, default=Path("artifacts/bench"))
    parser.add_argument(
        "--compare", nargs=2, type=Path, metavar=("A.json", "B.json"), help="compare two results instead of measuring"
    )
    parser.add_argument(
        "--threshold",
        type=float,
        default=compare_mod.DEFAULT_THRESHOLD,
        help="--compare flags moves larger than this fraction (default 0.2)",
    )
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, _sigterm_as_interrupt)
    try:
        if args.compare:
            a, b = (report.load_result(p) for p in args.compare)
            rows, flags = compare_mod.compare(a, b, args.threshold)
            text = compare_mod.render_markdown(
                a, b, rows, flags, args.threshold, (str(args.compare[0]), str(args.compare[1]))
            )
            args.out.mkdir(parents=True, exist_ok=True)
            (args.out / "compare.md").write_text(text)
            print(text)
            return 1 if flags else 0
        config = BenchConfig(
            rates=args.rates,
            duration=args.duration,
            max_duration=args.max_duration,
            warmup=args.warmup,
            connections=args.connections,
            repeats=args.repeats,
            paths=tuple(p.strip() for p in args.paths.split(",") if p.strip()),
        )
        config.validate()
        from harness.istio_binaries import ensure_istio
        from harness.local.mesh import preflight
        from harness.toolchain.fortio import ensure_fortio

        preflight()
        binaries = ensure_istio(args.istio_version)
        fortio = ensure_fortio()
        command = "python -m harness.bench_egress " + shlex.join(argv if argv is not None else sys.argv[1:])
        result = run_benchmark(binaries, fortio, config, args.out.resolve(), command)
    except HarnessError as exc:
        print(f"egress-harness: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:  # Ctrl-C, or SIGTERM: the mesh and fortio are torn down by now
        print(f"egress-harness: interrupted ({exc or 'Ctrl-C'}); the benchmark's mesh is torn down", file=sys.stderr)
        return 130
    print((args.out / "report.md").read_text())
    print(f"elapsed {result['elapsed_s']} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
