"""Mesh config every backend installs the same way, so the suites observe the same things.

- Access logs on, as JSON lines with the fields the suites assert on: Istio's default TEXT fields
  plus the TLS facts of both hops (peer URI SANs, TLS versions), which the default lacks.
- REGISTRY_ONLY outbound traffic, as the seed assumes ("by default, Istio-enabled applications
  cannot access URLs outside the cluster"): only what a ServiceEntry declares leaves the mesh, so
  TLS sent to a port declared HTTP is refused (the seed's curl exit 35) instead of passed through.
- `proxyStatsMatcher` keeps the `cluster.outbound|…|<host>` counters of every host of the sites
  table (harness/sites.py: the seed's edition.cnn.com, or a spec's hosts), which Istio's bootstrap
  hides by default: the counters the checks read on the gateway and the sidecars. Only those: all
  of `cluster.outbound|…` (the gateway's own clusters, the convergence markers) made every stats
  read of the 32 suite tests ~3 s slower in all.
"""

from __future__ import annotations

import json
import re

from harness import sites

ACCESS_LOG_FIELDS = {
    "start_time": "%START_TIME%",
    "method": "%REQ(:METHOD)%",
    "path": "%REQ(X-ENVOY-ORIGINAL-PATH?:PATH)%",
    "protocol": "%PROTOCOL%",
    "response_code": "%RESPONSE_CODE%",
    "response_flags": "%RESPONSE_FLAGS%",
    "response_code_details": "%RESPONSE_CODE_DETAILS%",
    "upstream_transport_failure_reason": "%UPSTREAM_TRANSPORT_FAILURE_REASON%",
    "bytes_received": "%BYTES_RECEIVED%",
    "bytes_sent": "%BYTES_SENT%",
    "duration": "%DURATION%",
    "authority": "%REQ(:AUTHORITY)%",
    "user_agent": "%REQ(USER-AGENT)%",
    "request_id": "%REQ(X-REQUEST-ID)%",
    "upstream_host": "%UPSTREAM_HOST%",
    "upstream_cluster": "%UPSTREAM_CLUSTER_RAW%",
    "upstream_local_address": "%UPSTREAM_LOCAL_ADDRESS%",
    "downstream_local_address": "%DOWNSTREAM_LOCAL_ADDRESS%",
    "downstream_remote_address": "%DOWNSTREAM_REMOTE_ADDRESS%",
    "requested_server_name": "%REQUESTED_SERVER_NAME%",
    "route_name": "%ROUTE_NAME%",
    "downstream_tls_version": "%DOWNSTREAM_TLS_VERSION%",
    "downstream_local_uri_san": "%DOWNSTREAM_LOCAL_URI_SAN%",
    "downstream_peer_uri_san": "%DOWNSTREAM_PEER_URI_SAN%",
    "upstream_tls_version": "%UPSTREAM_TLS_VERSION%",
    "upstream_peer_uri_san": "%UPSTREAM_PEER_URI_SAN%",
}


def stats_inclusion_regexps() -> list[str]:
    """One regex: the outbound clusters of the sites' names (a wildcard's cluster is named by it)."""
    names = sorted({n for site in sites.SITES for n in (site.name, *site.names)})
    return [r"cluster\.outbound\|\d+\|[^|]*\|(" + "|".join(re.escape(n) for n in names) + r");?\..*"]


def access_log_format() -> str:
    return json.dumps(ACCESS_LOG_FIELDS, separators=(",", ":"))


def mesh_config(discovery_address: str | None = None) -> dict:
    """The mesh config; the local mesh adds its plaintext discovery address."""
    default_config: dict = {
        "terminationDrainDuration": "0s",
        # Access-log lines reach the log within 0.1 s (pilot-agent's default is 1 s).
        "fileFlushInterval": "0.1s",
        "proxyStatsMatcher": {"inclusionRegexps": stats_inclusion_regexps()},
    }
    if discovery_address:
        default_config["discoveryAddress"] = discovery_address
        default_config["controlPlaneAuthPolicy"] = "NONE"
    return {
        "accessLogFile": "/dev/stdout",
        "accessLogEncoding": "JSON",
        "accessLogFormat": access_log_format(),
        "enableAutoMtls": True,
        "outboundTrafficPolicy": {"mode": "REGISTRY_ONLY"},
        "trustDomain": "cluster.local",
        # No istio.stats filter: upstream Envoy (local mesh) does not have it.
        "defaultProviders": {"metrics": []},
        "defaultConfig": default_config,
    }
