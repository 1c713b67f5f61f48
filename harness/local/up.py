"""`make mesh` (`python -m harness.local.up`): start the local mesh, print how to look inside it, and
keep it until Ctrl-C (or SIGTERM, or SIGHUP: a closed terminal), then tear it down like a test run does.

Why: a user debugging a scenario wants their usual tools against the live mesh: the mesh's real
kube-apiserver (apiserver.py) answers `kubectl get vs -A`, `kubectl apply -f`, and the printed
KUBECONFIG line is all they need. Teardown is the mesh's own (LocalMesh.stop, and its watchdog
after SIGKILL), so nothing is left either way. `--artifacts DIR` is claimed as a test run claims
it (harness/artifacts.py): a folder in use by another run is refused, not overwritten.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import tempfile
import threading
from pathlib import Path

from harness.artifacts import claim as claim_artifacts
from harness.console import description
from harness.errors import HarnessError
from harness.istio_binaries import ensure_istio
from harness.versions import DEFAULT_ISTIO_VERSION


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m harness.local.up", description=description(__doc__))
    parser.add_argument("--istio-version", default=DEFAULT_ISTIO_VERSION)
    parser.add_argument("--artifacts", type=Path, default=None, help="where the mesh's logs go (default: a temp dir)")
    args = parser.parse_args(argv)
    from harness.local.mesh import LocalMesh

    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, lambda *_: stop.set())
    lock_fd = None
    try:
        if args.artifacts is not None:
            args.artifacts, lock_fd = claim_artifacts(args.artifacts)
        binaries = ensure_istio(args.istio_version)
        with tempfile.TemporaryDirectory(prefix="egress-mesh-") as tmp:
            mesh = LocalMesh(binaries, args.artifacts or Path(tmp))
            try:
                mesh.start()
                print(f"local mesh {mesh.run_id} is up ({mesh.timings['cold_start']:.1f} s); logs: {mesh.log_dir}")
                for line in mesh.look_inside():
                    print(line)
                print("Ctrl-C to tear it down", flush=True)
                # A timed wait: a signal the kernel delivers to another thread (the node agent's,
                # the forwarder's) only sets Python's flag, and a main thread blocked in an
                # untimed wait would never run the handler (SIGHUP then hung teardown).
                while not stop.wait(0.2):
                    pass
            finally:
                mesh.stop()
    except HarnessError as exc:  # an artifacts problem too
        print(f"egress-harness: error: {exc}", file=sys.stderr)
        return 2
    finally:
        if lock_fd is not None:
            os.close(lock_fd)
    print("torn down")
    return 0


if __name__ == "__main__":
    sys.exit(main())
