"""A pod's process found from this machine: a kind node is a container here, so its pods' processes
are this machine's too, each with the POD_NAME and POD_NAMESPACE its pod spec gives it (Istio's
injected istio-proxy container has both). Reading another process's environment needs root, as
the kind backend with IMAGES=source does."""

from __future__ import annotations

from pathlib import Path

from harness.errors import HarnessError


def _environ(pid_dir: Path) -> dict[str, str]:
    try:
        raw = (pid_dir / "environ").read_bytes()
    except OSError:  # exited meanwhile, or not ours to read
        return {}
    return dict(entry.split("=", 1) for entry in raw.decode(errors="replace").split("\0") if "=" in entry)


def pod_process(namespace: str, pod: str, command: str, proc: Path = Path("/proc")) -> int:
    """The pid of the one process named `command` (its /proc comm) of pod `namespace/pod`."""
    found = []
    for pid_dir in proc.iterdir():
        if not pid_dir.name.isdigit():
            continue
        try:
            comm = (pid_dir / "comm").read_text().strip()
        except OSError:
            continue
        if comm != command:
            continue
        env = _environ(pid_dir)
        if env.get("POD_NAME") == pod and env.get("POD_NAMESPACE") == namespace:
            found.append(int(pid_dir.name))
    if len(found) != 1:
        raise HarnessError(f"{len(found)} processes {command!r} of pod {namespace}/{pod} on this machine: {found}")
    return found[0]
