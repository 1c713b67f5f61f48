"""Waiting until every proxy runs the config that contains a change: no sleeps.

After the manifests are written, a marker ServiceEntry with a new host is written too
(`sync-<generation>.egress-harness.invalid`). A ServiceEntry change reaches every proxy (sidecars
and the gateway all get every cluster), and istiod reads the directory as a whole, so a proxy that
has the marker's cluster runs config generated from a push context that also holds the change.
Then istiod's /debug/syncz must show every xDS type of every proxy acknowledged (sent nonce ==
acked nonce) and no NACK. A NACK fails at once with Envoy's own message and the resource.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from harness.wait import WaitTimeout, poll

if TYPE_CHECKING:
    from harness.local.mesh import LocalMesh

MARKER_NAME = "egress-harness-sync"
MARKER_DOMAIN = "egress-harness.invalid"


class ConfigRejected(AssertionError):
    """A proxy NACKed the config istiod sent (Envoy's message included)."""


def marker_service_entry(generation: int) -> dict:
    return {
        "apiVersion": "networking.istio.io/v1", "kind": "ServiceEntry",
        "metadata": {"name": MARKER_NAME, "namespace": "istio-system"},
        "spec": {
            "hosts": [f"sync-{generation}.{MARKER_DOMAIN}"],
            "location": "MESH_INTERNAL", "resolution": "STATIC",
            "ports": [{"number": 9, "name": "tcp-sync", "protocol": "TCP"}],
            "endpoints": [{"address": "198.18.255.254"}],
        },
    }


def marker_cluster(generation: int) -> str:
    return f"outbound|9||sync-{generation}.{MARKER_DOMAIN}"


def _config_key(obj: dict) -> tuple[str, str, str]:
    meta = obj.get("metadata") or {}
    return obj.get("kind", ""), meta.get("namespace", ""), meta.get("name", "")


class Convergence:
    def __init__(self, mesh: "LocalMesh"):
        self.mesh = mesh
        self.generation = 0
        self.last_seconds = 0.0

    def snapshot(self) -> dict:
        """istiod's sync state before a change: a NACK counts only if it is new, since an earlier
        rejection stays in syncz until the proxy ACKs something newer (the same error again
        still fails, at the deadline, with its message)."""
        return self._sync_state()

    def wait(self, *, present: list[dict] = (), absent: list[dict] = (), before: dict | None = None,
             timeout: float = 15.0) -> float:
        """Wait until istiod holds `present` and not `absent`, and every proxy has ACKed config
        generated after that. Returns the seconds it took."""
        mesh = self.mesh
        self.generation += 1
        gen = self.generation
        started = time.monotonic()
        self._before = before if before is not None else self._sync_state()
        mesh.manifests.write(marker_service_entry(gen))
        want = {_config_key(o) for o in present}
        gone = {_config_key(o) for o in absent} - want

        def istiod_differs() -> tuple[set, set]:
            keys = set()
            for c in mesh.istiod.configz():
                meta = c.get("metadata") or {}
                keys.add((c.get("kind", ""), meta.get("namespace", ""), meta.get("name", "")))
            return want - keys, gone & keys

        poll(f"istiod to load {sorted(want)} and drop {sorted(gone)}", istiod_differs,
             ok=lambda d: not d[0] and not d[1], timeout=timeout,
             describe=lambda d: f"still missing {sorted(d[0])}, still present {sorted(d[1])}")

        cluster = marker_cluster(gen)
        for proxy in mesh.proxies():
            def has_marker() -> bool:
                self._raise_on_nack()
                dump = proxy.admin.config_dump("dynamic_active_clusters", name_regex=f"^{_re(cluster)}$")
                return bool(dump.get("configs"))

            poll(f"{proxy.spec.namespace}/{proxy.spec.pod_name} to accept config generation {gen} (cluster {cluster})",
                 has_marker, timeout=max(0.1, timeout - (time.monotonic() - started)), interval=0.02)

        def unsynced() -> list[str]:
            return self._raise_on_nack()

        poll("every proxy to ACK every xDS type (istiod /debug/syncz)", unsynced, ok=lambda u: not u,
             timeout=max(0.1, timeout - (time.monotonic() - started)), interval=0.02, describe=lambda u: "; ".join(u))
        self.last_seconds = time.monotonic() - started
        return self.last_seconds

    def _sync_state(self) -> dict[tuple[str, str], tuple[str | None, str | None]]:
        return {(status.get("proxy", "?"), type_url): (res.get("sent"), res.get("lastError"))
                for status in self.mesh.istiod.syncz()
                for type_url, res in (status.get("resources") or {}).items()}

    def _raise_on_nack(self) -> list[str]:
        """Returns what is still in flight; raises ConfigRejected on a NACK of config sent after the change."""
        pending: list[str] = []
        before = getattr(self, "_before", {})
        for status in self.mesh.istiod.syncz():
            proxy = status.get("proxy", "?")
            for type_url, res in (status.get("resources") or {}).items():
                short = type_url.rsplit(".", 1)[-1]
                error = res.get("lastError")
                old_sent, old_error = before.get((proxy, type_url), (None, None))
                if error and error != old_error:
                    raise ConfigRejected(f"[hop: istiod → {proxy}] Envoy rejected {short}: {error}")
                if res.get("sent") != res.get("acked") or error:
                    pending.append(f"{proxy} {short} sent={res.get('sent')} acked={res.get('acked')}"
                                   + (f" last error: {error}" if error else ""))
        return pending


def _re(name: str) -> str:
    out = []
    for ch in name:
        out.append("\\" + ch if ch in r".|\^$*+?()[]{}" else ch)
    return "".join(out)


__all__ = ["Convergence", "ConfigRejected", "WaitTimeout", "marker_cluster", "marker_service_entry"]
