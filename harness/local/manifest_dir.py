"""The directory istiod reads its Istio config from (`--configDir`): what `apply` writes.

Manifests are validated by the real `istioctl validate` first (harness/istioctl_validate.py).
"""

from __future__ import annotations

import os
from pathlib import Path

import yaml

from harness.errors import HarnessError
from harness.istioctl_validate import IstioctlValidator
from harness.sync import ISTIO_KINDS

OTHER_KINDS = {"NetworkPolicy"}


def _describe(obj: dict) -> str:
    return f"{obj.get('kind')} {(obj.get('metadata') or {}).get('name')!r}"


class ManifestDir:
    def __init__(self, path: Path, istioctl: Path):
        self.path = path
        self.istioctl = istioctl
        self.applied: dict[str, dict] = {}  # file name -> object
        self._validator = IstioctlValidator(istioctl)

    @staticmethod
    def file_name(obj: dict) -> str:
        meta = obj.get("metadata") or {}
        return f"{obj.get('kind')}.{meta.get('namespace', 'default')}.{meta.get('name')}.yaml"

    def validate(self, objs: list[dict]) -> None:
        for o in objs:
            if o.get("kind") not in ISTIO_KINDS | OTHER_KINDS:
                raise HarnessError(f"the local mesh cannot apply kind {o.get('kind')!r} "
                                   f"({(o.get('metadata') or {}).get('name')}); it applies Istio config and NetworkPolicy")
            if not (o.get("metadata") or {}).get("namespace"):
                raise HarnessError(f"{_describe(o)} has no metadata.namespace: set it")
        self._validator.validate(objs)

    def write(self, obj: dict) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        name = self.file_name(obj)
        tmp = self.path / f".{name}.tmp"
        tmp.write_text(yaml.safe_dump(obj, sort_keys=False))
        os.replace(tmp, self.path / name)  # istiod never sees a half-written file
        self.applied[name] = obj

    def write_all(self, objs: list[dict]) -> None:
        for o in objs:
            self.write(o)

    def remove_all(self, objs: list[dict]) -> None:
        for o in objs:
            self.remove(o)

    def remove(self, obj: dict) -> None:
        name = self.file_name(obj)
        (self.path / name).unlink(missing_ok=True)
        self.applied.pop(name, None)
