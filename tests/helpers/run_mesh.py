"""Start a local mesh in this process, print its run id, and wait to be interrupted or killed.

Used by tests/test_local_mesh.py to prove that teardown leaves nothing behind after Ctrl-C
(SIGINT) and after SIGKILL (the watchdog's job).
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

from harness.istio_binaries import ensure_istio
from harness.local.mesh import LocalMesh


def main() -> int:
    artifacts = Path(tempfile.mkdtemp(prefix="eh-child-"))
    mesh = LocalMesh(ensure_istio(sys.argv[1] if len(sys.argv) > 1 else "1.31"), artifacts)
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
