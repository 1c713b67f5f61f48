"""Offline validation with the real `istioctl validate`, shared by every backend: a manifest
Istio refuses fails before it reaches istiod (which, reading files, would only log it)."""

from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path

import yaml

from harness.errors import HarnessError, ManifestRejected
from harness.sync import is_istio_config

# Objects istioctl accepted, by (istioctl, the object's digest), for the whole process: the session's
# check of every rendering at start validates each object once, and the applies of the same
# renderings later find them here instead of starting istioctl again.
_ACCEPTED: set[tuple[str, str]] = set()


def _digest(obj: dict) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()


class IstioctlValidator:
    def __init__(self, istioctl: Path):
        self.istioctl = istioctl
        self.runs = 0  # istioctl processes started (a test reads it)

    def validate(self, objs: list[dict]) -> None:
        tool = str(self.istioctl)
        pending = [o for o in objs if is_istio_config(o) and (tool, _digest(o)) not in _ACCEPTED]
        if not pending:
            return
        text = yaml.safe_dump_all(pending, sort_keys=False)
        self.runs += 1
        try:
            proc = subprocess.run(
                [str(self.istioctl), "validate", "-f", "-"], input=text, capture_output=True, text=True, timeout=60
            )
        except FileNotFoundError:
            raise HarnessError(
                f"istioctl not found at {self.istioctl}: rebuild Istio (python -m harness.istio_binaries)"
            ) from None
        if proc.returncode != 0:
            details = "; ".join(
                line.strip(" *\t")
                for line in (proc.stderr + proc.stdout).splitlines()
                if line.strip() and not line.startswith("Error:")
            )
            raise ManifestRejected(f"istio rejected the manifests: {details}")
        _ACCEPTED.update((tool, _digest(o)) for o in pending)
