"""kind, kubectl and istioctl for the Kubernetes backends: pinned versions, found or fetched once.

Where each comes from, first match wins:
  1. an explicit binary: EGRESS_HARNESS_KIND / EGRESS_HARNESS_KUBECTL (istioctl: the Istio build of
     harness.istio_binaries, or EGRESS_HARNESS_ISTIO_BIN);
  2. the cache, `<cache_root()>/tools/<name>-<version>/<name>`;
  3. PATH, when its version fits (kind: exactly the pinned one; kubectl: within the Kubernetes
     version-skew policy, ±1 minor of the cluster);
  4. fetched into the cache:
     - kind:    `go install sigs.k8s.io/kind@<pin>` (the Go module proxy; Go verifies the module
                against its checksum database, sum.golang.org). Without Go: the release binary,
                verified against KIND_RELEASE_SHA256 (see below).
     - kubectl: a small main package around k8s.io/kubectl's command, built with `go build` from
                the Go module proxy (also verified by the checksum database), version-stamped.
                Without Go: the release binary from dl.k8s.io, verified against
                KUBECTL_RELEASE_SHA256.

Why `go install` first: on our machines GitHub and dl.k8s.io are unreachable, the Go module proxy
is, and Go's checksum database gives the same guarantee a pinned checksum would. The release
downloads are for machines without Go; their checksums are constants that could not be read or
checked from here (no route to the release pages): they are None until someone fills them in from
the release's published `.sha256sum`/`.sha256` files, and until then a download refuses to run
unless the checksum is given in EGRESS_HARNESS_KIND_SHA256 / EGRESS_HARNESS_KUBECTL_SHA256.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from harness.console import say as _say
from harness.errors import HarnessError, HarnessFault
from harness.istio_binaries import cache_root, refuse_build_if_forbidden

# ------------------------------------------------------------------------------------------ pins
# kind v0.33.0: the newest kind the Go module proxy serves (sigs.k8s.io/kind@v0.33.0); its default
# node image is read from its source, pkg/apis/config/defaults/image.go, and the other node images
# from the v0.33.0 release notes ("Images pre-built for this release").
KIND_MODULE = "sigs.k8s.io/kind"
KIND_VERSION = "v0.33.0"
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

# kubectl of the default node's Kubernetes version. Built from k8s.io/kubectl v0.37.0 (the
# staging module of Kubernetes v1.37.0), which the Go module proxy serves.
KUBECTL_VERSION = "v1.37.0"
KUBECTL_STAGING_VERSION = "v0.37.0"

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

_KIND_MAIN = "sigs.k8s.io/kind"
_KUBECTL_MAIN = """\
// kubectl, as k8s.io/kubernetes/cmd/kubectl/kubectl.go builds it, from the staging module.
package main

import (
\t"k8s.io/component-base/cli"
\t"k8s.io/kubectl/pkg/cmd"
\t"k8s.io/kubectl/pkg/cmd/util"
)

func main() {
\tcommand := cmd.NewDefaultKubectlCommand()
\tif err := cli.RunNoErrOutput(command); err != nil {
\t\tutil.CheckErr(err)
\t}
}
"""


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
    hub, tag = ISTIO_IMAGES.get(istio_version, (None, None))
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
    origin: str  # words: "EGRESS_HARNESS_KIND", "cache", "PATH", "go install …", "download …"
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
    go = shutil.which("go")
    system, arch = os_arch()
    tool = _go_or_download(
        "kind",
        KIND_VERSION,
        cached,
        fetch,
        go_plan=(
            go
            and (
                (go, "install", f"{KIND_MODULE}@{KIND_VERSION}"),
                f"go install {KIND_MODULE}@{KIND_VERSION} (verified by the Go checksum database) into {cached.parent}",
                lambda: _go_install_kind(go, cached.parent),
            )
        ),
        url=f"https://github.com/kubernetes-sigs/kind/releases/download/{KIND_VERSION}/kind-{system}-{arch}",
        sha=_kind_sha256(),
        sha_env="EGRESS_HARNESS_KIND_SHA256",
    )
    if tool.path is not None:
        version = kind_version_of(cached)
        if version != KIND_VERSION:
            raise HarnessError(
                f"fetched kind reports {version}, expected {KIND_VERSION}: remove {cached.parent} and retry"
            )
    return tool


def _go_or_download(
    name: str,
    version: str,
    cached: Path,
    fetch: bool,
    *,
    go_plan,
    url: str,
    sha: str | None,
    sha_env: str,
    note: str = "",
) -> Tool:
    """A tool fetched by Go when Go is there (go_plan: command shown in the plan, origin, build),
    else downloaded with its sha256 checked. Without `fetch`, only says how it would be fetched."""
    if go_plan:
        cmd, origin, build = go_plan
    else:
        cmd, origin, build = ("download", url), f"download {url} (sha256 {sha or 'NOT PINNED'}){note}", None
    if not fetch:
        return Tool(name, version, origin, None, cmd)
    if build is not None:
        build()
    else:
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
    cached = _cached("kubectl", KUBECTL_VERSION)
    pinned_minor = ".".join(KUBECTL_VERSION.lstrip("v").split(".")[:2])
    if cached.exists() and kubectl_fits(KUBECTL_VERSION, server_minor):
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
    go = shutil.which("go")
    system, arch = os_arch()
    tool = _go_or_download(
        "kubectl",
        KUBECTL_VERSION,
        cached,
        fetch,
        go_plan=(
            go
            and (
                (
                    go,
                    "get",
                    f"k8s.io/kubectl@{KUBECTL_STAGING_VERSION}",
                    f"k8s.io/component-base@{KUBECTL_STAGING_VERSION}",
                    "&&",
                    go,
                    "build",
                    "-o",
                    str(cached),
                    ".",
                    f"# in a module with kubectl's main package ({cached.parent}/src)",
                ),
                f"go build of k8s.io/kubectl@{KUBECTL_STAGING_VERSION}'s command (verified by the Go checksum "
                f"database) into {cached.parent}{path_note}",
                lambda: _go_build_kubectl(go, cached.parent),
            )
        ),
        url=f"https://dl.k8s.io/release/{KUBECTL_VERSION}/bin/{system}/{arch}/kubectl",
        sha=_kubectl_sha256(),
        sha_env="EGRESS_HARNESS_KUBECTL_SHA256",
        note=path_note,
    )
    if tool.path is not None:
        tool = Tool("kubectl", kubectl_version_of(cached), tool.origin, cached, tool.fetch)
    return tool


def resolve_istioctl(istio_version: str, *, fetch: bool) -> Tool:
    """istioctl of `istio_version`, the same build the local mesh uses (harness.istio_binaries)."""
    from harness.istio_binaries import ensure_istio
    from harness.versions import resolve_release

    release = resolve_release(istio_version)
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


# -------------------------------------------------------------------------------- fetching
def download_verified(url: str, dest: Path, sha256: str | None, env_name: str, *, timeout: float = 120.0) -> Path:
    """Download url to dest (mode 0755) only if its sha256 is the expected one. Nothing is left at
    dest when the checksum is missing or wrong."""
    if not sha256:
        raise HarnessError(
            f"no pinned sha256 for {url}: set {env_name} to the checksum from the release page "
            f"(or install Go so the harness can build it from the module proxy)"
        )
    if not re.fullmatch(r"[0-9a-f]{64}", sha256.lower()):
        raise HarnessError(f"{env_name}={sha256!r} is not a sha256 (64 hex digits): fix it")
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
                        raise HarnessError(
                            f"download of {url} answered {resp.status_code}: fetch it by hand and set {env_name.replace('_SHA256', '')}"
                        )
                    for chunk in resp.iter_bytes():
                        h.update(chunk)
                        out.write(chunk)
            except httpx.HTTPError as exc:
                raise HarnessError(
                    f"cannot download {url} ({type(exc).__name__}: {exc}): "
                    f"fetch it by hand and set {env_name.replace('_SHA256', '')}"
                ) from None
        got = h.hexdigest()
        if got != sha256.lower():
            raise HarnessError(
                f"checksum mismatch for {url}: got sha256 {got}, expected {sha256.lower()}; nothing was installed"
            )
        tmp.chmod(0o755)
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)
    return dest


def _run_go(argv: list[str], *, cwd: Path, env: dict[str, str], what: str) -> None:
    refuse_build_if_forbidden(what)
    _say(f"{what}: {' '.join(argv)}")
    proc = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        lines = [
            line
            for line in (proc.stderr + proc.stdout).splitlines()
            if line.strip() and not line.startswith("go: downloading")
        ]
        raise HarnessError(f"{what} failed: {(lines[-1] if lines else 'no output')[:300]}")


def _go_env() -> dict[str, str]:
    env = dict(os.environ, CGO_ENABLED="0")
    if env.get("GOSUMDB", "").strip() == "off" or env.get("GONOSUMCHECK"):
        raise HarnessError("GOSUMDB=off: the harness relies on Go's checksum database to verify kind/kubectl: unset it")
    return env


def _go_install_kind(go: str, bin_dir: Path) -> None:
    bin_dir.mkdir(parents=True, exist_ok=True)
    env = _go_env() | {"GOBIN": str(bin_dir)}
    _run_go(
        [go, "install", f"{KIND_MODULE}@{KIND_VERSION}"], cwd=bin_dir, env=env, what=f"building kind {KIND_VERSION}"
    )


def _go_build_kubectl(go: str, bin_dir: Path) -> None:
    bin_dir.mkdir(parents=True, exist_ok=True)
    src = bin_dir / "src"
    shutil.rmtree(src, ignore_errors=True)
    src.mkdir()
    (src / "main.go").write_text(_KUBECTL_MAIN)
    (src / "go.mod").write_text("module egress-harness.invalid/kubectl\n\ngo 1.24\n")
    env = _go_env()
    what = f"building kubectl {KUBECTL_VERSION} (a few minutes the first time)"
    _run_go(
        [go, "get", f"k8s.io/kubectl@{KUBECTL_STAGING_VERSION}", f"k8s.io/component-base@{KUBECTL_STAGING_VERSION}"],
        cwd=src,
        env=env,
        what=what,
    )
    _run_go([go, "mod", "tidy"], cwd=src, env=env, what=what)
    major, minor, _ = parse_version(KUBECTL_VERSION)
    ldflags = " ".join(
        [
            "-s",
            "-w",
            f"-X k8s.io/client-go/pkg/version.gitVersion={KUBECTL_VERSION}",
            f"-X k8s.io/component-base/version.gitVersion={KUBECTL_VERSION}",
            "-X k8s.io/client-go/pkg/version.gitTreeState=clean",
            "-X k8s.io/component-base/version.gitTreeState=clean",
            f"-X k8s.io/client-go/pkg/version.gitMajor={major}",
            f"-X k8s.io/client-go/pkg/version.gitMinor={minor}",
            f"-X k8s.io/component-base/version.gitMajor={major}",
            f"-X k8s.io/component-base/version.gitMinor={minor}",
        ]
    )
    _run_go(
        [go, "build", "-trimpath", "-ldflags", ldflags, "-o", str(bin_dir / "kubectl"), "."],
        cwd=src,
        env=env,
        what=what,
    )


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
