"""The benchmark run: one local mesh, fortio in the stand-in's place, every path in turn.

Order: for each repeat, every path (floors included) runs its loads back to back: a warm-up at the
middle rate (discarded), each fixed rate, then as fast as it goes. Paths are interleaved within a
repeat, so a noisy moment on this shared machine hits one repeat of every path rather than every
repeat of one path; each path's ratio to its floor is taken within the same repeat.

CPU per path: the CPU seconds each Envoy on the path used during the run (/proc, before and after),
per 1000 requests the run completed; likewise for fortio's servers (the upstream) and the client
(rusage). Memory: each Envoy's resident set after the run.
"""

from __future__ import annotations

import os
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from harness.bench_egress import procstat
from harness.bench_egress.load import APP_UID, run_fortio_load
from harness.bench_egress.paths import BY_NAME, PATHS, EgressPath
from harness.bench_egress.upstream import FortioUpstream
from harness.errors import HarnessError
from harness.istio_binaries import IstioBinaries
from harness.manifests import render

HOP_NAMES = {"default/sleep": "sidecar", "istio-system/istio-egressgateway": "gateway"}


@dataclass(frozen=True)
class BenchConfig:
    rates: tuple[int, ...] = (100, 500, 1000)
    duration: float = 10.0  # seconds per fixed-rate run
    max_duration: float = 10.0  # seconds of the as-fast-as-it-goes run
    warmup: float = 2.0
    connections: int = 4
    repeats: int = 1
    paths: tuple[str, ...] = tuple(p.name for p in PATHS)

    def validate(self) -> None:
        """Bad input: one line naming the fix, before anything starts."""
        unknown = [p for p in self.paths if p not in BY_NAME]
        if unknown:
            raise HarnessError(f"unknown path(s) {', '.join(unknown)}: choose from {', '.join(BY_NAME)}")
        floors_missing = sorted({BY_NAME[p].floor for p in self.paths} - set(self.paths))
        if floors_missing:
            raise HarnessError(
                f"paths {', '.join(self.paths)} need their floor(s) {', '.join(floors_missing)} in the "
                f"same run (every figure is a ratio to it): add them to --paths"
            )
        if not self.rates or any(r <= 0 for r in self.rates):
            raise HarnessError(f"--rates must be positive requests per second, e.g. 100,500,1000 (got {self.rates})")
        if self.duration <= 0 or self.max_duration <= 0 or self.warmup < 0:
            raise HarnessError("--duration and --max-duration must be > 0 seconds, --warmup >= 0")
        if self.connections < 1 or self.repeats < 1:
            raise HarnessError("--connections and --repeats must be at least 1")
        if self.duration > 120 or self.max_duration > 120:
            raise HarnessError(
                "--duration/--max-duration above 120 s: the benchmark is meant to be bounded; use repeats"
            )

    def estimated_seconds(self) -> float:
        per_path = self.warmup + self.duration * len(self.rates) + self.max_duration + 1.5 * (len(self.rates) + 2)
        return self.repeats * len(self.paths) * per_path


@dataclass
class _Meter:
    """CPU seconds of the processes on a path, read before and after a run."""

    pids: dict[str, list[int]]
    before: dict[str, float] = field(default_factory=dict)

    def _read(self) -> dict[str, float]:
        return {role: sum(procstat.cpu_seconds(pid) for pid in pids) for role, pids in self.pids.items()}

    def start(self) -> None:
        self.before = self._read()

    def stop(self) -> dict[str, float]:
        after = self._read()
        return {role: after[role] - self.before[role] for role in after}


def _envoy_pid(mesh, pod: str) -> int:
    proxy = mesh.proxy(pod)
    pid = procstat.child_named(proxy.process.pid, "envoy")
    if pid is None:
        raise RuntimeError(f"no envoy child of {pod}'s pilot-agent (pid {proxy.process.pid})")
    return pid


def _stage_fortio(fortio: Path, workdir: Path) -> Path:
    """The client runs as APP_UID, which cannot enter a root-only cache: a link (or copy) in the run's directory."""
    bin_dir = workdir / "bench-bin"
    bin_dir.mkdir(exist_ok=True)
    dest = bin_dir / "fortio"
    try:
        os.link(fortio, dest)
    except OSError:
        shutil.copy2(fortio, dest)
    os.chmod(dest, 0o755)
    return dest


def measure(mesh, fortio: Path, config: BenchConfig, say: Callable[[str], None]) -> list[dict]:
    """Every sample of the benchmark on a started LocalMesh (its stand-in gets replaced by fortio)."""
    upstream = FortioUpstream(mesh, fortio)
    try:
        upstream.start()  # inside the try: a server started before a failure is stopped too
        client_fortio = _stage_fortio(fortio, mesh.workdir)
        loads_dir = mesh.workdir / "bench-loads"
        loads_dir.mkdir()
        os.chown(loads_dir, APP_UID, APP_UID)
        samples: list[dict] = []
        paths = [BY_NAME[name] for name in config.paths]
        for repeat in range(config.repeats):
            for path in paths:
                samples += _measure_path(mesh, client_fortio, upstream, path, config, repeat, loads_dir, say)
        return samples
    finally:
        upstream.stop()


def _measure_path(
    mesh,
    fortio: Path,
    upstream: FortioUpstream,
    path: EgressPath,
    config: BenchConfig,
    repeat: int,
    loads_dir: Path,
    say: Callable[[str], None],
) -> list[dict]:
    objs = render(path.stage, mode=path.mode, trust=mesh.upstream_trust()) if path.stage else []
    started = time.monotonic()
    if objs:
        mesh.apply(objs)
    mesh.settle()
    converged_s = time.monotonic() - started
    pod = mesh.pod(path.client_pod)
    if mesh.has_sidecar(path.client_pod) != bool(path.proxies):
        raise RuntimeError(
            f"{path.client_pod} sidecar={mesh.has_sidecar(path.client_pod)}, but path {path.name} "
            f"expects {'one' if path.proxies else 'none'}"
        )
    envoys = {HOP_NAMES[p]: _envoy_pid(mesh, p) for p in path.proxies}
    meter = _Meter({**{hop: [pid] for hop, pid in envoys.items()}, "upstream": upstream.pids()})
    samples: list[dict] = []
    try:

        def load(label: str, qps: float, duration: float):
            return run_fortio_load(
                fortio,
                pod.netns,
                pod.name,
                path.url,
                qps=qps,
                duration=duration,
                connections=config.connections,
                workdir=loads_dir,
                label=f"r{repeat}-{path.name}-{label}",
                state=mesh.state,
            )

        if config.warmup > 0:
            warm = load("warmup", config.rates[len(config.rates) // 2], config.warmup)
            if warm.ok == 0:
                raise RuntimeError(
                    f"path {path.name}: no request succeeded during warm-up ({warm.codes}); "
                    f"the path is broken, not slow"
                )
        for label, qps, duration in [
            *((str(r), r, config.duration) for r in config.rates),
            ("max", 0, config.max_duration),
        ]:
            meter.start()
            result = load(label, qps, duration)
            cpu = meter.stop()
            cpu["client"] = result.client_cpu_s
            per_1k = {
                role: round(seconds * 1000 / result.count * 1000, 2) if result.count else None
                for role, seconds in cpu.items()
            }
            sample = {
                "repeat": repeat,
                "path": path.name,
                "load": label,
                **result.to_dict(),
                "cpu_s": {role: round(s, 3) for role, s in cpu.items()},
                "cpu_ms_per_1k": per_1k,
                "memory_mib": {hop: procstat.memory(pid).rss_mib for hop, pid in envoys.items()},
                "peak_memory_mib": {hop: procstat.memory(pid).peak_rss_mib for hop, pid in envoys.items()},
                "converged_s": round(converged_s, 3),
                # The machine is shared: how busy it was, next to each figure.
                "loadavg_1m": round(os.getloadavg()[0], 2),
            }
            samples.append(sample)
            say(
                f"repeat {repeat + 1}/{config.repeats} {path.name:18} {label:>5}: {result.actual_qps:8.1f} req/s "
                f"p50 {result.p50_ms:.3f} p90 {result.p90_ms:.3f} p99 {result.p99_ms:.3f} ms, errors {result.errors}, "
                + ", ".join(f"{role} {v} CPU-ms/1k" for role, v in per_1k.items())
            )
    finally:
        if objs:
            mesh.delete(objs)
    return samples


def environment(binaries: IstioBinaries, fortio_version: str) -> dict:
    return {
        "istio": binaries.describe(),
        "istio_version": binaries.version,
        "envoy_version": binaries.envoy_version,
        "fortio": fortio_version,
        "cpus": os.cpu_count(),
        "loadavg_at_start": os.getloadavg(),
        "kernel": os.uname().release,
        "python": sys.version.split()[0],
        "started_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
