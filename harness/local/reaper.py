"""Clean-up of runs that died, and the per-run watchdog.

`python -m harness.local.reaper`            remove what every dead run left behind
`python -m harness.local.reaper --watch F`  (started by the mesh) wait until the owner's end of the
                                            pipe on stdin closes, then remove what the run at
                                            state file F left, if anything is left.
The pipe closes when the owner exits for any reason, SIGKILL included, so a killed pytest still
leaves no namespace, process or key behind.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

from harness import watchdog
from harness.console import description
from harness.local.runstate import reap_stale_runs, reap_state_file


def start_watchdog(state_file: Path) -> tuple[subprocess.Popen, int]:
    """Start the watchdog (harness/watchdog.py); returns it and the write end of its pipe."""
    return watchdog.start("harness.local.reaper", "--watch", str(state_file))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m harness.local.reaper", description=description(__doc__))
    parser.add_argument("--watch", type=Path, help="state file of the run to watch")
    args = parser.parse_args(argv)
    if args.watch:
        while sys.stdin.buffer.read(4096):
            pass
        # The owner may have exited normally after cleaning up; then the file is gone already.
        reap_state_file(args.watch, only_if_owner_dead=False)
        return 0
    if os.geteuid() != 0:
        # A run without root lives in a PID and mount namespace of its own: when it dies, the
        # kernel ends its processes and its /run (state, keys) goes with it. Nothing to find.
        print(
            "nothing to clean: runs without root leave nothing behind (a PID namespace each); "
            "runs as root are cleaned with 'sudo make clean-stale'"
        )
        return 0
    done = reap_stale_runs()
    for line in done:
        print(line)
    if not done:
        print("nothing to clean: no dead run left anything")
    return 0


if __name__ == "__main__":
    sys.exit(main())
