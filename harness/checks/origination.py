"""Seed §2's facts and named checks: TLS origination at the egress gateway (the tests, with their
negative and mutual variants, are suites/test_tls_origination.py)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from harness.checks.hop_checks import Check
from harness.trace import GATEWAY_UPSTREAM, Trace

CNN_443 = "outbound|443||edition.cnn.com"
HOST = "edition.cnn.com"  # the DestinationRule's sni and subjectAltNames (fixtures/tls-origination)
GATEWAY_CLIENT_SAN = "istio-egressgateway.istio-system.svc.cluster.local"


def upstream_cluster(upstream_port: int) -> str:
    """The gateway's cluster for the stand-in port a stage routes to (443, or 8443 for mutual TLS)."""
    return f"outbound|{upstream_port}||{HOST}"


def gateway_verifies_upstream(cluster_name: str, *, ca_file: str | None = None) -> Check:
    """The gateway's cluster `cluster_name` (edition.cnn.com:443 or :8443) itself verifies the
    stand-in: its TLS transport socket sends SNI edition.cnn.com and has a validation context with
    a trusted CA (with file trust, the very file the stage configured) and a SAN matcher for
    exactly edition.cnn.com. Read by path in the cluster's config, not by searching the dump's text."""

    def test(t: Trace) -> str | None:
        admin = t.backend.proxy_admin(t.gateway)
        dump = admin.config_dump("dynamic_active_clusters", name_regex=re.escape(cluster_name))
        # ?resource=dynamic_active_clusters: each config is one DynamicCluster, {"cluster": {...}}.
        clusters = [c.get("cluster", {}) for c in dump.get("configs") or []]
        cluster = next((c for c in clusters if c.get("name") == cluster_name), None)
        if cluster is None:
            return "the gateway has no such cluster"
        v = upstream_validation(cluster)
        t.evidence.observe(gateway_verifies=f"SNI {v.sni}, SAN {v.sans}, CA {v.ca_source}")
        if v.sni != HOST:
            return f"it sends SNI {v.sni!r}, not {HOST}"
        if v.sans != [HOST]:
            return f"it does not check exactly the stand-in's SAN {HOST} (matchers: {v.sans})"
        if not v.ca_source:
            return "it has no trusted CA"
        if ca_file and v.ca_source not in (f"file-root:{ca_file}", "inline"):
            return f"it trusts {v.ca_source}, not {ca_file}"
        return None

    return Check(f"the gateway's {cluster_name} cluster verifies the stand-in", GATEWAY_UPSTREAM, test)


@dataclass(frozen=True)
class UpstreamValidation:
    sans: list[str]  # the exact SAN matchers
    ca_source: str | None  # "inline", an SDS secret name (file-root:PATH, kubernetes://NAME), or None
    sni: str | None = None  # the server name the cluster's TLS sends


def upstream_validation(cluster: dict) -> UpstreamValidation:
    """How a cluster verifies its upstream, read at transport_socket.typed_config
    .common_tls_context: a plain validation_context, or Istio's combined form (a default context
    with the SAN matchers and an SDS secret with the CA)."""
    upstream_tls = (cluster.get("transport_socket") or {}).get("typed_config") or {}
    tls = upstream_tls.get("common_tls_context") or {}
    combined = tls.get("combined_validation_context") or {}
    context = combined.get("default_validation_context") or tls.get("validation_context") or {}
    matchers = [m.get("matcher", m) for m in context.get("match_typed_subject_alt_names", [])]
    matchers += context.get("match_subject_alt_names", [])
    sds = combined.get("validation_context_sds_secret_config") or tls.get("validation_context_sds_secret_config")
    ca_source = sds.get("name") if sds else ("inline" if context.get("trusted_ca") else None)
    return UpstreamValidation([m["exact"] for m in matchers if "exact" in m], ca_source, upstream_tls.get("sni"))
