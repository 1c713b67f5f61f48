"""One convergence wait for every backend: after an apply or delete, until every proxy runs the
config (harness/sync.py says what each signal means).

1. istiod holds `present` as the API server stored them (by resourceVersion) and not `absent`
   (`/debug/configz`);
2. a new marker ServiceEntry is applied, and every proxy gets its cluster (so its config contains
   the change);
   and, where syncz does not show that proxy's listeners and routes sent in that push or later,
   a second marker (the barrier harness/sync.py explains);
3. istiod's `/debug/syncz` shows every xDS type ACKed by every proxy (a NACK newer than `before`
   fails at once with Envoy's message).

Every timeout is a control-plane `HopFailure` (`istiod → proxy`): the objects were stored, so
istiod cannot refuse them, and a proxy that never takes the marker is the mesh's fault. A dead
istiod is the target's to say (`istiod_exited`), as a harness fault. Each backend implements the
small `ConvergenceTarget` interface: the local mesh reads istiod and the admin APIs directly, kind
and a cluster over port-forwards.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import NamedTuple, Protocol

from harness.errors import HopFailure
from harness.sync import (
    config_differs,
    expected_config,
    marker_cluster,
    marker_cluster_regex,
    marker_service_entry,
    pending_from_syncz,
    push_tail_unsent,
    sync_state,
)
from harness.trace import CONTROL_PLANE
from harness.wait import WaitTimeout, poll


class ConvergenceTarget(Protocol):
    # How often to poll: a local read costs a millisecond, one over a port-forward more.
    poll_interval: float

    def configz(self, deadline: float) -> list[dict]: ...

    def syncz(self, deadline: float) -> list[dict]: ...

    def apply_marker(self, marker: dict) -> None: ...

    def proxy_names(self) -> list[str]: ...

    def has_cluster(self, proxy: str, name_regex: str) -> bool: ...

    def istiod_exited(self) -> None:
        """Raise the harness fault that says istiod died, if it did."""

    def istiod_complaints(self) -> str:
        """istiod's recent errors and warnings, for a timeout's message ("" when unknown)."""


def snapshot(target: ConvergenceTarget, timeout: float) -> dict:
    """istiod's sync state before a change: a NACK counts only if it is newer than this."""
    return sync_state(target.syncz(time.monotonic() + timeout))


class Converged(NamedTuple):
    seconds: float
    barrier: str  # why the barrier marker was needed ("" when it was not): push_tail_unsent's lines


def _left(deadline: float) -> float:
    return max(0.1, deadline - time.monotonic())


def converge(
    target: ConvergenceTarget,
    generation: int,
    *,
    present: Sequence[dict] = (),
    absent: Sequence[dict] = (),
    before: dict | None = None,
    timeout: float,
) -> Converged:
    """Wait for the three signals above."""
    started = time.monotonic()
    deadline = started + timeout
    if before is None:
        before = sync_state(target.syncz(deadline))
    want, gone = expected_config(list(present), list(absent))
    if want or gone:
        try:
            poll(
                f"istiod to load {sorted(want)} (as stored) and drop {sorted(gone)}",
                lambda: config_differs(target.configz(deadline), want, gone),
                ok=lambda d: not d[0] and not d[1],
                timeout=_left(deadline),
                interval=target.poll_interval,
                describe=lambda d: f"still missing {sorted(d[0])}, still present {sorted(d[1])}",
            )
        except WaitTimeout as exc:
            target.istiod_exited()
            complaints = target.istiod_complaints()
            raise HopFailure(CONTROL_PLANE, f"{exc}; istiod's recent errors: {complaints or 'none'}") from None

    _await_marker(target, generation, before, deadline)
    barrier = "; ".join(push_tail_unsent(target.syncz(deadline)))
    if barrier:  # the marker's push not known whole in some proxy: a second marker is the barrier
        _await_marker(target, f"{generation}b", before, deadline, why=barrier)

    try:
        poll(
            "every proxy to ACK every xDS type (istiod /debug/syncz)",
            lambda: pending_from_syncz(target.syncz(deadline), before),
            ok=lambda u: not u,
            timeout=_left(deadline),
            interval=target.poll_interval,
            describe=lambda u: "; ".join(u),
        )
    except WaitTimeout as exc:
        target.istiod_exited()
        raise HopFailure(CONTROL_PLANE, str(exc)) from None
    return Converged(time.monotonic() - started, barrier)


def _await_marker(
    target: ConvergenceTarget,
    generation: int | str,
    before: dict,
    deadline: float,
    *,
    why: str = "",
) -> None:
    """Apply the marker of `generation` and wait until every proxy has its cluster."""
    target.apply_marker(marker_service_entry(generation))
    cluster, regex = marker_cluster(generation), marker_cluster_regex(generation)
    reason = f" (a barrier: {why})" if why else ""
    for proxy in target.proxy_names():

        def has_marker(proxy: str = proxy) -> bool:  # bound as a default: poll() runs it now
            pending_from_syncz(target.syncz(deadline), before)  # a new NACK fails at once
            return target.has_cluster(proxy, regex)

        try:
            poll(
                f"{proxy} to accept config generation {generation} (cluster {cluster}){reason}",
                has_marker,
                timeout=_left(deadline),
                interval=target.poll_interval,
            )
        except WaitTimeout as exc:
            target.istiod_exited()
            raise HopFailure(CONTROL_PLANE, str(exc)) from None


class ClusterStatuses(Protocol):
    """What endpoints_missing reads of a sidecar: Envoy's /clusters?format=json and its warming
    clusters in /config_dump (EnvoyAdmin)."""

    def clusters_json(self) -> dict: ...

    def config_dump(self, resource: str | None = None, *, mask: str | None = None) -> dict: ...


def endpoints_missing(sidecars: Sequence[tuple[str, ClusterStatuses]], wanted: Sequence[tuple[str, str]]) -> list[str]:
    """For each (name, EnvoyAdmin) sidecar, every (service host, pod address) of `wanted` that is not
    a healthy endpoint of each of the sidecar's clusters of that host (one cluster per Service
    port: all of them). A deployed gateway's pod reaches the sidecars by the EndpointSlice
    controller and istiod's endpoint informer, neither of which the marker waits for."""
    out = []
    for name, admin in sidecars:
        clusters: dict[str, set[str]] = {}
        for c in admin.clusters_json().get("cluster_statuses", []):
            if any(c.get("name", "").endswith(f"|{host}") for host, _ in wanted):
                clusters[c["name"]] = {
                    ((h.get("address") or {}).get("socket_address") or {}).get("address", "")
                    for h in c.get("host_statuses", [])
                    if (h.get("health_status") or {}).get("eds_health_status", "HEALTHY") == "HEALTHY"
                }
        for host, address in wanted:
            mine = {cluster: hosts for cluster, hosts in clusters.items() if cluster.endswith(f"|{host}")}
            lacking = [cluster for cluster, hosts in mine.items() if address not in hosts] or ([] if mine else [host])
            out += [f"{name}: {address} in {cluster}" for cluster in lacking]
        # A cluster istiod sent again (a full push re-sends it) warms until its endpoints arrive;
        # /clusters shows the active one meanwhile, which may be swapped for the new one between
        # this read and the first request (seen on kind: 503 UH from the sidecar). Done is: none warms.
        warming = admin.config_dump("dynamic_warming_clusters", mask="cluster.name").get("configs") or []
        names = [(c.get("cluster") or {}).get("name", "") for c in warming]
        out += [f"{name}: {n} still warming" for n in names if any(n.endswith(f"|{host}") for host, _ in wanted)]
    return out


def wait_endpoints(
    sidecars: Sequence[tuple[str, ClusterStatuses]], wanted: Sequence[tuple[str, str]], timeout: float
) -> None:
    """Until endpoints_missing() is empty; a timeout is the control plane's (the objects are
    stored: not distributing them is the mesh's fault)."""
    if not wanted:
        return
    try:
        poll(
            "each sidecar to have the deployed gateway's pod as an endpoint (EndpointSlice → istiod → EDS)",
            lambda: endpoints_missing(sidecars, wanted),
            ok=lambda m: not m,
            timeout=timeout,
            interval=0.05,
            describe=lambda m: f"missing: {'; '.join(m)}",
        )
    except WaitTimeout as exc:
        raise HopFailure(CONTROL_PLANE, str(exc), one_line=True) from None
