"""fortio, the load generator of Istio's own benchmarks (istio/tools perf/benchmark), built once
with `go install` from the Go module proxy and cached as `<cache_root()>/tools/fortio-<version>/fortio`.

Why this version: v1.68.2 is the newest fortio whose every dependency the Go module proxy serves
here. From v1.69.0 on, fortio's `grol` command imports grol.io/grol, and the proxy answers 403 for
every grol.io/grol version (`go install fortio.org/fortio@v1.75.3` stops on it). `go install`
verifies the module against the Go checksum database, as a pinned checksum would.

EGRESS_HARNESS_FORTIO points at an existing fortio binary instead. `make clean-cache` removes the
cached build with the rest of the cache (or `rm -rf <cache_root()>/tools/fortio-*` alone).
Run `python -m harness.toolchain.fortio` to build ahead of a benchmark.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from harness.errors import HarnessError
from harness.istio_binaries import cache_root
from harness.system_packages import GO_DIRS, find_go

FORTIO_MODULE = "fortio.org/fortio"
FORTIO_VERSION = "v1.68.2"


def cached_path(version: str = FORTIO_VERSION) -> Path:
    return cache_root() / "tools" / f"fortio-{version}" / "fortio"


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


def ensure_fortio(version: str = FORTIO_VERSION) -> Path:
    """The fortio binary: EGRESS_HARNESS_FORTIO, else the cache, else built into the cache."""
    env = os.environ.get("EGRESS_HARNESS_FORTIO")
    if env:
        path = Path(env)
        if not path.is_file():
            raise HarnessError(f"EGRESS_HARNESS_FORTIO={env} does not exist: point it at a fortio binary or unset it")
        fortio_version_of(path)
        return path
    cached = cached_path(version)
    if cached.is_file():
        return cached
    go = find_go()  # where Istio's build looks too: PATH, then the usual install places
    if not go:
        raise HarnessError(
            "the Go toolchain (>= 1.23, fortio's go.mod) is needed to build fortio and none was found on PATH or in "
            f"{', '.join(GO_DIRS)}: install Go, or set EGRESS_HARNESS_FORTIO to a fortio binary"
        )
    cached.parent.parent.mkdir(parents=True, exist_ok=True)
    print(
        f"[egress-harness] building fortio: go install {FORTIO_MODULE}@{version} (about a minute, once)",
        file=sys.stderr,
        flush=True,
    )
    started = time.monotonic()
    # Built into a scratch directory and moved into place: an interrupted build leaves no
    # half-written binary in the cache.
    with tempfile.TemporaryDirectory(prefix="fortio-build-", dir=cached.parent.parent) as scratch:
        proc = subprocess.run(
            [go, "install", f"{FORTIO_MODULE}@{version}"],
            capture_output=True,
            text=True,
            env={**os.environ, "GOBIN": scratch, "GOFLAGS": "-buildvcs=false"},
            cwd=scratch,
        )
        built = Path(scratch) / "fortio"
        if proc.returncode != 0 or not built.is_file():
            tail = "; ".join((proc.stderr or proc.stdout).strip().splitlines()[-3:])
            raise HarnessError(
                f"go install {FORTIO_MODULE}@{version} failed: {tail} "
                f"(set EGRESS_HARNESS_FORTIO to an existing fortio to skip the build)"
            )
        cached.parent.mkdir(parents=True, exist_ok=True)
        os.replace(built, cached)
    print(
        f"[egress-harness] fortio {fortio_version_of(cached)} built in {time.monotonic() - started:.0f}s: {cached}",
        file=sys.stderr,
        flush=True,
    )
    return cached


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
