"""How every backend tells that all proxies run the config containing a change (no sleeps).

After a change, istiod's /debug/configz must first hold every applied object at the
resourceVersion the API server stored (or newer) and none of the deleted ones (expected_config
says why). Then a marker ServiceEntry with a new host (`sync-<generation>.egress-harness.invalid`)
is applied. A ServiceEntry change reaches every proxy (sidecars and the gateway get every
cluster), and a push that carries the marker is computed from istiod's store, which by then holds
the change: a proxy that has the marker's cluster runs config that contains it. Then istiod's
/debug/syncz must show every xDS type of every proxy acknowledged (sent nonce == acked nonce) and
no new NACK. A NACK fails at once with Envoy's own message.

The marker arrives in the push's clusters, which istiod sends first (CDS, EDS, LDS, RDS: PushOrder
in pilot/pkg/xds/ads.go); a proxy can hold it while the same push's listeners and routes are still
being generated, and syncz then shows the previous (acked) ones: a change merged into the marker's
push (istiod's debounce) would pass unseen. So the listeners and routes must have been sent in the
marker's push or later (push_tail_unsent; istiod's nonce carries the push's number). Where they
were not (nothing to send: a gateway without any Gateway has no listeners), a second marker is the
barrier: istiod pushes to one connection in order, so a proxy holding it has received all of the
first push.
"""

from __future__ import annotations

import re

from harness.errors import ConfigRejected

MARKER_NAME = "egress-harness-sync"
MARKER_DOMAIN = "egress-harness.invalid"
ISTIO_KINDS = {
    "ServiceEntry",
    "Gateway",
    "VirtualService",
    "DestinationRule",
    "Sidecar",
    "PeerAuthentication",
    "AuthorizationPolicy",
    "WorkloadEntry",
    "EnvoyFilter",
    "Telemetry",
}


def is_istio_config(obj: dict) -> bool:
    """An Istio API object (networking/security/telemetry.istio.io): a Gateway API `Gateway`
    shares the kind name, so the group decides."""
    api_version = str(obj.get("apiVersion") or "")
    return obj.get("kind") in ISTIO_KINDS and api_version.split("/", 1)[0].endswith("istio.io")


def is_mesh_config(obj: dict) -> bool:
    """What istiod turns into proxy config: Istio's APIs and the Gateway API."""
    from harness.gateway_api import is_gateway_api

    return is_istio_config(obj) or is_gateway_api(obj)


SyncState = dict[tuple[str, str], tuple[str | None, str | None]]
ConfigKey = tuple[str, str, str]  # group/kind, namespace, name


def config_key(obj: dict) -> ConfigKey:
    """An object's identity in istiod's store: a Gateway API Gateway and an Istio Gateway may
    share namespace and name, so the kind is qualified by its group."""
    meta = obj.get("metadata") or {}
    group = str(obj.get("apiVersion") or "").rsplit("/", 1)[0] if "/" in str(obj.get("apiVersion") or "") else ""
    return f"{group}/{obj.get('kind', '')}", meta.get("namespace", ""), meta.get("name", "")


def expected_config(present: list[dict], absent: list[dict]) -> tuple[dict[ConfigKey, str | None], set[ConfigKey]]:
    """What istiod must hold before the marker is written: each applied object at the
    resourceVersion the API server stored it with (None: any), and none of the deleted ones.

    Why: istiod watches each kind with its own informer, so the marker (a ServiceEntry) can reach
    istiod's store before a VirtualService written just before it, and a push triggered then
    carries the marker without the change; once istiod holds the change, any push that carries
    the marker was computed from a store holding it. And why the resourceVersion: a test's
    cleanup deletes objects that the next test creates again under the same names; by name
    alone, istiod still holding the old ones would pass."""
    want = {config_key(o): (o.get("metadata") or {}).get("resourceVersion") for o in present}
    return want, {config_key(o) for o in absent} - set(want)


def _at_least(held: str | None, stored: str | None) -> bool:
    """Whether istiod's copy is the stored one or newer. istiod itself writes status to some
    objects (a ServiceEntry's allocated addresses), which moves their resourceVersion on; the API
    server's resourceVersions are comparable integers (etcd revisions; comparable by contract
    since Kubernetes 1.34), and anything else must match exactly."""
    if stored is None:
        return True
    if held is None:
        return False
    if held.isdigit() and stored.isdigit():
        return int(held) >= int(stored)
    return held == stored


def config_differs(configz: list[dict], want: dict[ConfigKey, str | None], gone: set[ConfigKey]) -> tuple[set, set]:
    """(still missing or older than stored, still present), from istiod's /debug/configz."""
    held = {config_key(c): (c.get("metadata") or {}).get("resourceVersion") for c in configz}
    missing = {key for key, rv in want.items() if key not in held or not _at_least(held[key], rv)}
    return missing, gone & set(held)


def marker_service_entry(generation: int | str) -> dict:
    return {
        "apiVersion": "networking.istio.io/v1",
        "kind": "ServiceEntry",
        "metadata": {"name": MARKER_NAME, "namespace": "istio-system"},
        "spec": {
            "hosts": [f"sync-{generation}.{MARKER_DOMAIN}"],
            "location": "MESH_INTERNAL",
            "resolution": "STATIC",
            "ports": [{"number": 9, "name": "tcp-sync", "protocol": "TCP"}],
            "endpoints": [{"address": "198.18.255.254"}],
        },
    }


def marker_cluster(generation: int | str) -> str:
    return f"outbound|9||sync-{generation}.{MARKER_DOMAIN}"


def marker_cluster_regex(generation: int | str) -> str:
    """For config_dump's name_regex, which must match the whole name."""
    return "^" + re.escape(marker_cluster(generation)) + "$"


CLUSTER_TYPE = "type.googleapis.com/envoy.config.cluster.v3.Cluster"
# What istiod sends after the clusters in one push, and a request's path depends on.
TAIL_TYPES = (
    "type.googleapis.com/envoy.config.listener.v3.Listener",
    "type.googleapis.com/envoy.config.route.v3.RouteConfiguration",
)
_UUID_LENGTH = 36


def push_number(nonce: str | None) -> int | None:
    """The push a nonce was sent in: istiod's nonce is the push version (`<RFC 3339 time>/<n>`,
    DiscoveryServer.NextVersion) followed by a UUID (nonce() in pilot/pkg/xds/discovery.go).
    None for anything else (never sent, or another control plane's format)."""
    if not nonce or len(nonce) <= _UUID_LENGTH:
        return None
    _, slash, number = nonce[:-_UUID_LENGTH].rpartition("/")
    return int(number) if slash and number.isdigit() else None


def push_tail_unsent(statuses: list[dict]) -> list[str]:
    """Each proxy's listener and route types not sent in the push of its latest clusters or
    later: still being generated, or left unsent by istiod (nothing to send). Either way a proxy
    holding the marker's cluster is not yet known to hold the rest of that push."""
    out = []
    for status in statuses:
        resources = status.get("resources") or {}
        clusters = push_number((resources.get(CLUSTER_TYPE) or {}).get("sent"))
        for type_url in TAIL_TYPES:
            if type_url not in resources:  # not watched: nothing of this type to wait for
                continue
            sent = push_number(resources[type_url].get("sent"))
            if clusters is None or sent is None or sent < clusters:
                short = type_url.rsplit(".", 1)[-1]
                out.append(f"{status.get('proxy', '?')} {short} sent in push {sent}, clusters in push {clusters}")
    return out


def sync_state(statuses: list[dict]) -> SyncState:
    """(proxy, type) → (sent nonce, last error), from /debug/syncz: taken before a change."""
    return {
        (status.get("proxy", "?"), type_url): (res.get("sent"), res.get("lastError"))
        for status in statuses
        for type_url, res in (status.get("resources") or {}).items()
    }


def pending_from_syncz(statuses: list[dict], before: SyncState | None = None) -> list[str]:
    """What istiod still has in flight. Raises ConfigRejected on a NACK that is new since
    `before`: an earlier rejection stays in syncz until the proxy ACKs something newer (the same
    error again keeps the type pending, and the wait's deadline reports it)."""
    before = before or {}
    pending: list[str] = []
    for status in statuses:
        proxy = status.get("proxy", "?")
        for type_url, res in (status.get("resources") or {}).items():
            short = type_url.rsplit(".", 1)[-1]
            error = res.get("lastError") or res.get("last_error")
            _, old_error = before.get((proxy, type_url), (None, None))
            if error and error != old_error:
                raise ConfigRejected(f"[hop: istiod → {proxy}] Envoy rejected {short}: {error}")
            if res.get("sent") != res.get("acked") or error:
                pending.append(
                    f"{proxy} {short} sent={res.get('sent')} acked={res.get('acked')}"
                    + (f" last error: {error}" if error else "")
                )
    return pending
