"""Reading Istio cluster counters whatever the Istio version names them.

Since Istio 1.23 (istio/istio#51861) every cluster's alt_stat_name ends in ";", so the seed's
`cluster.outbound|443||edition.cnn.com.upstream_cx_total` reads
`cluster.outbound|443||edition.cnn.com;.upstream_cx_total` in /stats. Both forms are accepted.
"""

from __future__ import annotations

import re

from harness.envoy_admin import EnvoyAdmin


def cluster_stat_regex(cluster: str, stat: str) -> str:
    return rf"^cluster\.{re.escape(cluster)};?\.{re.escape(stat)}$"


def cluster_counter(admin: EnvoyAdmin, cluster: str, stat: str) -> int:
    """The counter's value; 0 when Envoy has not created it yet (it does so on first use)."""
    values = admin.stats(cluster_stat_regex(cluster, stat))
    return sum(values.values())


def seed_name(cluster: str, stat: str) -> str:
    return f"cluster.{cluster}.{stat}"
