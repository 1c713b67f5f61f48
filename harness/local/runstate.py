"""What one local-mesh run has created, on disk, so that anything can clean it up.

Every namespace, process and path is recorded in `/run/egress-harness/<run-id>/state.json`
*before* it is created. Normal teardown removes it all in-process. If the run dies (SIGKILL, OOM,
a crashed interpreter), the watchdog started with the mesh, or the next run, or
`python -m harness.local.reaper`, reads the file and removes what is left. Processes are ended
only if their pid still has the start time we recorded, so a reused pid is never hit.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

STATE_ROOT = Path(os.environ.get("EGRESS_HARNESS_STATE_DIR", "/run/egress-harness"))


def proc_start_time(pid: int) -> int | None:
    """Field 22 of /proc/<pid>/stat: identifies a process across pid reuse."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may contain spaces; fields after it are space-separated.
    return int(raw.rsplit(")", 1)[1].split()[19])


def pid_alive(pid: int, start_time: int | None) -> bool:
    """Running (not a zombie: in a rootless run the harness is PID 1 and inherits orphans it
    does not reap) and still the process we started."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    fields = raw.rsplit(")", 1)[1].split()
    if fields[0] in ("Z", "X"):
        return False
    return start_time is None or int(fields[19]) == start_time


@dataclass
class RunState:
    run_id: str
    owner_pid: int = field(default_factory=os.getpid)
    netns: list[str] = field(default_factory=list)
    processes: list[tuple[int, int | None, str]] = field(default_factory=list)  # pid, start time, name
    paths: list[str] = field(default_factory=list)

    @property
    def directory(self) -> Path:
        return STATE_ROOT / self.run_id

    @property
    def file(self) -> Path:
        return self.directory / "state.json"

    def save(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        tmp = self.file.with_suffix(".tmp")
        tmp.write_text(
            json.dumps(
                {
                    "run_id": self.run_id,
                    "owner_pid": self.owner_pid,
                    "owner_start": proc_start_time(self.owner_pid),
                    "netns": self.netns,
                    "processes": self.processes,
                    "paths": self.paths,
                }
            )
        )
        os.replace(tmp, self.file)

    def add_netns(self, name: str) -> None:
        self.netns.append(name)
        self.save()

    def add_process(self, pid: int, name: str) -> None:
        self.processes.append((pid, proc_start_time(pid), name))
        self.save()

    def add_path(self, path: Path) -> None:
        self.paths.append(str(path))
        self.save()

    def forget(self) -> None:
        shutil.rmtree(self.directory, ignore_errors=True)


def reap_state_file(state_file: Path, *, only_if_owner_dead: bool = True) -> list[str]:
    """Remove everything a run recorded. Returns what was done, for the log."""
    try:
        data = json.loads(state_file.read_text())
    except (OSError, ValueError):
        return []
    if only_if_owner_dead and pid_alive(data["owner_pid"], data.get("owner_start")):
        return []
    done: list[str] = []
    for pid, start, name in reversed(data.get("processes", [])):
        if pid_alive(pid, start):
            try:
                os.killpg(pid, signal.SIGKILL)  # each was started as its own process-group leader
            except ProcessLookupError:
                pass
            except PermissionError:
                os.kill(pid, signal.SIGKILL)
            done.append(f"killed {name} (pid {pid})")
    deadline = time.monotonic() + 5
    for pid, start, _ in data.get("processes", []):
        while pid_alive(pid, start) and time.monotonic() < deadline:
            time.sleep(0.02)
    for ns in data.get("netns", []):
        if Path("/var/run/netns", ns).exists():
            subprocess.run(["ip", "netns", "delete", ns], capture_output=True)
            done.append(f"deleted netns {ns}")
        shutil.rmtree(Path("/etc/netns", ns), ignore_errors=True)
    for path in data.get("paths", []):
        if Path(path).exists():
            shutil.rmtree(path, ignore_errors=True)
            done.append(f"removed {path}")
    shutil.rmtree(state_file.parent, ignore_errors=True)
    return done


def reap_stale_runs() -> list[str]:
    """Clean up after every earlier run whose owner is dead (killed runs)."""
    done: list[str] = []
    if STATE_ROOT.exists():
        for state_file in STATE_ROOT.glob("*/state.json"):
            done += reap_state_file(state_file)
    return done
