"""Run a shell script as root in a private mount namespace: what it mounts (a small tmpfs, /dev/null
over a command to hide it) is seen by it alone and goes with it; the host is never changed."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def in_private_mounts(script: str, *, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "sh", "-c", script],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=dict(os.environ, PYTHONPATH=str(REPO)),
    )
