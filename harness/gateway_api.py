"""The Gateway API's CRDs, from one pinned offline source, and what the harness knows of its kinds.

Source: the `sigs.k8s.io/gateway-api` Go module at GATEWAY_API_VERSION, the version Istio 1.31's
go.mod requires (tests/test_gateway_api.py holds the two together). The module proxy serves it,
so no GitHub download is needed; its `config/crd/<channel>/kustomization.yaml` lists each
channel's CRDs. Istio 1.31 ignores bundles below v1.5.0 (TLSRoute) and v1.6.0 (TCPRoute).

Channel: **experimental** everywhere. istio.io's egress task (Gateway API tab) writes its
TLSRoute as `gateway.networking.k8s.io/v1alpha2`, which v1.6.0 serves only in the experimental
channel (the standard channel has `served: false` for it); the standard channel is kept too, for
the negative that shows the doc's TLSRoute refused there (suites/test_gateway_api_channel.py).

The files are materialized once under `<cache_root()>/gateway-api/` by `make istio` (a rootless
run has no network to download them), one concatenated YAML per channel.
"""

from __future__ import annotations

import os
from pathlib import Path

import yaml

from harness.errors import HarnessError

GATEWAY_API_VERSION = "v1.6.0"
MODULE = "sigs.k8s.io/gateway-api"
GROUP = "gateway.networking.k8s.io"
CHANNELS = ("experimental", "standard")
CHANNEL = "experimental"  # what every backend installs (see above)
# The kinds the harness applies and reads back; istiod watches them as Istio config.
KINDS = {"Gateway", "HTTPRoute", "TLSRoute", "TCPRoute", "GRPCRoute", "ReferenceGrant", "BackendTLSPolicy"}

# What v1.6.0 serves only in the experimental channel (kind → versions; tests/test_gateway_api.py
# holds it to the two files): an object of these refused by a cluster with the standard channel is
# told so, since "no kind TLSRoute in v1alpha2" does not say that a channel is the cause.
EXPERIMENTAL_ONLY = {
    "BackendTLSPolicy": {"v1alpha3"},
    "TCPRoute": {"v1alpha2"},
    "TLSRoute": {"v1alpha2", "v1alpha3"},
    "UDPRoute": {"v1alpha2"},
    "XBackendTrafficPolicy": {"v1alpha1"},
    "XMesh": {"v1alpha1"},
}

# istiod's deployment controller labels what it deploys for a Gateway with the Gateway's name.
GATEWAY_NAME_LABEL = f"{GROUP}/gateway-name"
ISTIO_CLASS = "istio"
# The seed's sections in the Gateway API name their Gateway as istio.io's task does, in the
# application's namespace, where istiod then deploys its gateway.
SEED_GATEWAY = "cnn-egress-gateway"
SEED_NAMESPACE = "default"


def deployed_name(gateway: str) -> str:
    """The Deployment, Service and ServiceAccount istiod's deployment controller makes for a Gateway."""
    return f"{gateway}-istio"


def deployed_service_host(namespace: str, gateway: str) -> str:
    return f"{deployed_name(gateway)}.{namespace}.svc.cluster.local"


def deployed_spiffe(namespace: str, gateway: str) -> str:
    """The deployed gateway's identity: its ServiceAccount's SPIFFE ID."""
    return f"spiffe://cluster.local/ns/{namespace}/sa/{deployed_name(gateway)}"


def is_deployed_gateway(obj: dict) -> bool:
    """A Gateway of class `istio` without `spec.addresses`: istiod deploys a gateway for it."""
    spec = obj.get("spec") or {}
    return (
        is_gateway_api(obj)
        and obj.get("kind") == "Gateway"
        and spec.get("gatewayClassName") == ISTIO_CLASS
        and not spec.get("addresses")
    )


def group_of(obj: dict) -> str:
    """The API group of an object ("" for the core group)."""
    api_version = str(obj.get("apiVersion") or "")
    return api_version.split("/", 1)[0] if "/" in api_version else ""


def is_gateway_api(obj: dict) -> bool:
    return group_of(obj) == GROUP and obj.get("kind") in KINDS


def channel_hint(obj: dict) -> str:
    """For an object the API server does not serve: why, where a Gateway API channel is the cause."""
    group, _, version = str(obj.get("apiVersion", "")).rpartition("/")
    if group != GROUP or version not in EXPERIMENTAL_ONLY.get(str(obj.get("kind")), set()):
        return ""
    return (
        f"; {obj['kind']} {GROUP}/{version} is in the Gateway API's experimental channel only: install the"
        f" experimental channel's CRDs (experimental-install.yaml of {GATEWAY_API_VERSION}), not the standard one"
    )


def crd_dir() -> Path:
    from harness.cache import cache_root

    return cache_root() / "gateway-api" / GATEWAY_API_VERSION


def crd_file(channel: str = CHANNEL) -> Path:
    """The channel's CRDs as one YAML file, from the cache (ensure_crds made it)."""
    if channel not in CHANNELS:
        raise HarnessError(f"unknown Gateway API channel {channel!r}: use one of {', '.join(CHANNELS)}")
    path = crd_dir() / f"{channel}.yaml"
    if not path.exists():
        raise HarnessError(
            f"the Gateway API CRDs ({MODULE}@{GATEWAY_API_VERSION}, {channel}) are not in {path.parent}: "
            "run 'make istio' (it downloads them from the Go module proxy once)"
        )
    return path


def _module_dir() -> Path:
    from harness.istio_binaries import download_module

    path, first = download_module(MODULE, GATEWAY_API_VERSION)
    if path is None:
        raise HarnessError(f"the Go module proxy does not serve {MODULE}@{GATEWAY_API_VERSION}: {first}")
    return path


def channel_yaml(module_dir: Path, channel: str) -> str:
    """The channel's CRDs in its kustomization's order, each checked to carry the bundle version.
    Only CRDs: the experimental channel also lists a ValidatingAdmissionPolicy that guards
    upgrades between channels (`vap_safeupgrades`), which a fresh API server of one run needs not."""
    # The standard channel's list is config/crd/kustomization.yaml, the experimental one's its own.
    base = module_dir / "config" / "crd" / ("" if channel == "standard" else channel)
    kustomization = yaml.safe_load((base / "kustomization.yaml").read_text()) or {}
    docs = []
    for resource in kustomization.get("resources") or []:
        text = (base / resource).read_text()
        for doc in yaml.safe_load_all(text):
            if not doc or doc.get("kind") != "CustomResourceDefinition":
                continue
            annotations = (doc.get("metadata") or {}).get("annotations") or {}
            if annotations.get(f"{GROUP}/bundle-version") != GATEWAY_API_VERSION:
                raise HarnessError(f"{resource} in {MODULE}@{GATEWAY_API_VERSION} is not a {GATEWAY_API_VERSION} CRD")
            docs.append(yaml.safe_dump(doc, sort_keys=False))
    if not docs:
        raise HarnessError(f"{MODULE}@{GATEWAY_API_VERSION} lists no CRDs for the {channel} channel")
    return "---\n".join(docs)


def ensure_crds() -> dict[str, Path]:
    """Both channels' files in the cache, downloading the module once; {channel: path}."""
    out = {}
    module_dir: Path | None = None
    for channel in CHANNELS:
        path = crd_dir() / f"{channel}.yaml"
        if not path.exists():
            module_dir = module_dir or _module_dir()
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.name}.{os.getpid()}")
            tmp.write_text(channel_yaml(module_dir, channel))
            os.replace(tmp, path)
        out[channel] = path
    return out


def served_kinds(crd_text: str) -> dict[str, set[str]]:
    """kind → the versions a CRD file serves (what the API server will accept)."""
    served: dict[str, set[str]] = {}
    for doc in yaml.safe_load_all(crd_text):
        if doc and doc.get("kind") == "CustomResourceDefinition":
            kind = doc["spec"]["names"]["kind"]
            served[kind] = {v["name"] for v in doc["spec"]["versions"] if v.get("served", True)}
    return served


def main() -> int:
    """`make istio` runs this where the network is (a rootless run has none): both channels' files."""
    import sys

    try:
        paths = ensure_crds()
    except HarnessError as exc:
        print(f"egress-harness: error: {exc}", file=sys.stderr)
        return 2
    for channel, path in paths.items():
        print(f"Gateway API {GATEWAY_API_VERSION} {channel}: {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
