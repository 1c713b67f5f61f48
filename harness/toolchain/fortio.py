"""fortio, the load generator of Istio's own benchmarks (istio/tools perf/benchmark), built once
from the Go module proxy by harness/toolchain/gobuild.py (programs.FORTIO) and cached there.

Why this version: v1.68.2 is the newest fortio whose every dependency the Go module proxy serves
here. From v1.69.0 on, fortio's `grol` command imports grol.io/grol, and the proxy answers 403 for
every grol.io/grol version (`go install fortio.org/fortio@v1.75.3` stops on it). Go verifies the
module against the Go checksum database, as a pinned checksum would.

EGRESS_HARNESS_FORTIO points at an existing fortio binary instead. `make clean-cache` removes the
cached build with the rest of the cache. Run `python -m harness.toolchain.fortio` to build ahead of
a benchmark.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from harness.errors import HarnessError
from harness.toolchain import gobuild, programs

FORTIO_VERSION = programs.FORTIO.version


def fortio_version_of(path: Path) -> str:
    """'1.68.2' from `fortio version`; a HarnessError if it is not a working fortio."""
    try:
        out = subprocess.run([str(path), "version"], capture_output=True, text=True, timeout=30)
    except OSError as exc:
        raise HarnessError(
            f"{path} cannot run ({exc.strerror}): point EGRESS_HARNESS_FORTIO at a fortio binary or unset it"
        ) from None
    text = out.stdout.strip()
    if out.returncode != 0 or not text or not text[0].isdigit():
        raise HarnessError(f"{path} is not a working fortio ({(out.stderr or out.stdout).strip()[:200]})")
    return text.split()[0]


def ensure_fortio() -> Path:
    """The fortio binary: EGRESS_HARNESS_FORTIO, else the toolchain's build (made now if missing)."""
    env = os.environ.get("EGRESS_HARNESS_FORTIO")
    if env:
        path = Path(env)
        if not path.is_file():
            raise HarnessError(f"EGRESS_HARNESS_FORTIO={env} does not exist: point it at a fortio binary or unset it")
        fortio_version_of(path)
        return path
    return gobuild.ensure_program(programs.FORTIO) / "fortio"


def main() -> int:
    try:
        path = ensure_fortio()
    except HarnessError as exc:
        print(f"egress-harness: error: {exc}", file=sys.stderr)
        return 2
    print(f"fortio {fortio_version_of(path)}: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
