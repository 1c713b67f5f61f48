"""kind, kubectl and istioctl for the Kubernetes backends: pinned versions, found or fetched once.

Where each comes from, first match wins:
  1. an explicit binary: EGRESS_HARNESS_KIND / EGRESS_HARNESS_KUBECTL (istioctl: the Istio build of
     harness.istio_binaries, or EGRESS_HARNESS_ISTIO_BIN);
  2. the cache: the toolchain's build (`<cache_root()>/toolchain/<name>-<version>-<key>/bin/`) or
     a verified download (`<cache_root()>/tools/<name>-<version>/<name>`);
  3. PATH, when its version fits (kind: exactly the pinned one; kubectl: within the Kubernetes
     version-skew policy, ±1 minor of the cluster);
  4. fetched into the cache:
     - with Go: built from the Go module proxy by harness/toolchain/gobuild.py, the one builder of
       every Go program the harness uses (programs.KIND: sigs.k8s.io/kind; programs.KUBECTL: a
       small main package around the staging module k8s.io/kubectl, version-stamped). Go
       verifies every module against its checksum database, sum.golang.org.
     - without Go: the release binary (GitHub, dl.k8s.io), verified against KIND_RELEASE_SHA256 /
       KUBECTL_RELEASE_SHA256.

Why Go first: on our machines GitHub and dl.k8s.io are unreachable, the Go module proxy
is, and Go's checksum database gives the same guarantee a pinned checksum would. The release
downloads are for machines without Go; their checksums are constants that could not be read or
checked from here (no route to the release pages): they are None until someone fills them in from
the release's published `.sha256sum`/`.sha256` files, and until then a download refuses to run
unless the checksum is given in EGRESS_HARNESS_KIND_SHA256 / EGRESS_HARNESS_KUBECTL_SHA256.
"""

from __future__ import annotations

import json
import os
import platform
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from harness import istio_release
from harness.cache import cache_root
from harness.download import download_verified
from harness.errors import HarnessError, HarnessFault
from harness.system_packages import find_go
from harness.toolchain import gobuild, programs

# ------------------------------------------------------------------------------------------ pins
# kind v0.33.0: the newest kind the Go module proxy serves (sigs.k8s.io/kind@v0.33.0); its default
# node image is read from its source, pkg/apis/config/defaults/image.go, and the other node images
# from the v0.33.0 release notes ("Images pre-built for this release").
KIND_VERSION = programs.KIND.version
# kindnet enforces NetworkPolicy (through kube-network-policies) from kind v0.24.0 on
# (kubernetes-sigs/kind PR #3612); older kinds silently ignore it and the seed's §4 would pass
# for the wrong reason. A kind from PATH or EGRESS_HARNESS_KIND older than this is refused.
KIND_MIN_NETWORK_POLICY = "v0.24.0"
KIND_NODE_IMAGES = {
    "1.37": "kindest/node:v1.37.0@sha256:a1ed56cfb0e7b93589bdf97c8cd566405a265939e3620fc4f5de89adff580ae5",
    "1.36": "kindest/node:v1.36.4@sha256:099e049362a1526b2db71494e1947aae99bd16290d7c895f2b7ea312e3cbfaed",
    "1.35": "kindest/node:v1.35.8@sha256:07b2536e30b803ed61d1677a79df6115f798ce64c80f9e22f6ed45afd09323c0",
    "1.34": "kindest/node:v1.34.11@sha256:44e222ee2132dab25ff87301682f89eb82c7880ea3a1bf543bfe9708fd08d67d",
}
DEFAULT_KUBERNETES = "1.37"  # kind v0.33.0's default node image

# kubectl of the default node's Kubernetes version (programs.KUBECTL: built from the staging
# module k8s.io/kubectl, which the Go module proxy serves).
KUBECTL_VERSION = programs.KUBECTL_VERSION

# UNVERIFIED — fill in from the release pages before relying on downloads; see the docstring.
# kind:    https://github.com/kubernetes-sigs/kind/releases/download/v0.33.0/kind-linux-amd64.sha256sum
# kubectl: https://dl.k8s.io/release/v1.37.0/bin/linux/amd64/kubectl.sha256
KIND_RELEASE_SHA256: dict[tuple[str, str], str | None] = {
    ("linux", "amd64"): None,  # UNVERIFIED: not readable from this machine
    ("linux", "arm64"): None,  # UNVERIFIED
    ("darwin", "amd64"): None,  # UNVERIFIED
    ("darwin", "arm64"): None,  # UNVERIFIED
}
KUBECTL_RELEASE_SHA256: dict[tuple[str, str], str | None] = {
    ("linux", "amd64"): None,  # UNVERIFIED: not readable from this machine
    ("linux", "arm64"): None,  # UNVERIFIED
    ("darwin", "amd64"): None,  # UNVERIFIED
    ("darwin", "arm64"): None,  # UNVERIFIED
}

# The Istio images a cluster pulls for each --istio-version. istioctl built from source defaults to
# registry.istio.io/testing:latest (read from `istioctl manifest generate`), which is no release:
# the kind backend always passes hub and tag. UNVERIFIED here (no registry reachable): the tag is
# the release of the branch the registry's build comes from (harness/versions.py).
ISTIO_IMAGES = {"1.31": ("docker.io/istio", "1.31.0")}


def os_arch() -> tuple[str, str]:
    system = platform.system().lower()
    machine = platform.machine().lower()
    arch = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}.get(machine, machine)
    return system, arch


def tools_dir() -> Path:
    return cache_root() / "tools"


def kind_node_image(kubernetes: str | None = None) -> str:
    minor = kubernetes or DEFAULT_KUBERNETES
    minor = ".".join(minor.lstrip("v").split(".")[:2])
    try:
        return KIND_NODE_IMAGES[minor]
    except KeyError:
        raise HarnessError(
            f"no kind {KIND_VERSION} node image pinned for Kubernetes {kubernetes!r}: "
            f"use one of {', '.join(sorted(KIND_NODE_IMAGES))} (EGRESS_HARNESS_KUBERNETES)"
        ) from None


def istio_images(istio_version: str) -> tuple[str, str]:
    """(hub, tag) of the released images for `istio_version`, overridable by
    EGRESS_HARNESS_ISTIO_HUB / EGRESS_HARNESS_ISTIO_TAG."""
    default = (istio_release.HUB, istio_version) if istio_release.is_released(istio_version) else (None, None)
    hub, tag = ISTIO_IMAGES.get(istio_version, default)
    hub = os.environ.get("EGRESS_HARNESS_ISTIO_HUB") or hub
    tag = os.environ.get("EGRESS_HARNESS_ISTIO_TAG") or tag
    if not hub or not tag:
        raise HarnessError(
            f"no Istio images known for --istio-version {istio_version}: set EGRESS_HARNESS_ISTIO_HUB and "
            f"EGRESS_HARNESS_ISTIO_TAG to the images the cluster should pull (e.g. docker.io/istio and 1.31.0)"
        )
    return hub, tag


# -------------------------------------------------------------------------------- versions
_SEMVER = re.compile(r"v?(\d+)\.(\d+)\.(\d+)")


def parse_version(text: str) -> tuple[int, int, int]:
    m = _SEMVER.search(text)
    if not m:
        raise ValueError(f"no version in {text!r}")
    return int(m.group(1)), int(m.group(2)), int(m.group(3))


def kind_version_of(path: Path) -> str:
    """'v0.33.0' from `kind version` ("kind v0.33.0 go1.26.8 linux/amd64")."""
    out = subprocess.run([str(path), "version"], capture_output=True, text=True, timeout=30)
    m = re.search(r"\bv\d+\.\d+\.\d+\S*", out.stdout)
    if out.returncode != 0 or not m:
        raise HarnessError(f"{path} is not a working kind ({(out.stderr or out.stdout).strip()[:200]})")
    return m.group(0)


def kubectl_version_of(path: Path) -> str:
    """The client gitVersion, e.g. 'v1.37.0' (or 'v1.32.4-dispatcher' for gcloud's)."""
    out = subprocess.run([str(path), "version", "--client", "-o", "json"], capture_output=True, text=True, timeout=30)
    try:
        return json.loads(out.stdout)["clientVersion"]["gitVersion"]
    except (ValueError, KeyError, TypeError):
        raise HarnessError(f"{path} is not a working kubectl ({(out.stderr or out.stdout).strip()[:200]})") from None


def kubectl_fits(client: str, server_minor: str) -> bool:
    """Kubernetes' version-skew policy: kubectl within one minor of the API server."""
    try:
        major, minor, _ = parse_version(client)
    except ValueError:
        return False
    s_major, s_minor = (int(x) for x in server_minor.lstrip("v").split(".")[:2])
    return major == s_major and abs(minor - s_minor) <= 1


def check_kind_version(version: str, origin: str) -> None:
    if parse_version(version) < parse_version(KIND_MIN_NETWORK_POLICY):
        raise HarnessError(
            f"kind {version} from {origin} does not enforce NetworkPolicy (kindnet does from {KIND_MIN_NETWORK_POLICY}): "
            f"use kind {KIND_VERSION} (unset it to let the harness fetch it)"
        )


# -------------------------------------------------------------------------------- resolution
@dataclass(frozen=True)
class Tool:
    """Where a tool is or would come from. `path` is None when it still has to be fetched."""

    name: str
    version: str
    origin: str  # words: "EGRESS_HARNESS_KIND", "cache", "PATH", "built from the Go module proxy …", "download …"
    path: Path | None
    fetch: tuple[str, ...] = ()  # the command that would fetch it (for the plan)

    def fetched_path(self) -> Path:
        """The binary of a Tool resolved with fetch=True (which fetches it or raises HarnessError)."""
        if self.path is None:
            raise HarnessFault(f"{self.name} {self.version} was used before it was fetched ({self.origin})")
        return self.path

    def describe(self) -> str:
        where = str(self.path) if self.path else "(not fetched yet)"
        return f"{self.name} {self.version}: {where} [{self.origin}]"


def _cached(name: str, version: str) -> Path:
    return tools_dir() / f"{name}-{version}" / name


def resolve_kind(*, fetch: bool) -> Tool:
    env = os.environ.get("EGRESS_HARNESS_KIND")
    if env:
        path = Path(env)
        if not path.exists():
            raise HarnessError(f"EGRESS_HARNESS_KIND={env} does not exist: point it at a kind binary or unset it")
        version = kind_version_of(path)
        check_kind_version(version, "EGRESS_HARNESS_KIND")
        return Tool("kind", version, "EGRESS_HARNESS_KIND", path)
    built = _built(programs.KIND, "kind")
    if built is not None:
        return Tool("kind", KIND_VERSION, "cache", built)
    cached = _cached("kind", KIND_VERSION)
    if cached.exists():
        return Tool("kind", KIND_VERSION, "cache", cached)
    on_path = shutil.which("kind")
    if on_path:
        try:
            version = kind_version_of(Path(on_path))
        except HarnessError:
            version = ""
        if version == KIND_VERSION:
            return Tool("kind", version, "PATH", Path(on_path))
    system, arch = os_arch()
    tool = _go_or_download(
        "kind",
        KIND_VERSION,
        cached,
        fetch,
        go_build=_go_build(programs.KIND, "kind"),
        url=f"https://github.com/kubernetes-sigs/kind/releases/download/{KIND_VERSION}/kind-{system}-{arch}",
        sha=_kind_sha256(),
        sha_env="EGRESS_HARNESS_KIND_SHA256",
    )
    if tool.path is not None:
        version = kind_version_of(tool.path)
        if version != KIND_VERSION:
            raise HarnessError(
                f"fetched kind reports {version}, expected {KIND_VERSION}: remove {tool.path.parent} and retry"
            )
    return tool


def _built(prog: gobuild.GoProgram, binary: str) -> Path | None:
    """The toolchain's finished build of `prog`, if there is one (and Go to key it by)."""
    if find_go() is None or not gobuild.is_built(prog):
        return None
    return gobuild.program_dir(prog) / "bin" / binary


def _go_build(prog: gobuild.GoProgram, binary: str) -> tuple[tuple[str, ...], str, Callable[[], Path]] | None:
    """How `prog` is built when Go is there: the command the plan shows (the harness's own, which
    runs the same build), the words for its origin, and the build."""
    if find_go() is None:
        return None
    return (
        (sys.executable, "-m", "harness.toolchain", prog.name),
        f"built from the Go module proxy by harness/toolchain ({prog.requires[0][0]}@{prog.requires[0][1]}, "
        "verified by the Go checksum database)",
        lambda: gobuild.ensure_program(prog) / binary,
    )


def _go_or_download(
    name: str,
    version: str,
    cached: Path,
    fetch: bool,
    *,
    go_build: tuple[tuple[str, ...], str, Callable[[], Path]] | None,
    url: str,
    sha: str | None,
    sha_env: str,
    note: str = "",
) -> Tool:
    """A tool built by the toolchain when Go is there (go_build: the plan's command, origin, build),
    else downloaded to `cached` with its sha256 checked. Without `fetch`, only says how."""
    if go_build:
        cmd, origin, build = go_build
        origin += note
    else:
        cmd, origin, build = ("download", url), f"download {url} (sha256 {sha or 'NOT PINNED'}){note}", None
    if not fetch:
        return Tool(name, version, origin, None, cmd)
    if build is not None:
        return Tool(name, version, "cache (built now)", build(), cmd)
    download_verified(url, cached, sha, sha_env)
    return Tool(name, version, "cache (fetched now)", cached, cmd)


def _kind_sha256() -> str | None:
    return os.environ.get("EGRESS_HARNESS_KIND_SHA256") or KIND_RELEASE_SHA256.get(os_arch())


def _kubectl_sha256() -> str | None:
    return os.environ.get("EGRESS_HARNESS_KUBECTL_SHA256") or KUBECTL_RELEASE_SHA256.get(os_arch())


def resolve_kubectl(*, fetch: bool, server_minor: str | None = None) -> Tool:
    """kubectl for a cluster of Kubernetes `server_minor` (default: the pinned node image's)."""
    server_minor = server_minor or DEFAULT_KUBERNETES
    env = os.environ.get("EGRESS_HARNESS_KUBECTL")
    if env:
        path = Path(env)
        if not path.exists():
            raise HarnessError(f"EGRESS_HARNESS_KUBECTL={env} does not exist: point it at a kubectl binary or unset it")
        return Tool("kubectl", kubectl_version_of(path), "EGRESS_HARNESS_KUBECTL", path)
    pinned_minor = ".".join(KUBECTL_VERSION.lstrip("v").split(".")[:2])
    if kubectl_fits(KUBECTL_VERSION, server_minor):
        for cached in (_built(programs.KUBECTL, "kubectl"), _cached("kubectl", KUBECTL_VERSION)):
            if cached is not None and cached.exists():
                return Tool("kubectl", KUBECTL_VERSION, "cache", cached)
    on_path = shutil.which("kubectl")
    path_note = ""
    if on_path:
        try:
            version = kubectl_version_of(Path(on_path))
        except HarnessError:
            version = "unusable"
        if kubectl_fits(version, server_minor):
            return Tool("kubectl", version, "PATH", Path(on_path))
        path_note = f"; {on_path} is {version}, outside ±1 minor of Kubernetes {server_minor}"
    if not kubectl_fits(KUBECTL_VERSION, server_minor):
        raise HarnessError(
            f"the cluster runs Kubernetes {server_minor} and the pinned kubectl is {pinned_minor}{path_note}: "
            f"put a kubectl {server_minor}.x on PATH or set EGRESS_HARNESS_KUBECTL"
        )
    system, arch = os_arch()
    tool = _go_or_download(
        "kubectl",
        KUBECTL_VERSION,
        _cached("kubectl", KUBECTL_VERSION),
        fetch,
        go_build=_go_build(programs.KUBECTL, "kubectl"),
        url=f"https://dl.k8s.io/release/{KUBECTL_VERSION}/bin/{system}/{arch}/kubectl",
        sha=_kubectl_sha256(),
        sha_env="EGRESS_HARNESS_KUBECTL_SHA256",
        note=path_note,
    )
    if tool.path is not None:
        tool = Tool("kubectl", kubectl_version_of(tool.path), tool.origin, tool.path, tool.fetch)
    return tool


def resolve_istioctl(istio_version: str, *, fetch: bool) -> Tool:
    """istioctl of `istio_version`, the same build the local mesh uses (harness.istio_binaries)."""
    from harness.istio_binaries import ensure_istio
    from harness.versions import resolve_release

    release = resolve_release(istio_version)
    if release.released:
        path = istio_release.istioctl_path(release.name)
        if path.exists():
            return Tool("istioctl", release.stamp, "cache (the release's archive, sha256-verified)", path)
        fetch_cmd = ("python", "-m", "harness.istio_release", release.name)
        origin = f"{istio_release.archive_url(release.name)}, checked against the .sha256 the release publishes"
        if not fetch:
            return Tool("istioctl", release.stamp, origin, None, fetch_cmd)
        return Tool("istioctl", release.stamp, "downloaded now", istio_release.fetch_istioctl(release.name))
    override = os.environ.get("EGRESS_HARNESS_ISTIO_BIN")
    path = Path(override) / "istioctl" if override else cache_root() / f"istio-{release.name}" / "bin" / "istioctl"
    if path.exists():
        return Tool("istioctl", release.stamp, "EGRESS_HARNESS_ISTIO_BIN" if override else "cache", path)
    tool = Tool(
        "istioctl",
        release.stamp,
        f"go install istio.io/istio/istioctl/cmd/istioctl@{release.module_version} ({release.provenance})",
        None,
        ("python", "-m", "harness.istio_binaries", "--istio-version", release.name),
    )
    if not fetch:
        return tool
    return Tool("istioctl", release.stamp, "cache (built now)", ensure_istio(istio_version).istioctl)


def main(argv: list[str] | None = None) -> int:
    """`python -m harness.backends.tools [--fetch]`: show (or fetch) kind, kubectl and istioctl."""
    import argparse

    from harness.versions import DEFAULT_ISTIO_VERSION

    parser = argparse.ArgumentParser(prog="python -m harness.backends.tools", description=main.__doc__)
    parser.add_argument("--fetch", action="store_true", help="fetch what is missing into the cache")
    parser.add_argument("--istio-version", default=DEFAULT_ISTIO_VERSION)
    args = parser.parse_args(argv)
    try:
        for tool in (
            resolve_kind(fetch=args.fetch),
            resolve_kubectl(fetch=args.fetch),
            resolve_istioctl(args.istio_version, fetch=args.fetch),
        ):
            print(tool.describe())
    except HarnessError as exc:
        print(f"egress-harness: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
