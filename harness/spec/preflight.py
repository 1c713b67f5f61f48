"""What a spec's checks can verify on a mesh whose config the harness did not choose (BACKEND=cluster).

The harness installs the local mesh and kind with the mesh config of harness/meshconfig.py: JSON
access logs with the fields the checks read, and every `cluster.outbound|…` counter kept. An
existing cluster has its own: this reads it and says, one line per gap, what cannot be verified
there (the clauses that read access logs, a host's counters); those clauses are then left out of
the expectations and named in each test's evidence, instead of failing as mesh failures.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

from harness.meshconfig import ACCESS_LOG_FIELDS
from harness.spec.model import Spec

# The access-log fields the spec's checks read (harness/spec/checks.py).
NEEDED_FIELDS = (
    "upstream_cluster",
    "authority",
    "requested_server_name",
    "response_code",
    "response_code_details",
    "route_name",
    "upstream_tls_version",
    "downstream_peer_uri_san",
    "upstream_peer_uri_san",
)
ACCESS_LOG = "access-log"  # the clauses that read access logs: via, direct, hop_mtls, tls_by, refused


def counters_clause(host: str) -> str:
    return f"counters:{host}"


@dataclass
class Gaps:
    lines: list[str] = field(default_factory=list)
    unverifiable: set[str] = field(default_factory=set)

    def allows(self, clause: str) -> bool:
        return clause not in self.unverifiable


def mesh_gaps(mesh_config: dict, spec: Spec) -> Gaps:
    """The gaps between `mesh_config` (the `mesh` key of istio-system/istio, parsed) and what the
    spec's expectations check."""
    gaps = Gaps()
    log_file = mesh_config.get("accessLogFile") or ""
    encoding = mesh_config.get("accessLogEncoding") or "TEXT"
    missing: list[str] = []
    if not log_file:
        gaps.lines.append(
            "access logs are off (meshConfig.accessLogFile is empty): via, direct, hop_mtls, tls_by and refusals cannot be verified"
        )
    elif encoding != "JSON":
        gaps.lines.append(
            f"access logs are {encoding}, not JSON (meshConfig.accessLogEncoding): the clauses that read them cannot be verified"
        )
    else:
        fmt = mesh_config.get("accessLogFormat") or ""
        try:
            fields = set(json.loads(fmt)) if fmt else set()
        except ValueError:
            fields = set()
        missing = [f for f in NEEDED_FIELDS if f not in fields]
        if missing:
            gaps.lines.append(
                "the access-log format lacks "
                + ", ".join(missing)
                + " (harness/meshconfig.py has the format the checks read): "
                "the clauses that read access logs cannot be verified"
            )
    if gaps.lines:
        gaps.unverifiable.add(ACCESS_LOG)
    matcher = ((mesh_config.get("defaultConfig") or {}).get("proxyStatsMatcher")) or {}
    for host in {e.host.name for e in spec.expectations if e.counters}:
        stat = f"cluster.outbound|443||{host}.upstream_rq_total"
        if not _kept(matcher, stat):
            gaps.unverifiable.add(counters_clause(host))
            gaps.lines.append(
                f"{host}'s counters are not kept (meshConfig.defaultConfig.proxyStatsMatcher has no inclusion matching {stat}): `counters: grow` cannot be verified"
            )
    return gaps


def _kept(matcher: dict, stat: str) -> bool:
    if any(stat.startswith(p) for p in matcher.get("inclusionPrefixes") or []):
        return True
    if any(stat.endswith(s) for s in matcher.get("inclusionSuffixes") or []):
        return True
    for pattern in matcher.get("inclusionRegexps") or []:
        try:
            if re.fullmatch(pattern, stat):
                return True
        except re.error:
            continue
    return False


def our_fields_are_enough() -> bool:
    """The harness's own format carries every field the checks read (a unit test holds it)."""
    return all(f in ACCESS_LOG_FIELDS for f in NEEDED_FIELDS)
