"""The one folder every download and build of the harness is cached under (`make clean-cache`
removes it): $EGRESS_HARNESS_CACHE, else $XDG_CACHE_HOME/egress-harness, else ~/.cache/egress-harness."""

from __future__ import annotations

import os
from pathlib import Path


def cache_root() -> Path:
    if os.environ.get("EGRESS_HARNESS_CACHE"):
        return Path(os.environ["EGRESS_HARNESS_CACHE"])
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "egress-harness"
