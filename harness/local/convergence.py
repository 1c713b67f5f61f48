"""Convergence on the local mesh: the marker and syncz check of harness/sync.py, with istiod's
loaded config (/debug/configz) checked first and each proxy's admin API read directly.

Every read of istiod's debug endpoints is retried until the wait's deadline (a paused or busy
istiod answers late: harness/local/istiod.py read_debug); istiod silent until then is a
control-plane HopFailure naming the endpoint, istiod gone a HarnessFault."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

from harness.errors import HopFailure, ProcessExited
from harness.sync import (
    config_differs,
    expected_config,
    marker_cluster,
    marker_cluster_regex,
    marker_service_entry,
    pending_from_syncz,
    sync_state,
)
from harness.trace import CONTROL_PLANE
from harness.wait import WaitTimeout, poll

if TYPE_CHECKING:
    from harness.local.mesh import LocalMesh
    from harness.local.proxy import IstioProxy


DEFAULT_TIMEOUT = 15.0


class Convergence:
    def __init__(self, mesh: LocalMesh):
        self.mesh = mesh
        self.generation = 0
        self.last_seconds = 0.0

    def snapshot(self, timeout: float = DEFAULT_TIMEOUT) -> dict:
        """istiod's sync state before a change: a NACK counts only if it is new, since an earlier
        rejection stays in syncz until the proxy ACKs something newer (the same error again
        still fails, at the deadline, with its message)."""
        return self._sync_state(time.monotonic() + timeout)

    def wait(
        self,
        *,
        present: Sequence[dict] = (),
        absent: Sequence[dict] = (),
        before: dict | None = None,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> float:
        """Wait until istiod holds `present` (as the API server stored them) and not `absent`
        (harness/sync.py expected_config says why), then write the marker, and wait until every
        proxy has ACKed config generated after that. Returns the seconds it took."""
        mesh = self.mesh
        istiod = mesh.running_istiod
        self.generation += 1
        gen = self.generation
        started = time.monotonic()
        deadline = started + timeout

        def left() -> float:
            return max(0.1, deadline - time.monotonic())

        self._before = before if before is not None else self._sync_state(deadline)
        want, gone = expected_config(list(present), list(absent))

        def istiod_differs() -> tuple[set, set]:
            return config_differs(istiod.configz(deadline), want, gone)

        try:
            poll(
                f"istiod to load {sorted(want)} (as stored) and drop {sorted(gone)}",
                istiod_differs,
                ok=lambda d: not d[0] and not d[1],
                timeout=left(),
                describe=lambda d: f"still missing {sorted(d[0])}, still present {sorted(d[1])}",
            )
        except WaitTimeout as exc:
            # The API server stored the objects, so istiod cannot refuse them: it is lagging or
            # gone. Its recent complaints go next to the timeout.
            if not istiod.process.alive():
                raise ProcessExited(istiod.process.exit_line("istiod")) from None
            errors = [
                line for line in istiod.process.log_tail(400).splitlines() if "\terror\t" in line or "\twarn\t" in line
            ][-5:]
            raise HopFailure(CONTROL_PLANE, f"{exc}; istiod's recent errors: {' | '.join(errors) or 'none'}") from None

        mesh.registry.api.apply([marker_service_entry(gen)])  # the harness's own: not in manifests-applied
        cluster = marker_cluster(gen)
        for proxy in mesh.proxies():

            def has_marker(
                proxy: IstioProxy = proxy,
            ) -> bool:  # bound as a default: ruff B023 cannot see poll() runs it now
                pending_from_syncz(istiod.syncz(deadline), self._before)
                dump = proxy.admin.config_dump("dynamic_active_clusters", name_regex=marker_cluster_regex(gen))
                return bool(dump.get("configs"))

            try:
                poll(
                    f"{proxy.spec.namespace}/{proxy.spec.pod_name} to accept config generation {gen} (cluster {cluster})",
                    has_marker,
                    timeout=left(),
                    interval=0.02,
                )
            except WaitTimeout as exc:
                raise HopFailure(CONTROL_PLANE, str(exc)) from None

        def unsynced() -> list[str]:
            return pending_from_syncz(istiod.syncz(deadline), self._before)

        try:
            poll(
                "every proxy to ACK every xDS type (istiod /debug/syncz)",
                unsynced,
                ok=lambda u: not u,
                timeout=left(),
                interval=0.02,
                describe=lambda u: "; ".join(u),
            )
        except WaitTimeout as exc:
            raise HopFailure(CONTROL_PLANE, str(exc)) from None
        self.last_seconds = time.monotonic() - started
        return self.last_seconds

    def _sync_state(self, deadline: float):
        return sync_state(self.mesh.running_istiod.syncz(deadline))
