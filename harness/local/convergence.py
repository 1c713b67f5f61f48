"""Convergence on the local mesh: the marker and syncz check of harness/sync.py, with istiod's
loaded config (/debug/configz) checked first and each proxy's admin API read directly.

Every read of istiod's debug endpoints is retried until the wait's deadline (a paused or busy
istiod answers late: harness/local/istiod.py read_debug); istiod silent until then is a
control-plane HopFailure naming the endpoint, istiod gone a HarnessFault."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from harness.converge import converge, snapshot
from harness.errors import ProcessExited

if TYPE_CHECKING:
    from harness.local.mesh import LocalMesh


DEFAULT_TIMEOUT = 15.0


class Convergence:
    """The local mesh as a harness/converge.py target: istiod's debug endpoints and each proxy's
    admin API read directly (a millisecond a read, so polled every 20 ms)."""

    poll_interval = 0.02

    def __init__(self, mesh: LocalMesh):
        self.mesh = mesh
        self.generation = 0
        self.last_seconds = 0.0
        self.last_barrier = ""

    def snapshot(self, timeout: float = DEFAULT_TIMEOUT) -> dict:
        """istiod's sync state before a change: a NACK counts only if it is new, since an earlier
        rejection stays in syncz until the proxy ACKs something newer (the same error again
        still fails, at the deadline, with its message)."""
        return snapshot(self, timeout)

    def wait(
        self,
        *,
        present: Sequence[dict] = (),
        absent: Sequence[dict] = (),
        before: dict | None = None,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> float:
        """harness/converge.py's wait on the local mesh; the seconds it took."""
        self.generation += 1
        self.last_seconds, self.last_barrier = converge(
            self, self.generation, present=present, absent=absent, before=before, timeout=timeout
        )
        return self.last_seconds

    # ------------------------------------------------ ConvergenceTarget
    def configz(self, deadline: float) -> list[dict]:
        return self.mesh.running_istiod.configz(deadline)

    def syncz(self, deadline: float) -> list[dict]:
        return self.mesh.running_istiod.syncz(deadline)

    def apply_marker(self, marker: dict) -> None:
        self.mesh.registry.api.apply([marker])  # the harness's own: not in manifests-applied

    def proxy_names(self) -> list[str]:
        return [f"{p.spec.namespace}/{p.spec.pod_name}" for p in self.mesh.proxies()]

    def has_cluster(self, proxy: str, name_regex: str) -> bool:
        found = [p for p in self.mesh.proxies() if f"{p.spec.namespace}/{p.spec.pod_name}" == proxy]
        if not found:  # removed since the wait began (a deleted Gateway's deployed pod): nothing to wait for
            return True
        return bool(found[0].admin.config_dump("dynamic_active_clusters", name_regex=name_regex).get("configs"))

    def istiod_exited(self) -> None:
        istiod = self.mesh.running_istiod
        if not istiod.process.alive():
            raise ProcessExited(istiod.process.exit_line("istiod"))

    def istiod_complaints(self) -> str:
        tail = self.mesh.running_istiod.process.log_tail(400).splitlines()
        return " | ".join([line for line in tail if "\terror\t" in line or "\twarn\t" in line][-5:])
