"""One fortio load run from inside a pod, and what it measured.

fortio runs in the client pod's network namespace as the application's uid (APP_UID), with a
pod's environment (PATH, HOME, HOSTNAME only), so the sidecar's istio-iptables rules capture its
connections as they would any app's (they exclude only istio-proxy's uid 1337). Every run is
bounded: fortio stops itself after `-t`; if it has not exited by the deadline its process group is
killed and the run fails. The client's own CPU time comes from wait4()'s rusage: `ip netns exec`
and setpriv exec into fortio, so the child is fortio itself.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from harness.local.netns import Netns, pod_env
from harness.local.runstate import RunState

# Any non-root uid other than istio-proxy's 1337: an application container's user.
APP_UID = 1000
PERCENTILES = (50, 90, 99)
# fortio's histogram resolution: 10 µs buckets at the low end (the default 1 ms would round a
# sidecar's ~0.1 ms away). fortio interpolates within buckets.
RESOLUTION_S = 0.00001
REQUEST_TIMEOUT = "3s"


@dataclass(frozen=True)
class LoadResult:
    requested_qps: float  # 0: as fast as it goes
    actual_qps: float
    duration_s: float
    connections: int
    count: int
    ok: int
    errors: int
    codes: dict[str, int]
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    avg_ms: float
    client_cpu_s: float

    def to_dict(self) -> dict:
        return asdict(self)


def parse_fortio_json(data: dict, client_cpu_s: float = 0.0) -> LoadResult:
    """fortio's `-json` result: DurationHistogram (seconds), RetCodes (status → count; -1 is a
    socket error), ActualQPS, ActualDuration (ns)."""
    hist = data["DurationHistogram"]
    pct = {round(float(p["Percentile"]), 1): float(p["Value"]) for p in hist.get("Percentiles") or []}
    missing = [p for p in PERCENTILES if float(p) not in pct]
    if missing:
        raise ValueError(f"fortio result has no p{missing} (run with -p {','.join(map(str, PERCENTILES))})")
    codes = {str(k): int(v) for k, v in (data.get("RetCodes") or {}).items()}
    count = int(hist["Count"])
    ok = codes.get("200", 0)
    return LoadResult(
        requested_qps=float(data.get("RequestedQPS") or 0) if data.get("RequestedQPS") != "max" else 0.0,
        actual_qps=round(float(data["ActualQPS"]), 1),
        duration_s=round(int(data["ActualDuration"]) / 1e9, 3),
        connections=int(data.get("NumThreads") or 0),
        count=count,
        ok=ok,
        errors=count - ok,
        codes=codes,
        p50_ms=round(pct[50.0] * 1000, 4),
        p90_ms=round(pct[90.0] * 1000, 4),
        p99_ms=round(pct[99.0] * 1000, 4),
        max_ms=round(float(hist["Max"]) * 1000, 4),
        avg_ms=round(float(hist["Avg"]) * 1000, 4),
        client_cpu_s=round(client_cpu_s, 3),
    )


def run_fortio_load(
    fortio: Path,
    netns: Netns,
    pod_name: str,
    url: str,
    *,
    qps: float,
    duration: float,
    connections: int,
    workdir: Path,
    label: str,
    state: RunState,
) -> LoadResult:
    """Run `fortio load` against `url` from `netns`; `workdir` must be writable by APP_UID."""
    result_path = workdir / f"{label}.json"
    log_path = workdir / f"{label}.log"
    argv = [
        str(fortio),
        "load",
        "-quiet",
        "-qps",
        str(qps),
        "-c",
        str(connections),
        "-t",
        f"{duration}s",
        "-r",
        str(RESOLUTION_S),
        "-p",
        ",".join(map(str, PERCENTILES)),
        "-timeout",
        REQUEST_TIMEOUT,
        "-json",
        str(result_path),
        url,
    ]
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            netns.wrap(argv, uid=APP_UID),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=pod_env(pod_name, HOME=str(workdir)),
            cwd=workdir,
            start_new_session=True,
        )
    state.add_process(proc.pid, f"fortio load {label}")
    deadline = time.monotonic() + duration + 20.0  # fortio's own -t, plus connection setup and slack
    status, rusage = 0, None
    try:
        while True:
            pid, status, rusage = os.wait4(proc.pid, os.WNOHANG)
            if pid == proc.pid:
                proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here: tell Popen
                break
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"fortio load {label} did not stop {duration + 20:.0f}s after starting; killed. Log: {log_path}"
                )
            time.sleep(0.05)
    except BaseException:
        # Past the deadline, Ctrl-C or SIGTERM: the client goes with the run, not after it.
        if proc.returncode is None:
            os.killpg(proc.pid, signal.SIGKILL)
            os.wait4(proc.pid, 0)
            proc.returncode = -9
        raise
    if proc.returncode != 0 or not result_path.exists():
        tail = "\n".join(log_path.read_text(errors="replace").splitlines()[-8:])
        raise RuntimeError(f"fortio load {label} ({url} from {pod_name}) exited {proc.returncode}:\n{tail}")
    cpu = rusage.ru_utime + rusage.ru_stime if rusage is not None else 0.0
    return parse_fortio_json(json.loads(result_path.read_text()), cpu)
