"""The one verified download of the harness: a file is kept only if its sha256 is the expected one
(kind and kubectl pinned in harness/backends/tools.py, an Istio release's istioctl archive checked
against the release's own .sha256 in harness/istio_release.py)."""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from pathlib import Path

from harness.errors import HarnessError


def download_verified(
    url: str,
    dest: Path,
    sha256: str | None,
    env_name: str,
    *,
    timeout: float = 120.0,
    remedy: str | None = None,
    mode: int = 0o755,
) -> Path:
    """Download url to dest (`mode`) only if its sha256 is the expected one. Nothing is left at
    dest when the checksum is missing or wrong. `env_name` names the variable that pins the
    checksum; `remedy` what to do when the download fails (default: fetch by hand, set the
    variable without its _SHA256)."""
    if not sha256:
        raise HarnessError(
            f"no pinned sha256 for {url}: set {env_name} to the checksum from the release page "
            f"(or install Go so the harness can build it from the module proxy)"
        )
    if not re.fullmatch(r"[0-9a-f]{64}", sha256.lower()):
        raise HarnessError(f"{env_name}={sha256!r} is not a sha256 (64 hex digits): fix it")
    remedy = remedy or f"fetch it by hand and set {env_name.replace('_SHA256', '')}"
    import httpx

    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.")
    tmp = Path(tmp_name)
    h = hashlib.sha256()
    try:
        with os.fdopen(fd, "wb") as out:
            try:
                with httpx.stream("GET", url, follow_redirects=True, timeout=timeout, trust_env=True) as resp:
                    if resp.status_code != 200:
                        raise HarnessError(f"download of {url} answered HTTP {resp.status_code}: {remedy}")
                    for chunk in resp.iter_bytes():
                        h.update(chunk)
                        out.write(chunk)
            except httpx.HTTPError as exc:
                raise HarnessError(f"cannot download {url} ({type(exc).__name__}: {exc}): {remedy}") from None
        got = h.hexdigest()
        if got != sha256.lower():
            raise HarnessError(
                f"checksum mismatch for {url}: got sha256 {got}, expected {sha256.lower()}; nothing was installed"
            )
        tmp.chmod(mode)
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)
    return dest
