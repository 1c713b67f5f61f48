"""Run a command (the kind suites) inside the harness's Docker engine, with the kind images built first.

    python -m harness.images.with_engine [--istio-version V] -- python -m pytest suites --backend=kind …

Order: preflight (one line naming the fix: not root, no dockerd/debootstrap, too little disk) →
the engine (engine.py: dockerd in netns eh-engine, no route off the machine) → every image
(kind_images.py; the builds run here, in the host namespace, since they need the Go module proxy
and the Debian mirror) → the command, in the engine's namespace (`nsenter --net`), so kind,
kubectl, istioctl and the port-forwards reach the cluster's published ports on that namespace's
127.0.0.1, and nothing the run starts can reach the VM's network → teardown, always (pass,
failure, Ctrl-C, SIGTERM): every container and network the engine holds is removed, dockerd is
stopped, the namespace (with its bridges and iptables rules) deleted. Images stay cached;
`python -m harness.images.engine remove-cache` removes them.

After SIGKILL no `finally` runs, so a watchdog does it: a process of its own session holding the
read end of a pipe whose write end only this process has. When this process ends, however it
ends, the pipe closes; the watchdog then stops the suites' process if it still runs (SIGTERM, so
it tears its cluster down, then SIGKILL) and stops the engine this run started (the same dockerd
pid: a newer run's engine is left alone).
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import time

from harness import watchdog
from harness.errors import HarnessError
from harness.images import engine
from harness.images.docker_build import say

MIN_FREE_GB_COLD = 12  # measured: docker data ~6 GB, toolchain + Go caches ~4 GB (docs/kind-backend.md)


def preflight() -> None:
    engine.preflight()
    if shutil.which("debootstrap") is None:
        raise HarnessError("debootstrap is needed to build the kind images' Debian base: apt-get install debootstrap")
    from harness.cache import cache_root

    root = cache_root()
    root.mkdir(parents=True, exist_ok=True)
    free_gb = shutil.disk_usage(root).free / 1e9
    if free_gb < MIN_FREE_GB_COLD and not (engine.data_root() / "image").exists():
        raise HarnessError(
            f"only {free_gb:.1f} GB free under {root}; the kind images need about {MIN_FREE_GB_COLD} GB "
            f"the first time: free some disk or set EGRESS_HARNESS_CACHE to a larger disk"
        )


def clean_engine_contents() -> None:
    """Remove every container and user network in the engine (a killed run's cluster included)."""
    if not engine.running():
        return
    env = dict(os.environ, DOCKER_HOST=engine.docker_host())
    ids = subprocess.run(["docker", "ps", "-aq"], capture_output=True, text=True, env=env).stdout.split()
    if ids:
        subprocess.run(["docker", "rm", "-f", "-v", *ids], capture_output=True, env=env)
    nets = subprocess.run(
        ["docker", "network", "ls", "--filter", "type=custom", "-q"], capture_output=True, text=True, env=env
    ).stdout.split()
    if nets:
        subprocess.run(["docker", "network", "rm", *nets], capture_output=True, env=env)


def start_watchdog(dockerd_pid: int) -> tuple[subprocess.Popen, int]:
    """The watchdog (harness/watchdog.py, see the module docstring); returns it and the pipe's
    write end, which this process keeps open until its teardown is done."""
    return watchdog.start("harness.images.with_engine", "--watch", str(dockerd_pid))


def _end_child(pid: int, grace: float = 120.0) -> None:
    """SIGTERM (the suites tear their cluster down on it), then SIGKILL after `grace`."""
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.5)
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def watch(dockerd_pid: int) -> int:
    """The watchdog's side: read `child PID` lines until the pipe closes, then clean up."""
    child = None
    for line in sys.stdin:
        if line.startswith("child "):
            child = int(line.split()[1])
        elif line.startswith("child-exited"):
            child = None  # reaped by the owner: its pid may be another process's by now
    if child is not None:
        _end_child(child)
    # engine.stop() copes with a dockerd that died already (its namespace and mounts go anyway).
    if engine.engine_pid() == dockerd_pid:
        clean_engine_contents()
        engine.stop()
    return 0


def run(command: list[str], istio_version: str) -> int:
    import docker

    from harness.images.kind_images import ensure_all

    started = time.monotonic()
    preflight()
    guard: tuple[subprocess.Popen, int] | None = None
    try:
        engine.start()
        pid = engine.engine_pid()
        if pid is not None:
            guard = start_watchdog(pid)
        clean_engine_contents()
        client = docker.DockerClient(base_url=engine.docker_host(), timeout=900)
        images = ensure_all(client, istio_version)
        client.close()
        say(f"images: all ready in {time.monotonic() - started:.0f}s; running the suites in netns {engine.NETNS}")
        env = dict(
            os.environ,
            DOCKER_HOST=engine.docker_host(),
            EGRESS_HARNESS_IMAGES="source",
            GOPROXY="off",
            EGRESS_HARNESS_KIND=images.kind,
            EGRESS_HARNESS_KUBECTL=images.kubectl,
        )
        child = subprocess.Popen(engine.nsenter(command), env=env)
        if guard is not None:
            os.write(guard[1], f"child {child.pid}\n".encode())
        previous = signal.signal(signal.SIGTERM, lambda *_: child.send_signal(signal.SIGTERM))
        try:
            while True:
                try:
                    code = child.wait()
                    if guard is not None:
                        os.write(guard[1], b"child-exited\n")
                    return code
                except KeyboardInterrupt:  # the child got the same Ctrl-C; let it tear down first
                    continue
        finally:
            signal.signal(signal.SIGTERM, previous)
    finally:
        t = time.monotonic()
        clean_engine_contents()
        engine.stop()
        say(f"engine stopped, netns {engine.NETNS} removed ({time.monotonic() - t:.1f}s)")
        if guard is not None:
            watchdog.release(guard)  # it finds the child gone and the engine stopped, and exits


def main(argv: list[str] | None = None) -> int:
    from harness.versions import DEFAULT_ISTIO_VERSION

    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--watch"] and len(argv) == 2:
        return watch(int(argv[1]))
    if "--" not in argv:
        print("usage: python -m harness.images.with_engine [--istio-version V] -- COMMAND…", file=sys.stderr)
        return 2
    cut = argv.index("--")
    parser = argparse.ArgumentParser(prog="python -m harness.images.with_engine")
    parser.add_argument("--istio-version", default=DEFAULT_ISTIO_VERSION)
    args = parser.parse_args(argv[:cut])
    try:
        return run(argv[cut + 1 :], args.istio_version)
    except HarnessError as exc:
        print(f"egress-harness: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
