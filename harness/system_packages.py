"""The system commands each make target needs, installed on first use so that two commands suffice.

`python3 -m harness.system_packages TARGET...` (TARGET: e2e, test, kind) runs before anything else
in the Makefile, with the system Python and the standard library only (the virtualenv may not
exist yet). For each command a target needs that cannot be found, it either
- installs the Debian package that provides it (root on Debian or Ubuntu: one line saying which
  packages and why; `apt-get update` only when the package lists are missing or out of date), or
- stops with exit 2 and one line giving the exact command to run (not root, or no apt-get),
before anything has started.

Commands are looked for on PATH and in the sbin directories, which a Debian non-root login PATH
lacks although iptables and friends live there (`find_command`). The same function is what the
harness uses everywhere it starts a host command.

Go is checked the same way for the targets that build Istio, but not installed: Debian's golang-go
is older than what Istio's go.mod requires, so the line says which Go is needed and where the
harness looks.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from harness.console import say as _say

# Where Debian puts administrative commands; a non-root login PATH has none of these.
SBIN_DIRS = ("/usr/local/sbin", "/usr/sbin", "/sbin")
# Where a Go toolchain is usually installed besides PATH (the official tarball's place first).
GO_DIRS = ("/usr/local/go/bin", str(Path.home() / "go" / "bin"), str(Path.home() / "sdk" / "go" / "bin"))
# The oldest Go that builds every Istio in harness/versions.py (the go directive of release-1.31).
GO_MINIMUM = (1, 25)


@dataclass(frozen=True)
class Need:
    command: str  # what must be runnable (or a file that must exist, when it starts with /)
    package: str  # the Debian package that provides it
    why: str


_LOCAL_MESH = (
    Need("ip", "iproute2", "network namespaces for the pods"),
    Need("iptables", "iptables", "istio-iptables capture rules and NetworkPolicy"),
    Need("iptables-restore", "iptables", "istio-iptables capture rules and NetworkPolicy"),
    Need("setpriv", "util-linux", "running the proxies as uid 1337"),
    Need("unshare", "util-linux", "the mesh without root"),
    Need("sysctl", "procps", "IP forwarding in the hub's network namespace (not in a minimal Debian)"),
    Need("curl", "curl", "the client in the pods"),
    Need("openssl", "openssl", "the seed's troubleshooting step in the pods"),
    Need("/etc/ssl/certs/ca-certificates.crt", "ca-certificates", "the pods' trust store"),
)
_ROOTLESS = (
    Need("newuidmap", "uidmap", "the mesh without root (a user namespace with subordinate ids)"),
    Need("newgidmap", "uidmap", "the mesh without root (a user namespace with subordinate ids)"),
)
_IMAGES = (
    Need("dockerd", "docker.io", "building and running the container images"),
    Need("debootstrap", "debootstrap", "the images' Debian base, built without a registry"),
)

_KIND_FROM_SOURCE = (
    Need("gcc", "gcc", "the kind node's pause binary, built static from source"),
    Need("/usr/include/stdio.h", "libc6-dev", "the kind node's pause binary, built static from source"),
    Need("/usr/share/keyrings/debian-archive-keyring.gpg", "debian-archive-keyring", "debootstrap's signature check"),
)

TARGETS: dict[str, tuple[Need, ...]] = {
    "e2e": _LOCAL_MESH,
    # make test also runs the mesh as an unprivileged user, and builds the stand-in's container
    # image on a Docker engine of its own.
    "test": _LOCAL_MESH + _ROOTLESS + _IMAGES,
    "kind": _IMAGES + _KIND_FROM_SOURCE,
}
# Targets that build Istio from source with Go.
GO_TARGETS = {"e2e", "test", "kind"}


def search_path() -> list[str]:
    """PATH, then the sbin directories it lacks."""
    dirs = [d for d in os.environ.get("PATH", "").split(os.pathsep) if d]
    return dirs + [d for d in SBIN_DIRS if d not in dirs]


def find_command(name: str) -> str | None:
    """The full path of `name`, looking in the sbin directories too."""
    return shutil.which(name, path=os.pathsep.join(search_path()))


def host_path() -> str:
    """A PATH for the host commands the harness runs (ip, iptables-restore): the caller's, plus sbin."""
    return os.pathsep.join(search_path())


def _present(need: Need) -> bool:
    if need.command.startswith("/"):
        return Path(need.command).is_file()
    return find_command(need.command) is not None


def missing(targets: list[str], *, rootless: bool) -> list[Need]:
    needs: list[Need] = []
    for target in targets:
        needs += TARGETS[target]
    if rootless and "e2e" in targets:
        needs += _ROOTLESS
    seen: set[str] = set()
    out = []
    for need in needs:
        if need.command not in seen and not _present(need):
            out.append(need)
        seen.add(need.command)
    return out


def _venv_missing(python: str) -> list[Need]:
    """Debian's python3 cannot make a virtualenv without python3-venv (ensurepip)."""
    ok = subprocess.run([python, "-c", "import ensurepip, venv"], capture_output=True).returncode == 0
    return [] if ok else [Need("ensurepip", "python3-venv", "the virtualenv make creates")]


def packages_of(needs: list[Need]) -> list[str]:
    return sorted({n.package for n in needs})


def _lists_fresh() -> bool:
    """apt has package lists that know about every package we may ask for."""
    lists = Path("/var/lib/apt/lists")
    return any(lists.glob("*_Packages")) or any(lists.glob("*_Packages.lz4"))


def _apt(args: list[str]) -> subprocess.CompletedProcess:
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    return subprocess.run([str(find_command("apt-get")), *args], capture_output=True, text=True, env=env)


def install(packages: list[str]) -> None:
    """apt-get install, with `apt-get update` first only when the lists are absent, and once more
    if the install fails for want of an up-to-date list. Raises SystemExit(2) with one line."""
    if not _lists_fresh():
        _say("apt-get update (no package lists yet)")
        _apt(["update", "-qq"])
    cmd = ["install", "-y", "-qq", "--no-install-recommends", *packages]
    proc = _apt(cmd)
    if proc.returncode != 0:
        _say("apt-get update (the install needs fresher package lists)")
        _apt(["update", "-qq"])
        proc = _apt(cmd)
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise SystemExit(_fail(f"apt-get install {' '.join(packages)} failed ({last}): run it by hand and retry"))


def _fail(line: str) -> int:
    print(f"egress-harness: {line}", file=sys.stderr, flush=True)
    return 2


def go_version(go: str) -> tuple[int, int] | None:
    proc = subprocess.run([go, "version"], capture_output=True, text=True)
    m = re.search(r"go(\d+)\.(\d+)", proc.stdout)
    return (int(m.group(1)), int(m.group(2))) if m else None


def find_go() -> str | None:
    """`go` on PATH, else in the usual install places (GO_DIRS)."""
    return shutil.which("go") or shutil.which("go", path=os.pathsep.join(GO_DIRS))


def check_go() -> str | None:
    """None when a new enough Go is there; otherwise the one line that says what to do."""
    need = ".".join(map(str, GO_MINIMUM))
    where = f"on PATH and in {', '.join(GO_DIRS)}"
    go = find_go()
    if go is None:
        return (
            f"Istio's binaries are built with Go >= {need}, and no Go was found ({where}); Debian's golang-go is "
            f"too old: install Go >= {need} (the official tarball into /usr/local/go), or set "
            f"EGRESS_HARNESS_ISTIO_BIN to built binaries"
        )
    version = go_version(go)
    if version is None or version < GO_MINIMUM:
        found = ".".join(map(str, version)) if version else "an unknown version"
        return (
            f"Istio's binaries are built with Go >= {need}, and {go} is {found}: install Go >= {need} "
            f"(the official tarball into /usr/local/go), or set EGRESS_HARNESS_ISTIO_BIN to built binaries"
        )
    return None


def _istio_prebuilt() -> bool:
    return bool(os.environ.get("EGRESS_HARNESS_ISTIO_BIN"))


def ensure(targets: list[str], *, python: str = sys.executable) -> int:
    """Install or name what `targets` need; 0 when everything is there, 2 after the one line."""
    unknown = [t for t in targets if t not in TARGETS]
    if unknown or not targets:
        return _fail(f"unknown target(s) {unknown or targets}: use {', '.join(TARGETS)}")
    root = os.geteuid() == 0
    needs = _venv_missing(python) + missing(targets, rootless=not root)
    if needs:
        packages = packages_of(needs)
        reasons = "; ".join(sorted({f"{n.package}: {n.why}" for n in needs}))
        apt = find_command("apt-get")
        if root and apt:
            _say(f"installing Debian packages {' '.join(packages)} ({reasons})")
            install(packages)
            still = missing(targets, rootless=False) + _venv_missing(python)
            if still:
                return _fail(
                    f"still missing after apt-get install: {', '.join(n.command for n in still)}: "
                    f"check that {' '.join(packages_of(still))} installed them"
                )
        elif apt:
            return _fail(
                f"missing system packages ({reasons}): run 'sudo apt-get install -y {' '.join(packages)}' and retry"
            )
        else:
            commands = ", ".join(n.command for n in needs)
            return _fail(
                f"missing commands {commands} and no apt-get to install them: install them with your "
                f"system's package manager (Debian names: {' '.join(packages)}) and retry"
            )
    if GO_TARGETS & set(targets) and not _istio_prebuilt():
        line = check_go()
        if line:
            return _fail(line)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] in ("-h", "--help"):
        print(__doc__.strip().splitlines()[0])
        print(f"usage: python3 -m harness.system_packages TARGET... (targets: {', '.join(TARGETS)})")
        return 0 if args else 2
    return ensure(args)


if __name__ == "__main__":
    sys.exit(main())
