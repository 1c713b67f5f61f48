"""Long-running processes of the pocket cluster (istiod, proxies, the stand-in upstream).

Each is started as the leader of its own process group, with its output in a log file under the
run's artifacts, and recorded in the run state before anything else can go wrong. Stopping sends
SIGTERM to the group, then SIGKILL after a grace period: pilot-agent's Envoy child goes with it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from harness.local.runstate import RunState, pid_alive, proc_start_time

# /proc/<pid>/stat's state letters (proc(5)).
_RUN_STATES = {
    "R": "running",
    "S": "sleeping",
    "D": "in uninterruptible sleep",
    "T": "stopped (SIGSTOP)",
    "t": "stopped by a tracer",
    "Z": "a zombie",
    "I": "idle",
}


@dataclass
class ManagedProcess:
    name: str
    argv: list[str]
    log_path: Path
    env: dict[str, str] | None = None
    cwd: Path | None = None
    log_owner: int | None = None  # uid that must be able to reopen /dev/stdout (Envoy's access log)
    popen: subprocess.Popen | None = field(default=None, init=False)
    stopped: bool = field(default=False, init=False)  # stop() was called: an exit then is ours
    _start_time: int | None = field(default=None, init=False)

    def start(self, state: RunState) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            if self.log_owner is not None:
                os.chown(self.log_path, self.log_owner, self.log_owner)
            self.popen = subprocess.Popen(
                self.argv,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=self.env,
                cwd=self.cwd,
                start_new_session=True,
            )
        self.stopped = False
        self._start_time = proc_start_time(self.popen.pid)
        state.add_process(self.popen.pid, self.name)

    @property
    def pid(self) -> int:
        assert self.popen is not None
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def exited_by_itself(self) -> bool:
        """Started, and gone without the harness stopping it (killed, crashed, exited)."""
        return self.popen is not None and not self.stopped and self.popen.poll() is not None

    def exit_summary(self) -> str:
        """For errors: how it ended and the last lines of its log."""
        code = self.popen.poll() if self.popen else None
        tail = self.log_tail(8)
        return f"{self.name} exited with {code}; last log lines:\n{tail}"

    def exit_status(self) -> str:
        """How it ended, in words: "status 1", "SIGKILL (status -9)"; "running" if it has not."""
        code = self.popen.poll() if self.popen else None
        if code is None:
            return "running"
        if code < 0:
            try:
                return f"{signal.Signals(-code).name} (status {code})"
            except ValueError:
                pass
        return f"status {code}"

    def exit_line(self, label: str | None = None, lines: int = 3, width: int = 200) -> str:
        """One line for a fault: "<label> (<name>, pid N) exited with <status>; last log lines: a | b"."""
        tail = [line.strip()[:width] for line in self.log_tail(lines).splitlines() if line.strip()]
        pid = self.popen.pid if self.popen else "?"
        who = f"{label} ({self.name}, pid {pid})" if label else f"{self.name} (pid {pid})"
        return f"{who} exited with {self.exit_status()}; last log lines: {' | '.join(tail) if tail else '(none)'}"

    def run_state(self) -> str:
        """The kernel's word for it now (/proc/<pid>/stat): "running", "sleeping", "stopped" (SIGSTOP)…"""
        if not self.alive():
            return "exited"
        try:
            code = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            return "unknown"
        return _RUN_STATES.get(code, code)

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "<no log>"

    def stop(self, grace: float = 3.0) -> None:
        if self.popen is None:
            return
        self.stopped = True
        if self.popen.poll() is None:
            self._signal_group(signal.SIGTERM)
            try:
                self.popen.wait(grace)
            except subprocess.TimeoutExpired:
                pass
        # The leader may be gone while a child (Envoy) lingers in the group.
        self._signal_group(signal.SIGKILL)
        try:
            self.popen.wait(5)
        except subprocess.TimeoutExpired:
            pass

    def _signal_group(self, sig: int) -> None:
        assert self.popen is not None
        try:
            os.killpg(self.popen.pid, sig)
        except ProcessLookupError:
            pass


def wait_gone(procs: list[ManagedProcess], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    for p in procs:
        while p.popen is not None and pid_alive(p.pid, p._start_time) and time.monotonic() < deadline:
            time.sleep(0.02)
