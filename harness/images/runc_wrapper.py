#!/usr/bin/python3
"""An OCI runtime that is runc, minus CAP_SYS_RESOURCE, for hosts whose capability bounding set lacks it.

Why: on such a host (our VMs: CapBnd 000001fffeffffff, bit 24 missing) runc refuses every
`--privileged` container ("unable to apply caps: operation not permitted"), and kind's nodes are
privileged containers. Docker's --privileged asks for every capability; this wrapper removes
CAP_SYS_RESOURCE from the bundle's config.json (create/run) and from the process spec (exec), then
execs the real runc with the same arguments. Registered by harness/images/engine.py as dockerd's
default runtime, only when the capability is missing (kind-from-source.md).

Usage (by dockerd): runc_wrapper.py <runc args...>; the real runc is $EH_REAL_RUNC or `runc` on PATH.
"""

import json
import os
import shutil
import sys

CAP = "CAP_SYS_RESOURCE"


def _strip(spec_path: str, *, process_only: bool) -> None:
    try:
        with open(spec_path) as f:
            spec = json.load(f)
    except (OSError, ValueError):
        return
    proc = spec if process_only else spec.get("process", {})
    caps = proc.get("capabilities") or {}
    changed = False
    for key, values in caps.items():
        if isinstance(values, list) and CAP in values:
            caps[key] = [c for c in values if c != CAP]
            changed = True
    if changed:
        with open(spec_path, "w") as f:
            json.dump(spec, f)


def _value(args: list[str], *names: str) -> str | None:
    for i, arg in enumerate(args):
        for name in names:
            if arg == name and i + 1 < len(args):
                return args[i + 1]
            if arg.startswith(name + "="):
                return arg.split("=", 1)[1]
    return None


def main() -> None:
    args = sys.argv[1:]
    real = os.environ.get("EH_REAL_RUNC") or shutil.which("runc") or "/usr/sbin/runc"
    command = next((a for a in args if a in ("create", "run", "exec")), None)
    if command in ("create", "run"):
        bundle = _value(args, "--bundle", "-b") or os.getcwd()
        _strip(os.path.join(bundle, "config.json"), process_only=False)
    elif command == "exec":
        process = _value(args, "--process", "-p")
        if process:
            _strip(process, process_only=True)
    os.execv(real, [real, *args])


if __name__ == "__main__":
    main()
