"""CPU time and memory of a process, read from /proc (proc(5)): never estimated.

CPU is utime + stime of every thread of the process (/proc/<pid>/stat fields 14 and 15, in clock
ticks of os.sysconf('SC_CLK_TCK'), 10 ms here); memory is VmRSS and VmHWM of /proc/<pid>/status.
Envoy is pilot-agent's child: pilot-agent starts it and stays its parent (pkg/envoy/proxy.go).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

CLK_TCK = os.sysconf("SC_CLK_TCK")
PROC = Path("/proc")


def parse_stat(text: str) -> tuple[str, int, float]:
    """(comm, ppid, cpu seconds) from a /proc/<pid>/stat line; comm may contain spaces and ')'."""
    comm = text[text.index("(") + 1 : text.rindex(")")]
    fields = text[text.rindex(")") + 2 :].split()
    # fields[0] is field 3 (state): ppid is field 4, utime 14, stime 15.
    ppid = int(fields[1])
    ticks = int(fields[11]) + int(fields[12])
    return comm, ppid, ticks / CLK_TCK


def cpu_seconds(pid: int) -> float:
    return parse_stat((PROC / str(pid) / "stat").read_text())[2]


@dataclass(frozen=True)
class Memory:
    rss_mib: float
    peak_rss_mib: float


def memory(pid: int) -> Memory:
    values: dict[str, float] = {}
    for line in (PROC / str(pid) / "status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            values[key] = int(rest.split()[0]) / 1024  # kB → MiB
    return Memory(round(values.get("VmRSS", 0.0), 1), round(values.get("VmHWM", 0.0), 1))


def child_named(parent: int, comm: str) -> int | None:
    """The pid of `parent`'s child whose command name is `comm` (scans /proc: no children file
    needed, which kernels without CONFIG_PROC_CHILDREN lack)."""
    for entry in PROC.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            name, ppid, _ = parse_stat((entry / "stat").read_text())
        except (OSError, ValueError, IndexError):
            continue
        if ppid == parent and name == comm:
            return int(entry.name)
    return None
