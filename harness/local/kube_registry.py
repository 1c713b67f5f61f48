"""What the local mesh keeps on its real API server (apiserver.py), and the one apply path.

- Istio's CRDs, from the Istio build's own module source (`manifests/charts/base/files/
  crd-all.gen.yaml`, what `istioctl install` and the base chart install), applied server-side
  (their schemas exceed client-side apply's annotation limit) and awaited until Established.
- Namespaces with their labels; ServiceAccounts for the pods.
- The pods, registered as a node agent would: a Pod object (IP, labels, service account, nodeName,
  Ready), and for the egress gateway its real Service with an EndpointSlice, written in the seed
  as the EndpointSlice controller would write it and adopted by the real controller once the
  controller-manager runs (apiserver.start_controllers). Pods that the API server's own
  controllers create (istiod's deployed gateways) are run by the node agent (node_agent.py).
- apply/delete: server-side apply over REST (harness/kube_rest.py), the code the kind and cluster
  backends use; the server's validation errors come back as one line. The harness's own objects
  (Namespaces, Pods and their status, the Service and EndpointSlice) go the same way, at URLs
  it knows, so a cold start makes no discovery round-trips for them.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import httpx
import yaml

from harness import gateway_api
from harness.errors import HarnessError, HarnessFault, ManifestRejected
from harness.istio_binaries import IstioBinaries
from harness.istioctl_validate import IstioctlValidator
from harness.kube.kubectl import Kubectl
from harness.kube.trust import trust_secrets_yaml, trust_values
from harness.kube_rest import FIELD_MANAGER, KubeRest
from harness.local.apiserver import KUBELET_PORT, NODE_ADDRESS, KubeControlPlane
from harness.pod_table import GATEWAY_POD
from harness.sync import ISTIO_KINDS
from harness.wait import poll

CRD_FILE = "manifests/charts/base/files/crd-all.gen.yaml"
CRD_NAME = "crd-all.gen.yaml"
NODE_NAME = "egress-harness-local"
# The label value by which the EndpointSlice controller knows the slices it manages.
ENDPOINTSLICE_CONTROLLER = "endpointslice-controller.k8s.io"
# What the suites apply on the local mesh; anything else is refused before it reaches the server.
# A Secret: a credentialName an egress spec maps to the test PKI (istiod serves it to the gateway).
OTHER_KINDS = {"NetworkPolicy", "Secret", "Role", "RoleBinding"}


def istio_crd_file(binaries: IstioBinaries) -> Path:
    """crd-all.gen.yaml of the Istio module the binaries were built from, kept beside them (the
    build copies it; an older build gets it from the Go module cache once), so a run needs no
    network, as a rootless run has none."""
    from harness.istio_binaries import _module_dir
    from harness.versions import resolve_release

    kept = binaries.bootstrap_template.parent / CRD_NAME
    if kept.exists():
        return kept
    path = _module_dir(resolve_release(binaries.version)) / CRD_FILE
    if not path.exists():
        raise HarnessError(
            f"Istio {binaries.version}'s module has no {CRD_FILE}: the local mesh needs Istio's CRDs from it"
        )
    try:
        tmp = kept.with_name(f".{CRD_NAME}.{os.getpid()}")
        shutil.copyfile(path, tmp)
        os.replace(tmp, kept)
        return kept
    except OSError:  # binaries from EGRESS_HARNESS_ISTIO_BIN may be read-only: use the module's copy
        return path


def mesh_crd_file(binaries: IstioBinaries, channel: str = gateway_api.CHANNEL) -> Path:
    """Istio's CRDs and the Gateway API's (`channel`) as one file, kept in the cache under the two
    files' digest: the etcd seed is keyed by it, so both are in the seed."""
    from harness.cache import cache_root

    parts = [istio_crd_file(binaries).read_bytes(), gateway_api.crd_file(channel).read_bytes()]
    digest = hashlib.sha256(b"\0".join(parts)).hexdigest()[:16]
    path = cache_root() / "local-apiserver" / f"crds-{digest}.yaml"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}")
        tmp.write_bytes(parts[0].rstrip(b"\n") + b"\n---\n" + parts[1])
        os.replace(tmp, path)
    return path


def served_resources(crd_file: Path, cache: Path) -> dict[str, set[str]]:
    """group/version -> plurals the CRDs serve. Parsing the ~1 MB file takes seconds in pure
    Python, so the answer is kept in `cache` (beside the etcd seed, keyed like it by the file)."""
    try:
        return {gv: set(plurals) for gv, plurals in json.loads(cache.read_text()).items()}
    except (OSError, ValueError):
        pass
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    served: dict[str, set[str]] = {}
    for crd in yaml.load_all(crd_file.read_text(), Loader=loader):  # noqa: S506 - a safe loader
        if crd:
            for version in crd["spec"]["versions"]:
                if version.get("served", True):
                    served.setdefault(f"{crd['spec']['group']}/{version['name']}", set()).add(
                        crd["spec"]["names"]["plural"]
                    )
    cache.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache.with_name(f".{cache.name}.{os.getpid()}")
    tmp.write_text(json.dumps({gv: sorted(p) for gv, p in served.items()}))
    os.replace(tmp, cache)
    return served


def _one_line(stderr: str) -> str:
    lines = [
        line.strip(" *\t")
        for line in stderr.splitlines()
        if line.strip() and "some validation rules were not checked" not in line
    ]
    return "; ".join(lines)[:600]


@dataclass
class LocalKubectl(Kubectl):
    """backends/kube.py's Kubectl (the CRD install, the tests' reads) with the run's own discovery
    cache, so nothing lands in the user's ~/.kube."""

    cache_dir: Path = Path()

    def argv(self, *args: str) -> list[str]:
        return super().argv(f"--cache-dir={self.cache_dir}", *args)


class KubeRegistry:
    """The API server's side of the local mesh; also what LocalMesh.manifests is on this path."""

    def __init__(self, control_plane: KubeControlPlane, istioctl: Path):
        self.cp = control_plane
        self.kubectl = LocalKubectl(
            control_plane.kubectl_bin, control_plane.kubeconfig, cache_dir=control_plane.workdir / "kubectl-cache"
        )
        self._validator = IstioctlValidator(istioctl)
        self.applied: dict[str, dict] = {}  # "Kind.namespace.name.yaml" -> object, for collect.py
        self._api: KubeRest | None = None

    @property
    def api(self) -> KubeRest:
        """The one apply/delete path (kube_rest.py), on the API server as the admin."""
        if self._api is None:
            self._api = KubeRest(self.cp.client())
        return self._api

    @property
    def rest(self) -> httpx.Client:
        return self.api.client

    def close(self) -> None:
        if self._api is not None:
            self._api.close()
            self._api = None

    # ------------------------------------------------------------ setup
    def install_crds(self, crd_file: Path, served_cache: Path, *, present: bool = False, timeout: float = 30.0) -> None:
        """Apply the CRDs (unless `present`: etcd was seeded with them) and wait until Established."""
        proc = (
            None
            if present
            else self.kubectl.run(
                "apply", "--server-side", f"--field-manager={FIELD_MANAGER}", "-f", str(crd_file), check=False
            )
        )
        if proc is not None and not proc.ok:
            raise HarnessFault(f"installing Istio's CRDs failed: {_one_line(proc.stderr)}")
        # Served in discovery = Established (the CRD's REST endpoint is up): a few small reads,
        # where listing the CRDs themselves would carry megabytes of schema on every poll.
        served = served_resources(crd_file, served_cache)

        def pending() -> list[str]:
            missing = []
            for group_version, plurals in served.items():
                resp = self.rest.get(f"/apis/{group_version}")
                listed = {r["name"] for r in resp.json().get("resources", [])} if resp.status_code == 200 else set()
                missing += [f"{p}.{group_version}" for p in sorted(plurals - listed)]
            return missing

        poll(
            "Istio's CRDs to be Established",
            pending,
            ok=lambda p: not p,
            timeout=timeout,
            interval=0.05,
            describe=lambda p: f"not yet: {', '.join(p)}",
        )

    def _ssa(self, path: str, obj: dict, *, subresource: str = "") -> dict:
        """Server-side apply of one of the harness's own objects at `path` (its URL): a refusal
        is the harness's fault, not the mesh's."""
        try:
            return self.api.apply_at(path + (f"/{subresource}" if subresource else ""), obj)
        except ManifestRejected as exc:
            raise HarnessFault(f"the local API server refused the harness's own object: {exc}") from None

    def set_namespace(self, name: str, labels: dict[str, str]) -> None:
        obj = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": dict(labels)}}
        self._ssa(f"/api/v1/namespaces/{name}", obj)
        # What the controller-manager would add: istioctl asks the API server for a token of
        # istio-system's "default" account to authenticate to istiod.
        self.ensure_service_account(name, "default")

    def register_node(self) -> None:
        """The one Node the pods are on (istiod reads a pod's node for its locality), with the
        address and kubelet port the API server dials for a port-forward (pod-streams)."""
        path = f"/api/v1/nodes/{NODE_NAME}"
        meta = {"name": NODE_NAME, "labels": {"kubernetes.io/hostname": NODE_NAME, "kubernetes.io/os": "linux"}}
        self._ssa(path, {"apiVersion": "v1", "kind": "Node", "metadata": meta})
        status = {
            "addresses": [{"type": "InternalIP", "address": NODE_ADDRESS}, {"type": "Hostname", "address": NODE_NAME}],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": KUBELET_PORT}},
            "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady", "message": "egress-harness"}],
        }
        self._ssa(
            path,
            {"apiVersion": "v1", "kind": "Node", "metadata": {"name": NODE_NAME}, "status": status},
            subresource="status",
        )

    def ensure_service_account(self, namespace: str, name: str) -> None:
        obj = {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": name, "namespace": namespace}}
        self._ssa(f"/api/v1/namespaces/{namespace}/serviceaccounts/{name}", obj)

    def create_trust_secrets(self, pems: dict[str, str]) -> dict:
        """The credentialName Secrets in istio-system (the kind and cluster backends' fixture,
        fixtures/kind/trust-secrets.yaml.j2) and in the namespace of the Gateway API's deployed
        gateway, and the `trust` values that name them."""
        self._grant_gateway_secrets()
        # Server-side apply over REST, like the other objects the harness itself keeps: a kubectl
        # process would cost more than the writes.
        for secret in yaml.safe_load_all(trust_secrets_yaml(pems, gateway_api=True)):
            if secret:
                meta = secret["metadata"]
                self._ssa(f"/api/v1/namespaces/{meta['namespace']}/secrets/{meta['name']}", secret)
        return trust_values()

    def _grant_gateway_secrets(self) -> None:
        """istio-egressgateway's Role on the Secrets of its namespace, as the gateway chart grants
        it (manifests/charts/gateway/templates/role.yaml): istiod serves a credentialName only to a
        proxy whose ServiceAccount may list them (a SubjectAccessReview, with RBAC on)."""
        ns, name = GATEWAY_POD.namespace, GATEWAY_POD.service_account
        role = {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": {"name": name, "namespace": ns},
            "rules": [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["get", "watch", "list"]}],
        }
        binding = {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": {"name": name, "namespace": ns},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
            "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": ns}],
        }
        rbac = "/apis/rbac.authorization.k8s.io/v1/namespaces"
        self._ssa(f"{rbac}/{ns}/roles/{name}", role)
        self._ssa(f"{rbac}/{ns}/rolebindings/{name}", binding)

    # ------------------------------------------------------------ pods
    def register_pod(
        self,
        namespace: str,
        name: str,
        labels: dict[str, str],
        service_account: str,
        address: str,
        container: str,
        *,
        sidecar: bool,
        replace: bool = False,
    ) -> None:
        """The Pod a kubelet would report: scheduled here, Running, Ready, with its IP. replace:
        a redeploy, which Kubernetes makes a new Pod (new uid) of."""
        self.ensure_service_account(namespace, service_account)
        containers = [{"name": container, "image": "egress-harness.invalid/netns"}]
        if sidecar:
            containers.append({"name": "istio-proxy", "image": "egress-harness.invalid/pilot-agent"})
        annotations = {"sidecar.istio.io/status": json.dumps({"containers": ["istio-proxy"]})} if sidecar else {}
        path = f"/api/v1/namespaces/{namespace}/pods/{name}"
        if replace:
            self.delete_pod(namespace, name)
        pod = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name, "namespace": namespace, "labels": dict(labels), "annotations": annotations},
            "spec": {"nodeName": NODE_NAME, "serviceAccountName": service_account, "containers": containers},
        }
        self._ssa(path, pod)
        self.set_pod_status(namespace, name, address, [c["name"] for c in containers], ready=True)

    def set_pod_status(self, namespace: str, name: str, address: str, containers: list[str], *, ready: bool) -> None:
        """What a kubelet reports of a running pod: its IP, each container running, and Ready
        once `ready` (its readiness probe passed)."""
        now = "1970-01-01T00:00:00Z"
        ready_value = "True" if ready else "False"
        status = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name, "namespace": namespace},
            "status": {
                "phase": "Running",
                "podIP": address,
                "podIPs": [{"ip": address}],
                "hostIP": NODE_ADDRESS,
                "containerStatuses": [
                    {
                        "name": c,
                        "image": "egress-harness.invalid/netns",
                        "imageID": "",
                        "ready": ready,
                        "restartCount": 0,
                        "started": True,
                        "state": {"running": {"startedAt": now}},
                    }
                    for c in containers
                ],
                "conditions": [
                    {
                        "type": t,
                        "status": "True" if t in ("PodScheduled", "Initialized") else ready_value,
                        "lastTransitionTime": now,
                    }
                    for t in ("PodScheduled", "Initialized", "ContainersReady", "Ready")
                ],
            },
        }
        self._ssa(f"/api/v1/namespaces/{namespace}/pods/{name}", status, subresource="status")

    def bind_pod(self, namespace: str, name: str) -> None:
        """The scheduler's one decision on a one-node cluster: the pod goes to this node."""
        binding = {
            "apiVersion": "v1",
            "kind": "Binding",
            "metadata": {"name": name, "namespace": namespace},
            "target": {"apiVersion": "v1", "kind": "Node", "name": NODE_NAME},
        }
        resp = self.rest.post(f"/api/v1/namespaces/{namespace}/pods/{name}/binding", json=binding)
        if resp.status_code not in (200, 201, 409):  # 409: bound already, or gone
            raise HarnessFault(f"binding Pod {namespace}/{name} to {NODE_NAME} failed: {resp.text[:300]}")

    def confirm_pod_deleted(self, namespace: str, name: str, uid: str) -> None:
        """The kubelet's last word on a pod being deleted: its containers are gone, remove it now
        (grace 0, for this uid only: a new pod of the same name is not touched)."""
        resp = self.rest.request(
            "DELETE",
            f"/api/v1/namespaces/{namespace}/pods/{name}",
            json={"apiVersion": "v1", "kind": "DeleteOptions", "gracePeriodSeconds": 0, "preconditions": {"uid": uid}},
        )
        if resp.status_code not in (200, 202, 404, 409):
            raise HarnessFault(f"deleting Pod {namespace}/{name} failed: {resp.text[:300]}")

    def delete_pod(self, namespace: str, name: str) -> None:
        resp = self.rest.delete(f"/api/v1/namespaces/{namespace}/pods/{name}", params={"gracePeriodSeconds": "0"})
        if resp.status_code not in (200, 202, 404):
            raise HarnessFault(f"deleting Pod {namespace}/{name} failed: {resp.text[:300]}")

    def register_service(
        self, namespace: str, name: str, selector: dict[str, str], ports: list[dict], endpoints: list[tuple[str, str]]
    ) -> None:
        """A ClusterIP Service and the EndpointSlice the EndpointSlice controller would write for
        it: `ports` as in a Service spec (name, port, targetPort, appProtocol); `endpoints` are
        (pod name, pod IP) of the ready pods it selects.

        The slice is written now (istiod has the gateway's endpoints from the cold start, before
        the controller-manager runs) but as the controller's own: its managed-by label and a
        controller ownerReference to the Service. The controller then adopts it (and updates it
        in place) instead of writing a second slice beside it, so the Service has one slice as on
        a cluster."""
        svc = {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"selector": dict(selector), "ports": [{**p, "protocol": "TCP"} for p in ports]},
        }
        uid = self._ssa(f"/api/v1/namespaces/{namespace}/services/{name}", svc)["metadata"]["uid"]
        slice_name = f"{name}-seed"
        eps = {
            "apiVersion": "discovery.k8s.io/v1",
            "kind": "EndpointSlice",
            "metadata": {
                "name": slice_name,
                "namespace": namespace,
                "labels": {
                    "kubernetes.io/service-name": name,
                    "endpointslice.kubernetes.io/managed-by": ENDPOINTSLICE_CONTROLLER,
                },
                "ownerReferences": [
                    {
                        "apiVersion": "v1",
                        "kind": "Service",
                        "name": name,
                        "uid": uid,
                        "controller": True,
                        "blockOwnerDeletion": True,
                    }
                ],
            },
            "addressType": "IPv4",
            "ports": [
                {
                    "name": p["name"],
                    "port": p["targetPort"],
                    "protocol": "TCP",
                    **({"appProtocol": p["appProtocol"]} if "appProtocol" in p else {}),
                }
                for p in ports
            ],
            "endpoints": [
                {
                    "addresses": [ip],
                    "conditions": {"ready": True, "serving": True, "terminating": False},
                    "nodeName": NODE_NAME,
                    "targetRef": {"kind": "Pod", "namespace": namespace, "name": pod},
                }
                for pod, ip in endpoints
            ],
        }
        self._ssa(f"/apis/discovery.k8s.io/v1/namespaces/{namespace}/endpointslices/{slice_name}", eps)

    # ------------------------------------------------------------ the manifest store (LocalMesh.manifests)
    def validate(self, objs: list[dict]) -> None:
        """Before anything is applied: kinds the local mesh holds, a namespace on each, then the
        real `istioctl validate` (as every backend); the API server's own validation follows."""
        for o in objs:
            meta = o.get("metadata") or {}
            if o.get("kind") not in ISTIO_KINDS | OTHER_KINDS | gateway_api.KINDS:
                raise HarnessError(
                    f"the local mesh cannot apply kind {o.get('kind')!r} "
                    f"({meta.get('name')}); it applies Istio config, the Gateway API, NetworkPolicy, Secrets and RBAC"
                )
            if not meta.get("namespace"):
                raise HarnessError(f"{o.get('kind')} {meta.get('name')!r} has no metadata.namespace: set it")
        self._validator.validate(objs)

    @staticmethod
    def _key(obj: dict) -> str:
        meta = obj.get("metadata") or {}
        return f"{obj.get('kind')}.{meta.get('namespace', 'default')}.{meta.get('name')}.yaml"

    def write_all(self, objs: list[dict]) -> list[dict]:
        """Server-side apply of the suites' objects; the server's refusal in one line. Returns
        what the server stored (with each object's resourceVersion)."""
        stored = self.api.apply(objs)
        for o in objs:
            self.applied[self._key(o)] = o
        return stored

    def remove_all(self, objs: list[dict]) -> None:
        self.api.delete(objs)
        for o in objs:
            self.applied.pop(self._key(o), None)
