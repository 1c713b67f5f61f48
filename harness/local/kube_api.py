"""A minimal Kubernetes API server for istiod: namespaces (with labels) and empty everything else.

Why it exists: from Istio 1.30 on, istiod's ServiceEntry registry takes the namespace collection
from the multicluster controller, which only exists with a Kubernetes client
(pilot/pkg/serviceregistry/serviceentry/controller.go, newController); with no client at all
istiod dereferences nil at start. So istiod gets a kubeconfig pointing here. Istio config still
comes from the manifest directory (--configDir), exactly as the suites apply it.

What it implements is what client-go informers and istiod's controllers use: discovery, LIST,
WATCH (a stream of JSON events), GET, POST, PUT, PATCH (merge), DELETE, for any resource path,
kept in memory. It listens on a socket created inside istiod's network namespace, so only istiod
can reach it. It is no general API server: no admission, no validation, no field selectors.
"""

from __future__ import annotations

import copy
import json
import queue
import re
import socket
import threading
import time
import uuid
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

K8S_VERSION = {"major": "1", "minor": "35", "gitVersion": "v1.35.0", "platform": "linux/amd64"}

# resource -> (kind, namespaced). Kinds matter: client-go decodes lists by their kind.
_CORE = {
    "namespaces": ("Namespace", False), "nodes": ("Node", False), "pods": ("Pod", True),
    "services": ("Service", True), "endpoints": ("Endpoints", True), "secrets": ("Secret", True),
    "configmaps": ("ConfigMap", True), "serviceaccounts": ("ServiceAccount", True), "events": ("Event", True),
    "persistentvolumeclaims": ("PersistentVolumeClaim", True), "resourcequotas": ("ResourceQuota", True),
}
_GROUPS: dict[str, dict[str, tuple[str, bool]]] = {
    "apps/v1": {"deployments": ("Deployment", True), "replicasets": ("ReplicaSet", True),
                "statefulsets": ("StatefulSet", True), "daemonsets": ("DaemonSet", True)},
    "discovery.k8s.io/v1": {"endpointslices": ("EndpointSlice", True)},
    "networking.k8s.io/v1": {"networkpolicies": ("NetworkPolicy", True), "ingresses": ("Ingress", True),
                             "ingressclasses": ("IngressClass", False)},
    "apiextensions.k8s.io/v1": {"customresourcedefinitions": ("CustomResourceDefinition", False)},
    "admissionregistration.k8s.io/v1": {
        "mutatingwebhookconfigurations": ("MutatingWebhookConfiguration", False),
        "validatingwebhookconfigurations": ("ValidatingWebhookConfiguration", False)},
    "coordination.k8s.io/v1": {"leases": ("Lease", True)},
    "certificates.k8s.io/v1": {"certificatesigningrequests": ("CertificateSigningRequest", False)},
    "authentication.k8s.io/v1": {"tokenreviews": ("TokenReview", False)},
    "authorization.k8s.io/v1": {"subjectaccessreviews": ("SubjectAccessReview", False)},
}

_PATH = re.compile(
    r"^/(?:api/(?P<corever>v1)|apis/(?P<group>[^/]+)/(?P<version>[^/]+))"
    r"(?:/namespaces/(?P<ns>[^/]+)(?=/))?/(?P<resource>[^/]+)(?:/(?P<name>[^/]+))?(?:/(?P<sub>[^/]+))?/?$"
)


def _kind_for(group_version: str, resource: str) -> tuple[str, bool]:
    table = _CORE if group_version == "v1" else _GROUPS.get(group_version, {})
    if resource in table:
        return table[resource]
    singular = resource[:-1] if resource.endswith("s") else resource
    return singular[:1].upper() + singular[1:], True


@dataclass
class _Watcher:
    gv: str
    resource: str
    namespace: str | None
    events: queue.Queue[dict | None]


class KubeStore:
    """Objects by (group/version, resource, namespace, name), with a global resourceVersion."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._objects: dict[tuple[str, str, str, str], dict] = {}
        self._rv = 1
        self._watchers: list[_Watcher] = []
        # Every event, so a watch from resourceVersion N replays what happened after N (a change
        # between a client's LIST and its WATCH is not lost). A run makes a few hundred at most.
        self._history: list[tuple[int, str, str, str, dict]] = []  # rv, gv, resource, namespace, event

    def _bump(self, obj: dict) -> None:
        self._rv += 1
        obj.setdefault("metadata", {})["resourceVersion"] = str(self._rv)

    def resource_version(self) -> str:
        return str(self._rv)

    def list(self, gv: str, resource: str, namespace: str | None) -> list[dict]:
        with self._lock:
            return [copy.deepcopy(o) for (g, r, ns, _), o in sorted(self._objects.items())
                    if g == gv and r == resource and (namespace is None or ns == namespace)]

    def get(self, gv: str, resource: str, namespace: str, name: str) -> dict | None:
        with self._lock:
            obj = self._objects.get((gv, resource, namespace, name))
            return copy.deepcopy(obj) if obj else None

    def put(self, gv: str, resource: str, obj: dict) -> dict:
        """Create or replace; emits ADDED or MODIFIED."""
        kind, _ = _kind_for(gv, resource)
        obj = copy.deepcopy(obj)
        obj["apiVersion"], obj["kind"] = gv, kind
        meta = obj.setdefault("metadata", {})
        key = (gv, resource, meta.get("namespace", ""), meta["name"])
        with self._lock:
            old = self._objects.get(key)
            meta.setdefault("uid", old["metadata"]["uid"] if old else str(uuid.uuid4()))
            meta.setdefault("creationTimestamp", time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
            self._bump(obj)
            self._objects[key] = obj
            self._notify(gv, resource, meta.get("namespace", ""), "MODIFIED" if old else "ADDED", obj)
        return copy.deepcopy(obj)

    def delete(self, gv: str, resource: str, namespace: str, name: str) -> dict | None:
        with self._lock:
            obj = self._objects.pop((gv, resource, namespace, name), None)
            if obj is not None:
                self._bump(obj)
                self._notify(gv, resource, namespace, "DELETED", obj)
            return obj

    def _notify(self, gv: str, resource: str, namespace: str, kind: str, obj: dict) -> None:
        self._history.append((self._rv, gv, resource, namespace, {"type": kind, "object": copy.deepcopy(obj)}))
        for w in self._watchers:
            if w.gv == gv and w.resource == resource and (w.namespace is None or w.namespace == namespace):
                w.events.put({"type": kind, "object": copy.deepcopy(obj)})

    def watch(self, gv: str, resource: str, namespace: str | None, since: int | None = None) -> _Watcher:
        """A watch; with `since` (the client's resourceVersion), first the events after it."""
        w = _Watcher(gv, resource, namespace, queue.Queue())
        with self._lock:
            if since is not None:
                for rv, g, r, ns, event in self._history:
                    if rv > since and g == gv and r == resource and (namespace is None or ns == namespace):
                        w.events.put(copy.deepcopy(event))
            self._watchers.append(w)
        return w

    def unwatch(self, w: _Watcher) -> None:
        with self._lock:
            if w in self._watchers:
                self._watchers.remove(w)
        w.events.put(None)

    def close(self) -> None:
        with self._lock:
            for w in list(self._watchers):
                self.unwatch(w)


def _merge(base: dict, patch: dict) -> dict:
    """RFC 7386 JSON merge patch (strategic-merge and apply patches are treated the same way)."""
    out = copy.deepcopy(base)
    for k, v in patch.items():
        if v is None:
            out.pop(k, None)
        elif isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body go out in two writes: with Nagle on, each kept-alive response waits ~40 ms
    # for a delayed ACK (measured 44 ms → 0.7 ms per request).
    disable_nagle_algorithm = True
    server: _Server

    def log_message(self, fmt: str, *args) -> None:  # the store is the record; keep stderr quiet
        pass

    def _send(self, code: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _status(self, code: int, reason: str, message: str) -> None:
        self._send(code, {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                          "message": message, "reason": reason, "code": code})

    def _body(self) -> dict:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b"{}"
        try:
            return json.loads(raw or b"{}")
        except ValueError:
            import yaml  # server-side apply sends YAML

            return yaml.safe_load(raw) or {}

    def _route(self):
        url = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        path = url.path
        # /api/v1/namespaces/<name>/status is the namespace's subresource, not a resource
        # called "status" inside it.
        sub = re.match(r"^(/api/v1/namespaces/[^/]+)/(status|finalize)/?$", path)
        m = _PATH.match(sub.group(1) if sub else path)
        return path, query, m

    def do_GET(self) -> None:  # noqa: N802
        path, query, m = self._route()
        store = self.server.store
        if path == "/version":
            return self._send(200, K8S_VERSION)
        if path in ("/api", "/api/"):
            return self._send(200, {"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": []})
        if path in ("/apis", "/apis/"):
            groups = []
            for gv in _GROUPS:
                g, v = gv.split("/")
                ver = {"groupVersion": gv, "version": v}
                groups.append({"name": g, "versions": [ver], "preferredVersion": ver})
            return self._send(200, {"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
        if path in ("/api/v1", "/api/v1/") or (path.startswith("/apis/") and path.strip("/").count("/") == 2):
            gv = "v1" if path.startswith("/api/") else path.strip("/")[len("apis/"):]
            table = _CORE if gv == "v1" else _GROUPS.get(gv, {})
            resources = [{"name": r, "singularName": "", "namespaced": ns, "kind": k,
                          "verbs": ["create", "delete", "get", "list", "patch", "update", "watch"]}
                         for r, (k, ns) in table.items()]
            return self._send(200, {"kind": "APIResourceList", "groupVersion": gv, "resources": resources})
        if not m:
            return self._status(404, "NotFound", f"the server could not find the requested resource {path}")
        gv = m["corever"] or f"{m['group']}/{m['version']}"
        resource, ns, name = m["resource"], m["ns"], m["name"]
        if name:
            obj = store.get(gv, resource, ns or "", name)
            if obj is None:
                return self._status(404, "NotFound", f'{resource} "{name}" not found')
            return self._send(200, obj)
        if query.get("watch") in ("1", "true"):
            since = query.get("resourceVersion")
            return self._watch(gv, resource, ns, float(query.get("timeoutSeconds") or 300),
                               int(since) if since and since.isdigit() and since != "0" else None)
        kind, _ = _kind_for(gv, resource)
        return self._send(200, {"kind": f"{kind}List", "apiVersion": gv,
                                "metadata": {"resourceVersion": store.resource_version()},
                                "items": store.list(gv, resource, ns)})

    def _watch(self, gv: str, resource: str, ns: str | None, timeout: float, since: int | None) -> None:
        store = self.server.store
        w = store.watch(gv, resource, ns, since)
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        deadline = time.monotonic() + min(timeout, 300)
        try:
            while not self.server.stopping.is_set():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                try:
                    event = w.events.get(timeout=min(remaining, 1.0))
                except queue.Empty:
                    continue
                if event is None:
                    break
                data = json.dumps(event).encode() + b"\n"
                self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
                self.wfile.flush()
            self.wfile.write(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass
        finally:
            store.unwatch(w)
            self.close_connection = True

    def _write(self, replace: bool) -> None:
        path, _, m = self._route()
        if not m:
            return self._status(404, "NotFound", path)
        gv = m["corever"] or f"{m['group']}/{m['version']}"
        body = self._body()
        meta = body.setdefault("metadata", {})
        if m["ns"]:
            meta["namespace"] = m["ns"]
        if m["name"]:
            meta["name"] = m["name"]
        if not meta.get("name") and meta.get("generateName"):
            meta["name"] = meta["generateName"] + uuid.uuid4().hex[:5]
        existing = self.server.store.get(gv, m["resource"], meta.get("namespace", ""), meta.get("name", ""))
        if self.command == "POST" and existing is not None:
            return self._status(409, "AlreadyExists", f'{m["resource"]} "{meta["name"]}" already exists')
        if self.command == "PUT" and existing is None and not replace:
            return self._status(404, "NotFound", f'{m["resource"]} "{meta.get("name")}" not found')
        if self.command == "PATCH":
            if existing is None and "apply-patch" not in (self.headers.get("Content-Type") or ""):
                return self._status(404, "NotFound", f'{m["resource"]} "{meta.get("name")}" not found')
            body = _merge(existing or {}, body)
        meta = body["metadata"]
        meta.pop("resourceVersion", None)
        self._send(201 if existing is None else 200, self.server.store.put(gv, m["resource"], body))

    def do_POST(self) -> None:  # noqa: N802
        path, _, m = self._route()
        if m and m["resource"] in ("tokenreviews", "subjectaccessreviews", "selfsubjectaccessreviews"):
            body = self._body()
            body["status"] = {"allowed": True, "authenticated": False}
            return self._send(201, body)
        self._write(replace=False)

    def do_PUT(self) -> None:  # noqa: N802
        self._write(replace=True)

    def do_PATCH(self) -> None:  # noqa: N802
        self._write(replace=False)

    def do_DELETE(self) -> None:  # noqa: N802
        path, _, m = self._route()
        if not m or not m["name"]:
            return self._status(405, "MethodNotAllowed", "collection delete is not supported")
        gv = m["corever"] or f"{m['group']}/{m['version']}"
        obj = self.server.store.delete(gv, m["resource"], m["ns"] or "", m["name"])
        if obj is None:
            return self._status(404, "NotFound", f'{m["resource"]} "{m["name"]}" not found')
        self._send(200, obj)


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address) -> None:
        # istiod closing a watch is normal; tracebacks on stderr would only be noise.
        pass

    def __init__(self, sock: socket.socket, store: KubeStore):
        self.store = store
        self.stopping = threading.Event()
        super().__init__(sock.getsockname(), _Handler, bind_and_activate=False)
        self.socket.close()
        self.socket = sock


class KubeApiServer:
    """Serves `store` on an already bound, listening socket (created inside a network namespace)."""

    def __init__(self, sock: socket.socket, store: KubeStore | None = None):
        self.store = store or KubeStore()
        self._server = _Server(sock, self.store)
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.1},
                                        name="kube-api", daemon=True)

    @property
    def address(self) -> tuple[str, int]:
        return self._server.socket.getsockname()

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.stopping.set()
        self.store.close()
        self._server.shutdown()
        self._server.server_close()

    def kubeconfig(self) -> str:
        host, port = self.address
        return json.dumps({
            "apiVersion": "v1", "kind": "Config", "current-context": "local",
            "clusters": [{"name": "local", "cluster": {"server": f"http://{host}:{port}"}}],
            "users": [{"name": "istiod", "user": {"token": "local-mesh"}}],
            "contexts": [{"name": "local", "context": {"cluster": "local", "user": "istiod"}}],
        })

    # The few objects the mesh keeps here.
    def set_namespace(self, name: str, labels: dict[str, str]) -> None:
        existing = self.store.get("v1", "namespaces", "", name) or {"metadata": {"name": name}}
        existing["metadata"]["labels"] = dict(labels)
        existing.setdefault("status", {"phase": "Active"})
        self.store.put("v1", "namespaces", existing)
