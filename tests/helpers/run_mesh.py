"""Start a local mesh in this process, print its run id, and wait to be interrupted or killed.
Usage: run_mesh.py ARTIFACTS_DIR [ISTIO_VERSION]

Used by tests/test_local_mesh.py to prove that teardown leaves nothing behind after Ctrl-C
(SIGINT) and after SIGKILL (the watchdog's job).
"""

from __future__ import annotations

import signal
import sys
import time
from pathlib import Path

from harness.istio_binaries import ensure_istio
from harness.local.mesh import LocalMesh


def main() -> int:
    # Ctrl-C as in a terminal: a shell that starts jobs in the background (nohup, CI runners) makes
    # them ignore SIGINT, and the ignore is inherited; the test sends SIGINT and means it.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    artifacts = Path(sys.argv[1])  # the calling test's tmp_path: removed with it
    mesh = LocalMesh(ensure_istio(sys.argv[2] if len(sys.argv) > 2 else "1.31"), artifacts)
    try:
        mesh.start()
        print(f"READY {mesh.run_id}", flush=True)
        while True:
            time.sleep(1)  # idle until a signal arrives; nothing is awaited here
    except KeyboardInterrupt:
        print("INTERRUPTED", flush=True)
        return 130
    finally:
        mesh.stop()


if __name__ == "__main__":
    sys.exit(main())
