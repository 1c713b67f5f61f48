"""The stand-in's command line for tests that run mock_upstream on loopback (ephemeral ports)."""

from __future__ import annotations

from pathlib import Path


def loopback_args(cert: Path, key: Path, *extra: str, listen: str = "127.0.0.1") -> list[str]:
    """mock_upstream's arguments: HTTP, HTTPS and control on ports the kernel picks (the READY line
    names them), serving `cert` (a chain) and `key`; `extra` for the mTLS port and the like."""
    return [
        "--listen",
        listen,
        "--http-port",
        "0",
        "--https-port",
        "0",
        "--control-port",
        "0",
        "--cert",
        str(cert),
        "--key",
        str(key),
        *extra,
    ]
