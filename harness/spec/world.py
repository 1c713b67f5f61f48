"""What a spec puts into the mesh before it starts: its sources as rows of the pod table (every
backend makes its pods from that table) and its hosts as the stand-in's sites (names resolved in
every pod, a certificate per host, the ports it serves)."""

from __future__ import annotations

from harness import pod_table, sites
from harness.pod_table import PodSpec
from harness.spec.model import Spec
from harness.stand_in import FIXED_LISTENERS

# The container the spec's commands run in on Kubernetes (the sleep image: curl, openssl, sh).
SOURCE_CONTAINER = "app"


def source_pods(spec: Spec) -> list[PodSpec]:
    return [
        PodSpec(
            s.namespace,
            s.name,
            s.service_account,
            "sidecar" if s.sidecar else None,
            SOURCE_CONTAINER,
            dict(s.labels),
            workload=s.name,
        )
        for s in spec.sources.values()
    ]


def spec_sites(spec: Spec) -> list[sites.Site]:
    out = []
    for host in spec.hosts:
        ports = {p: host.stand_in_protocol(p) for p in host.ports}
        extra = {p: proto for p, proto in ports.items() if FIXED_LISTENERS.get(p) != proto}
        out.append(sites.Site(host.name, host.names, host.certificate, extra))
    return out


def install(spec: Spec) -> None:
    """The spec's pods and hosts instead of the seed's, before any backend starts."""
    pod_table.use(source_pods(spec))
    sites.use(spec_sites(spec))
