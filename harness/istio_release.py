"""Released Istio (`--istio-version 1.30.2`): istioctl from the release's archive, verified against
the checksum the release publishes beside it, for the backends whose Istio runs from images
(BACKEND=kind with a registry, BACKEND=cluster). The images are the release's own
(docker.io/istio/pilot and proxyv2 at that tag).

Istio publishes every release asset with a `.sha256` file next to it (`<hex>  <file name>`), under
https://github.com/istio/istio/releases/download/<version>/. EGRESS_HARNESS_ISTIO_RELEASES points
the harness at a mirror of that tree (a team's artifact store); the tests point it at a local
server. Nothing is installed unless the archive's sha256 is the published one.

The local mesh (and kind with IMAGES=source) runs pilot-discovery, pilot-agent and Istio's
bootstrap from the binaries it builds: a release archive holds none of them (only istioctl, charts
and samples), so a released version there is refused in one line naming the branch build to use.

    python -m harness.istio_release 1.30.2     # fetch and verify; prints istioctl's path
"""

from __future__ import annotations

import os
import platform
import re
import shutil
import sys
import tarfile
import tempfile
from pathlib import Path

from harness.cache import cache_root
from harness.download import download_verified
from harness.errors import HarnessError

DEFAULT_BASE = "https://github.com/istio/istio/releases/download"
BASE_ENV = "EGRESS_HARNESS_ISTIO_RELEASES"
HUB = "docker.io/istio"
RELEASED = re.compile(r"^(\d+)\.(\d+)\.(\d+)$")


def is_released(version: str) -> bool:
    return bool(RELEASED.match(version))


def _arch() -> str:
    machine = platform.machine()
    return {"x86_64": "amd64", "aarch64": "arm64", "arm64": "arm64"}.get(machine, machine)


def archive_name(version: str) -> str:
    return f"istioctl-{version}-linux-{_arch()}.tar.gz"


def archive_url(version: str) -> str:
    base = os.environ.get(BASE_ENV, DEFAULT_BASE).rstrip("/")
    return f"{base}/{version}/{archive_name(version)}"


def istioctl_path(version: str) -> Path:
    return cache_root() / f"istio-release-{version}" / "bin" / "istioctl"


def _remedy(version: str) -> str:
    return f"is {version} a released Istio version? ({BASE_ENV} points at a mirror of {DEFAULT_BASE})"


def published_sha256(version: str) -> str:
    """The hex digest in the release's `<archive>.sha256` file (`<hex>` or `<hex>  <archive>`)."""
    import httpx

    url = archive_url(version) + ".sha256"
    try:
        resp = httpx.get(url, follow_redirects=True, timeout=60.0, trust_env=True)
    except httpx.HTTPError as exc:
        raise HarnessError(f"cannot download {url} ({type(exc).__name__}: {exc}): {_remedy(version)}") from None
    if resp.status_code != 200:
        raise HarnessError(f"download of {url} answered HTTP {resp.status_code}: {_remedy(version)}")
    fields = resp.text.split()
    names = [f.lstrip("*") for f in fields[1:]]  # sha256sum marks binary mode with "*"
    if not fields or not re.fullmatch(r"[0-9a-f]{64}", fields[0]) or names not in ([], [archive_name(version)]):
        raise HarnessError(f"the checksum file {url} is not '<sha256>  {archive_name(version)}': {resp.text[:120]!r}")
    return fields[0]


def fetch_istioctl(version: str) -> Path:
    """istioctl of the release, from the cache or downloaded now; one HarnessError line otherwise,
    and nothing installed."""
    dest = istioctl_path(version)
    if dest.exists():
        return dest
    expected = published_sha256(version)
    url = archive_url(version)
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=dest.parent) as tmp:
        archive = download_verified(
            url, Path(tmp) / archive_name(version), expected, BASE_ENV, remedy=_remedy(version), mode=0o644
        )
        with tarfile.open(archive) as tar:
            member = next((m for m in tar.getmembers() if m.isfile() and Path(m.name).name == "istioctl"), None)
            if member is None:
                raise HarnessError(f"{url} holds no istioctl: is it an istioctl release archive?")
            source = tar.extractfile(member)
            assert source is not None
            staged = Path(tmp) / "istioctl"
            with open(staged, "wb") as out:
                shutil.copyfileobj(source, out)
        staged.chmod(0o755)
        os.replace(staged, dest)
    return dest


def refuse_build_of_release(version: str) -> HarnessError:
    """What the local mesh and IMAGES=source say to a released version: they run Istio's binaries
    built here from a release branch, which a release archive does not hold."""
    minor = ".".join(version.split(".")[:2])
    return HarnessError(
        f"Istio {version} is a release: the local mesh and IMAGES=source run Istio built here from its release "
        f"branch, which no release archive holds; use --istio-version {minor} for those, or {version} with "
        f"BACKEND=kind (IMAGES=registry) or BACKEND=cluster"
    )


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1 or not is_released(args[0]):
        print("usage: python -m harness.istio_release X.Y.Z (a released Istio version)", file=sys.stderr)
        return 2
    try:
        print(fetch_istioctl(args[0]))
    except HarnessError as exc:
        print(f"egress-harness: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
