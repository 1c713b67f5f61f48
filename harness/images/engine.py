"""The harness's own Docker engine for kind: a dockerd in a network namespace with no route off the machine.

Why its own engine:
  - Network safety: kind's nodes and pods reach whatever the engine's namespace reaches. With
    dockerd in the host namespace, pods masquerade to the VM's network (seen in the trial run of
    /work/shared/notes/kind-from-source.md: a pod's DNS query left the machine). Here dockerd runs
    in `eh-engine`, a namespace with loopback and the engine's own bridges only: no default route,
    no link to the host. `isolation_report()` checks it with `ip route get`, sending nothing.
  - Some hosts lack CAP_SYS_RESOURCE in their capability bounding set; then runc refuses
    privileged containers, and kind's nodes are privileged. The engine then gets
    harness/images/runc_wrapper.py as its default runtime (detected, not assumed).
  - Images are cached across runs: the data root is `<cache_root()>/docker` (removed by
    `python -m harness.images.engine --remove-cache`); the exec root, socket and pid file live in
    /run/eh-engine (short paths: containerd's socket paths must stay under 108 bytes).

Everything else of the engine (process, netns, bridges, iptables rules in that namespace, mounts)
is gone after stop(). Processes running inside the namespace (pytest for the kind backend,
kind, kubectl, istioctl) are started with `nsenter --net=`, so the API server's and the stand-in's
ports, published on the namespace's 127.0.0.1, are reachable to them and to nothing else.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from harness.cache import cache_root
from harness.console import description, say
from harness.errors import HarnessError

NETNS = "eh-engine"
NETNS_PATH = Path("/run/netns") / NETNS
RUN_DIR = Path("/run/eh-engine")
SOCKET = RUN_DIR / "docker.sock"
RUNTIME_NAME = "eh-runc"
WRAPPER = Path(__file__).with_name("runc_wrapper.py")
CAP_SYS_RESOURCE = 24
# An address outside every range the engine uses: `ip route get` to it must fail in the namespace.
PROBE_ADDRESSES = ("192.0.2.1", "8.8.8.8")


def data_root() -> Path:
    return cache_root() / "docker"


def docker_host() -> str:
    return f"unix://{SOCKET}"


def lacks_cap_sys_resource(status: str | None = None) -> bool:
    """True when this process's capability bounding set has no CAP_SYS_RESOURCE."""
    status = status if status is not None else Path("/proc/self/status").read_text()
    for line in status.splitlines():
        if line.startswith("CapBnd:"):
            return not (int(line.split()[1], 16) >> CAP_SYS_RESOURCE) & 1
    return False


def preflight() -> None:
    if os.geteuid() != 0:
        raise HarnessError(
            "IMAGES=source starts its own Docker engine in a network namespace, which needs root: "
            "run as root (sudo make e2e BACKEND=kind IMAGES=source)"
        )
    missing = [b for b in ("dockerd", "containerd", "runc", "nsenter", "ip", "iptables") if shutil.which(b) is None]
    if missing:
        raise HarnessError(
            f"missing {', '.join(missing)} for the harness's Docker engine: "
            f"apt-get install docker.io iproute2 iptables util-linux"
        )


def nsenter(argv: list[str]) -> list[str]:
    """argv run in the engine's namespace (network only: `ip netns exec` would remount /sys)."""
    return ["nsenter", f"--net={NETNS_PATH}", "--", *argv]


def running() -> bool:
    pid = engine_pid()
    return pid is not None and _alive(pid) and SOCKET.exists()


def engine_pid() -> int | None:
    """dockerd's pid, from its pid file (None when no engine was started)."""
    try:
        return int((RUN_DIR / "dockerd.pid").read_text().strip())
    except (OSError, ValueError):
        return None


def _ping() -> bool:
    import httpx

    try:
        with httpx.Client(transport=httpx.HTTPTransport(uds=str(SOCKET)), timeout=2, trust_env=False) as c:
            return c.get("http://docker/_ping").status_code == 200
    except httpx.HTTPError:
        return False


def dockerd_argv() -> list[str]:
    argv = [
        shutil.which("dockerd") or "dockerd",
        f"--data-root={data_root()}",
        f"--exec-root={RUN_DIR / 'exec'}",
        f"--pidfile={RUN_DIR / 'dockerd.pid'}",
        f"--host={docker_host()}",
        "--log-level=warn",
        "--containerd-namespace=eh-engine",
        "--containerd-plugins-namespace=eh-engine-plugins",
    ]
    if lacks_cap_sys_resource():
        argv += [f"--add-runtime={RUNTIME_NAME}={WRAPPER}", f"--default-runtime={RUNTIME_NAME}"]
    return argv


def start(timeout: float = 60.0) -> None:
    """Start the engine (netns, dockerd); a no-op when it already answers."""
    preflight()
    if running() and _ping():
        return
    stop()  # whatever a killed run left
    subprocess.run(["ip", "netns", "add", NETNS], check=True, capture_output=True)
    subprocess.run(["ip", "-n", NETNS, "link", "set", "lo", "up"], check=True, capture_output=True)
    RUN_DIR.mkdir(parents=True, exist_ok=True)
    data_root().mkdir(parents=True, exist_ok=True)
    log = RUN_DIR / "dockerd.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("DOCKER_")}
    env["EH_REAL_RUNC"] = shutil.which("runc") or "runc"
    started = time.monotonic()
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            nsenter(dockerd_argv()), stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
    while time.monotonic() - started < timeout:
        if proc.poll() is not None:
            tail = log.read_text(errors="replace").strip().splitlines()[-2:]
            stop()
            raise HarnessError(f"the harness's dockerd exited ({' | '.join(tail)[:300]}): see {log}")
        if SOCKET.exists() and _ping():
            report = isolation_report()
            if report:
                stop()
                raise HarnessError(f"the engine's namespace has a route off the machine ({report}): stopped it")
            runtime = " with runtime eh-runc (no CAP_SYS_RESOURCE here)" if lacks_cap_sys_resource() else ""
            say(f"Docker engine up in netns {NETNS}{runtime} in {time.monotonic() - started:.1f}s ({docker_host()})")
            return
        time.sleep(0.2)
    stop()
    raise HarnessError(f"the harness's dockerd did not answer within {timeout:.0f}s: see {log}")


def isolation_report(ns_path: Path = NETNS_PATH) -> str:
    """'' when nothing in the namespace can route off the machine, else what can. Sends nothing:
    `ip route get` only asks the namespace's routing table."""
    problems = []
    for addr in PROBE_ADDRESSES:
        proc = subprocess.run(
            ["nsenter", f"--net={ns_path}", "--", "ip", "route", "get", addr], capture_output=True, text=True
        )
        if proc.returncode == 0:
            problems.append(f"{addr}: {proc.stdout.strip()}")
    return "; ".join(problems)


def _alive(pid: int) -> bool:
    """True while `pid` runs. A zombie is dead: reap it when it is our child (dockerd started by
    this process), so nothing of it is left; the state is read first, then reaped, so a process
    that exits between the two is not reported dead while its /proc entry stays."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    if state in ("Z", "X"):
        try:
            # Blocking: a Go program's leader shows Z while its other threads still exit, and a
            # non-blocking wait would find nothing to reap yet. Not our child: returns at once.
            os.waitpid(pid, 0)
        except ChildProcessError:
            pass
        return False
    return True


def stop() -> None:
    """Stop dockerd (by its pid), unmount what it left, delete the namespace (its bridges and iptables
    rules go with it). The image cache (data root) stays."""
    pid = engine_pid()
    if pid is not None and _alive(pid):
        try:
            os.kill(pid, signal.SIGTERM)  # dockerd stops its containers, containerd and shims
        except ProcessLookupError:
            pass
        deadline = time.monotonic() + 60
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.2)
        if _alive(pid):
            os.kill(pid, signal.SIGKILL)
            _alive(pid)
    _kill_leftovers()
    roots = (str(RUN_DIR), str(data_root()))
    mounts = [
        line.split()[1]
        for line in Path("/proc/self/mounts").read_text().splitlines()
        if line.split()[1].startswith(roots)
    ]
    for mnt in sorted(mounts, key=len, reverse=True):
        subprocess.run(["umount", "-l", mnt], capture_output=True)
    if NETNS_PATH.exists():
        subprocess.run(["ip", "netns", "delete", NETNS], capture_output=True)
    shutil.rmtree(RUN_DIR, ignore_errors=True)


def _kill_leftovers() -> None:
    """containerd and shims started by our dockerd (their command line names our exec root)."""
    marker = str(RUN_DIR).encode()
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if marker in (proc / "cmdline").read_bytes():
                os.kill(int(proc.name), signal.SIGKILL)
        except (OSError, ProcessLookupError):
            continue


def remove_cache() -> None:
    stop()
    shutil.rmtree(data_root(), ignore_errors=True)
    say(f"removed {data_root()}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m harness.images.engine", description=description(__doc__))
    parser.add_argument("action", choices=["start", "stop", "status", "remove-cache"])
    args = parser.parse_args(argv)
    try:
        if args.action == "start":
            start()
        elif args.action == "stop":
            stop()
        elif args.action == "remove-cache":
            remove_cache()
        else:
            print(
                f"running={running()} socket={SOCKET} isolation={'ok' if not NETNS_PATH.exists() or not isolation_report() else isolation_report()}"
            )
    except HarnessError as exc:
        print(f"egress-harness: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
