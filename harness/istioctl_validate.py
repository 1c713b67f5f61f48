"""Offline validation with the real `istioctl validate`, shared by every backend: a manifest
Istio refuses fails before it reaches istiod (which, reading files, would only log it)."""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

import yaml

from harness.errors import HarnessError, ManifestRejected
from harness.sync import ISTIO_KINDS


class IstioctlValidator:
    def __init__(self, istioctl: Path):
        self.istioctl = istioctl
        self._valid: set[str] = set()  # scenarios apply the same renderings again and again

    def validate(self, objs: list[dict]) -> None:
        istio = [o for o in objs if o.get("kind") in ISTIO_KINDS]
        if not istio:
            return
        text = yaml.safe_dump_all(istio, sort_keys=False)
        digest = hashlib.sha256(text.encode()).hexdigest()
        if digest in self._valid:
            return
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
        self._valid.add(digest)
