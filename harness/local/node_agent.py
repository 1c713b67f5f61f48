"""The local mesh's node agent: it runs the Pods that the API server's controllers create.

On a cluster a Deployment becomes a ReplicaSet and Pods (kube-controller-manager), the scheduler
binds each Pod to a node, and that node's kubelet runs its containers and reports its status;
the EndpointSlice controller then puts the ready Pod behind its Services, and the garbage
collector deletes the Deployment when its owner (say a Gateway) goes. The local mesh runs the
real kube-controller-manager for all of that (apiserver.py, `start_controllers`), and this agent
is the rest of a one-node cluster:

- the scheduler's one decision: an unbound Pod is bound to the one Node;
- the kubelet's part: a bound Pod gets a network namespace on the hub (its own address, /etc as a
  pod's), its `istio-proxy` container runs as the container says (`pilot-agent proxy router …`
  with the container's arguments and environment, fieldRefs resolved; proxy.py), with a
  workload certificate of the Pod's ServiceAccount; its status is Running, and Ready once
  pilot-agent's readiness endpoint answers 200;
- a Pod being deleted: its processes are stopped, its namespace removed, and the Pod deleted for
  good (grace 0, by uid), as a kubelet confirms a deletion.

Containers other than istio-proxy run no process: the local mesh has no images to run (the
harness's own pods' application containers are the same: commands are exec'd into the
namespace). Pods the harness registered itself (its table's pods, pod_table.py) are left alone.

It runs on a thread of its own, driven by a watch of the Pods: a user's `kubectl apply` of a
Deployment, or istiod's deployment controller writing one for a Gateway, is run without the
harness being asked. The mesh's lock (LocalMesh.lock) guards what the agent and the harness
both change (the pods, the hub's interfaces, NetworkPolicy rules).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import httpx

from harness.local.kube_registry import NODE_NAME

if TYPE_CHECKING:
    from harness.local.mesh import LocalMesh
    from harness.local.pods import Pod

PROXY_CONTAINER = "istio-proxy"
# How long one watch request lasts before it is made again (the API server ends it anyway).
WATCH_SECONDS = 60


@dataclass
class RunningPod:
    uid: str
    pod: Pod
    containers: list[str]
    ready: bool = False


def resolve_env(container: dict, pod: dict, address: str) -> dict[str, str]:
    """A container's environment as the kubelet gives it: values, and the downward API's field
    and resource references (`$(VAR)` in a value expands earlier variables)."""
    meta, spec = pod.get("metadata") or {}, pod.get("spec") or {}
    fields = {
        "metadata.name": meta.get("name", ""),
        "metadata.namespace": meta.get("namespace", ""),
        "metadata.uid": meta.get("uid", ""),
        "spec.nodeName": NODE_NAME,
        "spec.serviceAccountName": spec.get("serviceAccountName", "default"),
        "status.podIP": address,
        "status.podIPs": address,
        "status.hostIP": "127.0.0.1",
        "status.hostIPs": "127.0.0.1",
    }
    env: dict[str, str] = {}
    for var in container.get("env") or []:
        source = var.get("valueFrom") or {}
        if "value" in var:
            from harness.local.proxy import expand_env

            env[var["name"]] = expand_env(str(var["value"]), env)
        elif "fieldRef" in source:
            path = source["fieldRef"].get("fieldPath", "")
            if path.startswith(("metadata.labels['", "metadata.annotations['")):
                table = meta.get("labels" if path.startswith("metadata.labels") else "annotations") or {}
                env[var["name"]] = str(table.get(path.split("'")[1], ""))
            else:
                env[var["name"]] = fields.get(path, "")
        elif "resourceFieldRef" in source:
            # limits.cpu → whole cores, rounded up, at least 1 (the kubelet's divisor default).
            value = ((container.get("resources") or {}).get("limits") or {}).get(
                source["resourceFieldRef"].get("resource", "").split(".", 1)[-1], ""
            )
            env[var["name"]] = _cores(str(value)) if source["resourceFieldRef"].get("resource") == "limits.cpu" else ""
    return env


def _cores(value: str) -> str:
    if not value:
        return "2"  # no limit: the node's allocatable, two cores here
    millis = int(value[:-1]) if value.endswith("m") else int(float(value) * 1000)
    return str(max(1, -(-millis // 1000)))


class NodeAgent:
    def __init__(self, mesh: LocalMesh, own_pods: Callable[[], set[str]]):
        self.mesh = mesh
        self.own_pods = own_pods  # the keys of the harness's own pods: not the agent's
        self.running: dict[str, RunningPod] = {}
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._changed = threading.Condition()
        self._client: httpx.Client | None = None

    # ------------------------------------------------------------ lifecycle
    def start(self) -> None:
        self._client = self.mesh.control_plane.client(timeout=WATCH_SECONDS + 10)
        self._thread = threading.Thread(target=self._loop, name="node-agent", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._client is not None:
            self._client.close()
        if self._thread is not None:
            # Closing the client does not wake a read blocked in another thread; the watch ends
            # when the API server stops, soon after. Not waited for: under the mesh's lock the
            # thread checks _stop before it starts a pod, so it cannot start one after this.
            self._thread.join(timeout=0.5)
            self._thread = None
        with self.mesh.lock:
            for key in list(self.running):
                self._remove(key)

    def wait(self, what: str, done: Callable[[], bool], timeout: float) -> None:
        """Until `done()` (checked after each reconcile), or a HarnessFault naming `what` and
        the agent's last error."""
        from harness.errors import HarnessFault

        deadline = time.monotonic() + timeout
        with self._changed:
            while not done():
                if self.errors:
                    raise HarnessFault(f"the local mesh's node agent failed: {self.errors[-1]}")
                left = deadline - time.monotonic()
                if left <= 0:
                    raise HarnessFault(f"timed out after {timeout:.0f}s waiting for {what}")
                self._changed.wait(min(left, 0.5))

    # ------------------------------------------------------------ the loop
    def _loop(self) -> None:
        assert self._client is not None
        while not self._stop.is_set():
            try:
                listing = self._client.get("/api/v1/pods")
                listing.raise_for_status()
                body = listing.json()
                self._reconcile(body.get("items") or [])
                version = body["metadata"]["resourceVersion"]
                with self._client.stream(
                    "GET",
                    "/api/v1/pods",
                    params={"watch": "1", "resourceVersion": version, "timeoutSeconds": str(WATCH_SECONDS)},
                ) as stream:
                    for line in stream.iter_lines():
                        if self._stop.is_set():
                            return
                        if line:
                            json.loads(line)  # an event: the whole list is read again below
                            self._reconcile(self._list())
            except (httpx.HTTPError, ValueError, KeyError) as exc:
                if self._stop.is_set():
                    return
                self.errors.append(f"watching Pods: {type(exc).__name__}: {exc}")
                self._stop.wait(0.2)
                self.errors.clear()  # a watch broken by the API server's restart is made again
            except Exception as exc:  # noqa: BLE001 - reported by wait(), never lost on a thread
                self.errors.append(f"{type(exc).__name__}: {exc}")
                with self._changed:
                    self._changed.notify_all()
                self._stop.wait(0.5)

    def _list(self) -> list[dict]:
        assert self._client is not None
        resp = self._client.get("/api/v1/pods")
        resp.raise_for_status()
        return resp.json().get("items") or []

    def _reconcile(self, items: list[dict]) -> None:
        own = self.own_pods()
        seen: dict[str, dict] = {}
        for item in items:
            meta = item.get("metadata") or {}
            key = f"{meta.get('namespace')}/{meta.get('name')}"
            if key in own:
                continue
            seen[key] = item
            deleting = bool(meta.get("deletionTimestamp"))
            node = (item.get("spec") or {}).get("nodeName")
            if not node and not deleting:
                self.mesh.registry.bind_pod(meta["namespace"], meta["name"])
                continue  # its bound state arrives as the next event
            if node != NODE_NAME:
                continue
            running = self.running.get(key)
            if deleting or (running is not None and running.uid != meta.get("uid")):
                with self.mesh.lock:
                    self._remove(key)
                if deleting:
                    self.mesh.registry.confirm_pod_deleted(meta["namespace"], meta["name"], meta.get("uid", ""))
                    continue
            if key not in self.running:
                with self.mesh.lock:
                    if self._stop.is_set():  # stop() has removed what ran: start nothing more
                        return
                    self._run(key, item)
        for key in [k for k in self.running if k not in seen]:
            with self.mesh.lock:
                self._remove(key)
        with self._changed:
            self._changed.notify_all()

    # ------------------------------------------------------------ one pod
    def _run(self, key: str, item: dict) -> None:
        from harness.pod_table import PodSpec

        meta, spec = item["metadata"], item.get("spec") or {}
        containers = spec.get("containers") or []
        proxy = next((c for c in containers if c.get("name") == PROXY_CONTAINER), None)
        args = tuple(str(a) for a in (proxy or {}).get("args") or [])
        kind = args[1] if len(args) > 1 and args[0] == "proxy" else None
        pod_spec = PodSpec(
            meta["namespace"],
            meta["name"],
            spec.get("serviceAccountName") or "default",
            kind,
            next((c["name"] for c in containers if c.get("name") != PROXY_CONTAINER), PROXY_CONTAINER),
            dict(meta.get("labels") or {}),
        )
        pod = self.mesh.new_pod(pod_spec, netns_name=f"eh-{self.mesh.run_id}-n{len(self.mesh.state.netns)}")
        # The pod's namespaced sysctls: the kube-gateway template lets uid 1337 bind ports 80 and 443.
        for sysctl in (spec.get("securityContext") or {}).get("sysctls") or []:
            pod.netns.sysctl(sysctl["name"], str(sysctl["value"]))
        names = [c["name"] for c in containers]
        self.running[key] = RunningPod(meta.get("uid", ""), pod, names)
        # Its status is written once, Running and Ready: a Pod reported with its IP but not ready
        # first is an endpoint that istiod sends as unhealthy, and when it turns healthy Envoy's
        # workers took up to 0.5 s longer than its admin API to route to it (no_healthy_upstream).
        if proxy is not None and kind is not None:
            env = resolve_env(proxy, item, pod.address)
            self.mesh.attach_proxy(pod, kind, args=args, env=env).wait_ready()
        self.mesh.registry.set_pod_status(pod.namespace, pod.name, pod.address, names, ready=True)
        self.running[key].ready = True

    def _remove(self, key: str) -> None:
        running = self.running.pop(key, None)
        if running is not None:
            self.mesh.remove_pod(running.pod)

    # ------------------------------------------------------------ what tests ask
    def pods(self, namespace: str, labels: dict[str, str], *, ready_only: bool = True) -> list[Pod]:
        """The pods the agent runs (the ready ones, unless not ready_only) in `namespace` whose
        labels include `labels`."""
        return [
            r.pod
            for r in list(self.running.values())
            if (r.ready or not ready_only) and r.pod.namespace == namespace and labels.items() <= r.pod.labels.items()
        ]
