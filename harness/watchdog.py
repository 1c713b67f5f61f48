"""A process that cleans up after its owner, however the owner ends (SIGKILL included).

The watchdog runs in a session of its own (Ctrl-C in the terminal must not end it before it has
cleaned up) and holds the read end of a pipe whose write end only the owner has. The pipe closes
when the owner exits for any reason; the watchdog reads until then (the owner may send it lines
meanwhile), and then does its cleanup. Used by the local mesh (harness/local/reaper.py) and by the
kind run's engine (harness/images/with_engine.py).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def start(module: str, *args: str) -> tuple[subprocess.Popen, int]:
    """`python -m module args…` as a watchdog; returns it and the pipe's write end, which the owner
    keeps open until its own teardown is done (then closes it, and the watchdog finds nothing left)."""
    read_fd, write_fd = os.pipe()
    os.set_inheritable(write_fd, False)
    proc = subprocess.Popen(
        [sys.executable, "-m", module, *args],
        stdin=read_fd,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
        cwd=str(REPO),
    )
    os.close(read_fd)
    return proc, write_fd


def release(watchdog: tuple[subprocess.Popen, int], timeout: float = 10.0) -> None:
    """The owner's teardown is done: close the pipe and let the watchdog exit."""
    proc, write_fd = watchdog
    os.close(write_fd)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
