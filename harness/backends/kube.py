"""The Kubernetes side shared by the kind and cluster backends (harness/backend.py's Backend).

Setup, reads, exec, logs and port-forwards go through kubectl with an explicit kubeconfig: the
commands are the ones the plan prints and a person would type. (An API client such as kr8s was
considered for the polling reads; `kubectl get -o json` does the same here without a second
client, so none is a dependency.) What the suites apply is the exception: every backend applies it
by server-side apply over REST (harness/kube_rest.py), one path for all three.

- apply/delete: Istio objects are checked first by the pinned `istioctl validate` (offline, like the
  local mesh); then server-side apply / delete of each object; then the backend waits until every proxy runs the
  config: a marker ServiceEntry with a new host is applied after the change, each proxy's
  config_dump (`pilot-agent request GET config_dump…` in its istio-proxy container) must show the
  marker's cluster, and istiod's /debug/syncz must show every xDS type ACKed. A NACK fails at once.
- exec: `kubectl exec -c <app> -- argv` (its exit status is the command's).
- proxy_admin: Envoy's admin API over `kubectl port-forward` to the pod's 15000.
- access_log: the istio-proxy container's log (one GET of the pod's log subresource), the access-log lines only (JSON, harness/meshconfig.py).
- namespaces: the suites name the seed's namespaces ("default", "test-egress"); a backend may map
  them to namespaces of its own (the cluster backend does) and rewrites metadata.namespace.
"""

from __future__ import annotations

import functools
import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import httpx

from harness import mesh_evidence, pod_table, sites
from harness.converge import converge, snapshot, wait_endpoints
from harness.envoy_admin import stat_values
from harness.errors import HarnessError, HarnessFault, HopFailure
from harness.exec_result import ExecResult
from harness.gateway_api import GATEWAY_NAME_LABEL, deployed_service_host, is_deployed_gateway
from harness.istioctl_validate import IstioctlValidator
from harness.kube import workloads
from harness.kube.kubectl import Kubectl, PortForward
from harness.kube.templates import render_fixture
from harness.kube.trust import trust_values
from harness.kube_rest import KubeRest
from harness.sync import is_mesh_config
from harness.trace import CONTROL_PLANE
from harness.upstream_client import UpstreamClient
from harness.wait import WaitTimeout, poll

ISTIO_NAMESPACE = "istio-system"
ENVOY_ADMIN_PORT = 15000
ISTIOD_DEBUG_PORT = 15014
UPSTREAM_HOST = "edition.cnn.com"
UPSTREAM_CA_IN_POD = "/etc/egress-harness/ca.pem"
_CORE_MARK = "# egress-harness: "  # a block's first line; its last is "# egress-harness: end (run)"


# istiod's debug endpoints, read in its own container (the plan prints the same commands).
def istiod_debug_args(path: str, deployment: str = "istiod") -> tuple[str, ...]:
    """kubectl arguments for GET `path` of istiod's debug endpoints, in its discovery container."""
    pilot = ("pilot-discovery", "request", "GET", path)
    return ("exec", "-n", ISTIO_NAMESPACE, f"deploy/{deployment}", "-c", "discovery", "--", *pilot)


SYNCZ = "/debug/syncz"
CONFIGZ = "/debug/configz"
SYNCZ_EXEC = istiod_debug_args(SYNCZ)  # what a plan prints (istioctl install's istiod)
CONFIGZ_EXEC = istiod_debug_args(CONFIGZ)


def pilot_agent_request_args(namespace: str, pod: str, path: str) -> tuple[str, ...]:
    """kubectl arguments for GET `path` of Envoy's admin API, asked through pilot-agent in the pod's
    istio-proxy container (the plan prints the same command)."""
    return ("exec", "-n", namespace, pod, "-c", "istio-proxy", "--", "pilot-agent", "request", "GET", path)


# ------------------------------------------------------------------------------ CoreDNS
def add_hosts_block(corefile: str, address: str, run: str, hosts: list[str] | None = None) -> str:
    """The Corefile with a server block per name of the sites table (harness/sites.py; or `hosts`)
    answering it with `address` (replacing an earlier block)."""
    names = hosts if hosts is not None else sites.resolved_names()
    block = render_fixture("coredns-hosts.corefile.j2", hosts=names, address=address, run=run)
    return remove_hosts_block(corefile).rstrip("\n") + "\n" + block


def remove_hosts_block(corefile: str) -> str:
    out, skipping = [], False
    for line in corefile.splitlines(keepends=True):
        if line.startswith(_CORE_MARK) and not line.startswith(f"{_CORE_MARK}end"):
            skipping = True
            continue
        if skipping and line.startswith("# egress-harness: end"):
            skipping = False
            continue
        if not skipping:
            out.append(line)
    return "".join(out)


# ------------------------------------------------------------------------------ the backend
class KubeBackend:
    """Shared by KindBackend and ClusterBackend; they start the cluster side and set these fields."""

    name = "kube"
    trust_prefix = ""  # on the credentialName Secrets' names (harness/kube/trust.py)
    # How a Corefile change takes effect: a rollout restart of CoreDNS (a cluster of the harness's
    # own), or CoreDNS's `reload` plugin (a cluster whose CoreDNS Deployment is not ours to restart).
    restart_coredns = True

    def __init__(
        self,
        *,
        artifacts: Path,
        kubectl: Kubectl | None = None,
        istioctl: Path | None = None,
        namespaces: dict[str, str] | None = None,
        convergence_timeout: float = 60.0,
    ):
        # Known when the tools are resolved: at once for the cluster backend, by the kind plan's
        # tools step for kind (attach_tools); until then the backend is whole but has no kubectl.
        self._kubectl = kubectl
        self.istioctl = istioctl
        self.artifacts = artifacts
        self.namespaces = {
            "default": "default",
            "test-egress": "test-egress",
            ISTIO_NAMESPACE: ISTIO_NAMESPACE,
            **(namespaces or {}),
        }
        self.convergence_timeout = convergence_timeout
        # istiod's Deployment in ISTIO_NAMESPACE: `istioctl install`'s name; the cluster backend's
        # preflight finds it by its app=istiod label instead (a revisioned install names it istiod-<rev>).
        self.istiod_deployment = "istiod"
        self.istiod_selector = "app=istiod"  # its pods' labels (with revisions: app=istiod,istio.io/rev=<rev>)
        self.generation = 0
        self._forwards: dict[str, PortForward] = {}
        self._admins: dict[str, object] = {}
        # The running pod of each logical pod, read once: pods change only when the harness
        # redeploys one (redeploy() forgets it), and a kubectl process per read cost ~10 s a test.
        self._pods: dict[str, dict] = {}
        # The ready pods istiod's deployment controller made for the Gateway API Gateways applied,
        # "namespace/pod" → the Pod: proxies too. Read when a Gateway's apply or delete settles
        # (_wait_deployed), as _pods is read once: nothing else changes them.
        self._gateways: set[tuple[str, str]] = set()  # (namespace, name) of those Gateways
        self._deployed: dict[str, dict] = {}
        self._istiod: tuple[PortForward, httpx.Client] | None = None
        self._validator = IstioctlValidator(istioctl) if istioctl is not None else None
        self._api: KubeRest | None = None
        self._upstream_client: UpstreamClient | None = None
        self.upstream_control_url: str | None = None  # set by the subclass once the stand-in runs
        self.upstream_control_token: str | None = None  # the token its control API requires
        self.timings: dict[str, float] = {}

    def attach_tools(self, kubectl: Kubectl, istioctl: Path) -> None:
        """The resolved kubectl and istioctl (the kind plan's tools step calls this)."""
        self._kubectl = kubectl
        self.istioctl = istioctl
        self._validator = IstioctlValidator(istioctl)

    @property
    def kubectl(self) -> Kubectl:
        if self._kubectl is None:
            raise HarnessFault(f"the {self.name} backend used kubectl before its tools were resolved")
        return self._kubectl

    # ---------------------------------------------------------------- names
    def namespace(self, logical: str) -> str:
        return self.namespaces.get(logical, logical)

    def map_objects(self, objs: list[dict]) -> list[dict]:
        out = []
        for o in objs:
            o = json.loads(json.dumps(o))
            meta = o.setdefault("metadata", {})
            if "namespace" in meta:
                meta["namespace"] = self.namespace(meta["namespace"])
            out.append(o)
        return out

    def pod_name(self, pod: str) -> tuple[str, str, str]:
        """(namespace, pod name, application container) of a logical "namespace/name" (the one
        running, ready pod of its Deployment)."""
        spec = pod_table.PODS.get(pod)  # read now: the table is the one list of pods
        if spec is None and pod in self._deployed:  # a deployed gateway's pod: its real name
            namespace, name = pod.split("/", 1)
            return namespace, name, "istio-proxy"
        if spec is None:
            raise HarnessError(f"no pod {pod!r} on this backend (pods: {', '.join(pod_table.PODS)})")
        logical_ns = pod.split("/", 1)[0]
        selector, container = spec.selector, spec.container
        namespace = self.namespace(logical_ns)
        cached = self._pods.get(pod)
        if cached is not None:
            return namespace, cached["metadata"]["name"], container
        pods = [
            p
            for p in self.kubectl.json("get", "pods", "-n", namespace, "-l", selector)["items"]
            if not p["metadata"].get("deletionTimestamp") and p["status"].get("phase") == "Running"
        ]
        if len(pods) != 1:
            raise HarnessError(f"expected one running pod for {pod} ({namespace}, {selector}), found {len(pods)}")
        if pods[0]["status"].get("podIP"):
            self._pods[pod] = pods[0]
        return namespace, pods[0]["metadata"]["name"], container

    def _pod_object(self, pod: str) -> dict:
        namespace, name, _ = self.pod_name(pod)
        return self._pods.get(pod) or self._deployed.get(pod) or self.kubectl.json("get", "pod", "-n", namespace, name)

    # ---------------------------------------------------------------- manifests
    def validate(self, objs: list[dict]) -> None:
        if self._validator is None:
            raise HarnessFault(f"the {self.name} backend validated manifests before istioctl was resolved")
        self._validator.validate(objs)

    @property
    def api(self) -> KubeRest:
        """The one apply/delete path (kube_rest.py), from kubectl's kubeconfig: made when first
        used, so a manifest istioctl refuses never needs a cluster."""
        if self._api is None:
            self._api = KubeRest.from_kubeconfig(self.kubectl.kubeconfig)
        return self._api

    def close_api(self) -> None:
        if self._api is not None:
            self._api.close()
            self._api = None

    def apply(self, objs: list[dict]) -> None:
        self.validate(objs)
        istio = any(is_mesh_config(o) for o in objs)
        # istiod's sync state before the change: a NACK of it must be new against this.
        before = snapshot(self, self.convergence_timeout) if istio else None
        stored = self.api.apply(self.map_objects(objs))
        gateways = [_gateway_key(o) for o in stored if is_deployed_gateway(o)]
        self._gateways.update(gateways)
        # A Gateway's deployed pod ready first: convergence then counts its proxy.
        self._wait_deployed(present=gateways)
        if istio:
            self.wait_converged(present=[o for o in stored if is_mesh_config(o)], before=before)
        self._wait_gateway_endpoints(gateways)

    def delete(self, objs: list[dict], *, wait: bool = True) -> None:
        # A cluster always waits: a later command cannot tell a pending change from a settled one.
        mapped = self.map_objects(objs)
        istio = any(is_mesh_config(o) for o in objs)
        before = snapshot(self, self.convergence_timeout) if istio else None
        self.api.delete(mapped)
        gone = [_gateway_key(o) for o in mapped if is_deployed_gateway(o)]
        self._gateways.difference_update(gone)
        self._wait_deployed(absent=gone)
        if istio:
            self.wait_converged(absent=[o for o in mapped if is_mesh_config(o)], before=before)

    # ---------------------------------------------------------------- the Gateway API's deployed gateways
    def _deployed_pods(self, namespace: str, gateway: str) -> list[dict]:
        """The pods istiod's deployment controller made for the Gateway (by the label it sets),
        terminating ones too."""
        return self.kubectl.json("get", "pods", "-n", namespace, "-l", f"{GATEWAY_NAME_LABEL}={gateway}")["items"]

    def _refresh_deployed(self) -> None:
        self._deployed = {}
        for namespace, gateway in sorted(self._gateways):
            for p in self._deployed_pods(namespace, gateway):
                if _ready(p) and not p["metadata"].get("deletionTimestamp"):
                    self._deployed[f"{namespace}/{p['metadata']['name']}"] = p

    def _deployed_for(self, namespace: str, gateway: str) -> dict[str, dict]:
        """Of the ready deployed pods, those of one Gateway."""
        return {
            key: p
            for key, p in self._deployed.items()
            if key.startswith(f"{namespace}/") and p["metadata"].get("labels", {}).get(GATEWAY_NAME_LABEL) == gateway
        }

    def _wait_deployed(
        self, *, present: Sequence[tuple[str, str]] = (), absent: Sequence[tuple[str, str]] = ()
    ) -> None:
        """Each present Gateway's deployed pod running and Ready, each absent one's pods gone. The
        Gateway's `Programmed` condition is no signal: it looks only at the Service. A deployed
        gateway that never gets ready is the control plane's hop (istiod deploys it)."""
        if not present and not absent:
            return
        started = time.monotonic()

        def pending() -> list[str]:
            out = []
            for namespace, gateway in present:
                pods = self._deployed_pods(namespace, gateway)
                if not any(_ready(p) and not p["metadata"].get("deletionTimestamp") for p in pods):
                    phases = [f"{p['metadata']['name']} {p.get('status', {}).get('phase')}" for p in pods]
                    out.append(f"{namespace}/{gateway}: no ready pod ({', '.join(phases) or 'none yet'})")
            for namespace, gateway in absent:
                names = [p["metadata"]["name"] for p in self._deployed_pods(namespace, gateway)]
                out += [f"{namespace}/{n} still there" for n in names]
            return out

        try:
            poll(
                "the deployed gateway of each Gateway API Gateway (istiod's Deployment)",
                pending,
                lambda p: not p,
                timeout=180,
                interval=0.5,
                describe=lambda p: "; ".join(p),
            )
        except WaitTimeout as exc:
            raise HopFailure(CONTROL_PLANE, str(exc), one_line=True) from None
        self._refresh_deployed()
        self.timings["deployed_gateway"] = time.monotonic() - started

    def _wait_gateway_endpoints(self, gateways: list[tuple[str, str]]) -> None:
        """Every sidecar has each Gateway's deployed pod as an endpoint (converge.wait_endpoints)."""
        wanted = [
            (deployed_service_host(namespace, gateway), p["status"]["podIP"])
            for namespace, gateway in gateways
            for p in self._deployed_for(namespace, gateway).values()
        ]
        sidecars = [
            (pod, self.proxy_admin(pod))
            for pod in self.proxies()
            if pod in pod_table.PODS and pod_table.PODS[pod].proxy != "router"
        ]
        wait_endpoints(sidecars, wanted, timeout=30)

    # ---------------------------------------------------------------- convergence
    def proxies(self) -> list[str]:
        """Logical pods that run an istio-proxy now."""
        out = []
        for pod in pod_table.PODS:
            try:
                namespace, name, _ = self.pod_name(pod)
            except HarnessError:
                continue
            spec = self._pod_object(pod)["spec"]
            names = [c["name"] for c in spec.get("containers", []) + spec.get("initContainers", [])]
            if "istio-proxy" in names:
                out.append(pod)
        return out + list(self._deployed)

    def wait_converged(
        self,
        timeout: float | None = None,
        *,
        present: list[dict] | None = None,
        absent: list[dict] | None = None,
        before: dict | None = None,
    ) -> float:
        """harness/converge.py's wait, this backend as its target; the seconds it took."""
        self.generation += 1
        seconds = converge(
            self,
            self.generation,
            present=present or [],
            absent=absent or [],
            before=before,
            timeout=timeout or self.convergence_timeout,
        ).seconds
        self.timings["last_convergence"] = seconds
        return seconds

    # ------------------------------------------------ ConvergenceTarget (harness/converge.py)
    # Each poll is one HTTP request over a long-lived port-forward (istiod's syncz, an Envoy's
    # admin): at 0.5 s most waits slept half a second after the config had already arrived.
    poll_interval = 0.1

    def configz(self, deadline: float | None = None) -> list[dict]:
        return self.istiod_debug(CONFIGZ)

    def apply_marker(self, marker: dict) -> None:
        self.api.apply([marker])

    def proxy_names(self) -> list[str]:
        return self.proxies()

    def has_cluster(self, proxy: str, name_regex: str) -> bool:
        dump = self.pilot_agent_request(proxy, f"config_dump?resource=dynamic_active_clusters&name_regex={name_regex}")
        return bool(json.loads(dump or "{}").get("configs"))

    def istiod_exited(self) -> None:
        """Kubernetes restarts a dead istiod: a wait that outlasts it reads as the control plane's."""

    def istiod_complaints(self) -> str:
        result = self.kubectl.run(
            "logs", "-n", ISTIO_NAMESPACE, f"deploy/{self.istiod_deployment}", "--tail=400", check=False, timeout=30
        )
        lines = [line for line in result.stdout.splitlines() if "\terror\t" in line or "\twarn\t" in line]
        return " | ".join(lines[-5:])

    def pilot_agent_request(self, pod: str, path: str) -> str:
        """GET `path` of the pod's Envoy admin: over the pod's long-lived port-forward (one HTTP
        request, not a process); through `pilot-agent request` in its istio-proxy container (the
        plan's command) when the forward cannot be had."""
        try:
            response = self.proxy_admin(pod).get(path)
            if response.status_code == 200:
                return response.text
        except (httpx.HTTPError, RuntimeError):
            pass
        namespace, name, _ = self.pod_name(pod)
        result = self.kubectl.run(*pilot_agent_request_args(namespace, name, path), check=False, timeout=30)
        if not result.ok:
            raise RuntimeError(f"pilot-agent request GET {path} in {pod}: {result.stderr.strip()[-300:]}")
        return result.stdout

    def syncz(self, deadline: float | None = None) -> list[dict]:
        return self.istiod_debug(SYNCZ)

    def _istiod_client(self) -> httpx.Client:
        """istiod's debug port (15014, what `pilot-discovery request` reads) over a port-forward:
        the request arrives on the pod's loopback, which istiod's debug handlers admit as local."""
        if self._istiod is not None and self._istiod[0].alive():
            return self._istiod[1]
        self._close_istiod()
        name = self.kubectl.run(
            "get",
            "pods",
            "-n",
            ISTIO_NAMESPACE,
            "-l",
            self.istiod_selector,
            "--field-selector=status.phase=Running",
            "-o",
            "jsonpath={.items[0].metadata.name}",
        ).stdout.strip()
        fwd = PortForward(self.kubectl, ISTIO_NAMESPACE, name, ISTIOD_DEBUG_PORT)
        self._istiod = (fwd, httpx.Client(base_url=fwd.url, timeout=10.0, trust_env=False))
        return self._istiod[1]

    def _close_istiod(self) -> None:
        if self._istiod is not None:
            self._istiod[1].close()
            self._istiod[0].close()
            self._istiod = None

    def istiod_debug(self, path: str) -> list[dict]:
        """A list istiod's debug endpoint returns (syncz, configz): over the port-forward to its
        debug port, or, when that cannot be had, read in its container (the plan's command, with
        this cluster's istiod Deployment)."""
        try:
            response = self._istiod_client().get(path)
            if response.status_code == 200:
                data = response.json()
                return data if isinstance(data, list) else []
        except (httpx.HTTPError, RuntimeError, ValueError):
            self._close_istiod()
        result = self.kubectl.run(*istiod_debug_args(path, self.istiod_deployment), check=False, timeout=30)
        if not result.ok:
            raise RuntimeError(f"istiod {path}: {result.stderr.strip()[-300:]}")
        data = json.loads(result.stdout or "[]")
        return data if isinstance(data, list) else []

    # ---------------------------------------------------------------- pods
    def exec(self, pod: str, argv: list[str], timeout: float = 30.0) -> ExecResult:
        namespace, name, container = self.pod_name(pod)
        result = self.kubectl.run(
            "exec", "-n", namespace, name, "-c", container, "--", *argv, check=False, timeout=timeout
        )
        return ExecResult(tuple(argv), result.exit_code, result.stdout, result.stderr)

    def deployed_gateway(self, namespace: str, gateway: str) -> str:
        """The ready pod istiod's deployment controller made for the Gateway (found by the label
        it sets), as "namespace/pod"."""
        namespace = self.namespace(namespace)
        for key in self._deployed_for(namespace, gateway):
            return key
        raise HarnessError(f"no deployed gateway for Gateway {namespace}/{gateway} runs (apply the Gateway first)")

    def pod_address(self, pod: str) -> str:
        return self._pod_object(pod)["status"]["podIP"]

    def has_sidecar(self, pod: str) -> bool:
        return pod in self.proxies()

    def proxy_admin(self, pod: str):
        from harness.envoy_admin import EnvoyAdmin

        namespace, name, _ = self.pod_name(pod)
        key = f"{namespace}/{name}"
        fwd = self._forwards.get(key)
        if fwd is None or not fwd.alive():
            if fwd is not None:
                fwd.close()
            self._forwards[key] = fwd = PortForward(self.kubectl, namespace, name, ENVOY_ADMIN_PORT)
            self._admins.pop(key, None)
        if key not in self._admins:
            self._admins[key] = EnvoyAdmin(fwd.url)
        return self._admins[key]

    def access_log(self, pod: str) -> list[str]:
        return access_log_lines(self.proxy_log(pod))

    def proxy_log(self, pod: str) -> str:
        """The pod's istio-proxy log (its access log, pilot-agent's and Envoy's lines)."""
        namespace, name, _ = self.pod_name(pod)
        return self.api.pod_log(namespace, name, "istio-proxy")

    def upstream(self) -> UpstreamClient:
        if self.upstream_control_url is None:
            raise HarnessError("the stand-in is not running yet")
        if self._upstream_client is None:
            self._upstream_client = UpstreamClient(self.upstream_control_url, token=self.upstream_control_token)
        return self._upstream_client

    def upstream_trust(self) -> dict[str, dict[str, str]]:
        return trust_values(self.trust_prefix)

    def label_namespace(self, namespace: str, labels: dict[str, str | None]) -> None:
        args = [f"{k}-" if v is None else f"{k}={v}" for k, v in labels.items()]
        self.kubectl.run("label", "namespace", self.namespace(namespace), "--overwrite", *args)

    def redeploy(self, pod: str, *, sidecar: bool) -> None:
        """A new pod of the Deployment, with or without a sidecar; waits until it is ready (and,
        with a sidecar, has the current config)."""
        workload = workloads.redeployable(pod)
        if workload is None:
            names = ", ".join(p.key for p in workloads.deployed_pods())
            raise HarnessError(f"only the pods the backend deploys ({names}) can be redeployed, not {pod!r}")
        namespace = self.namespace(pod.split("/", 1)[0])
        self._pods.pop(pod, None)
        patch = {
            "spec": {
                "template": {
                    "metadata": {
                        "labels": {"sidecar.istio.io/inject": "true" if sidecar else "false"},
                        "annotations": {"egress-harness/redeployed-at": str(time.time())},
                    }
                }
            }
        }
        self.kubectl.run("patch", "deployment", workload, "-n", namespace, "--type=merge", "-p", json.dumps(patch))
        self.kubectl.run("rollout", "status", f"deployment/{workload}", "-n", namespace, "--timeout=180s", timeout=200)

        def settled() -> bool:
            _, name, _ = self.pod_name(pod)
            spec = self.kubectl.json("get", "pod", "-n", namespace, name)["spec"]
            names = [c["name"] for c in spec.get("containers", []) + spec.get("initContainers", [])]
            return ("istio-proxy" in names) == sidecar

        poll(f"{pod} to run {'with' if sidecar else 'without'} a sidecar", settled, timeout=120, interval=1.0)
        self._pods.pop(pod, None)
        for key in [k for k in self._forwards if k.startswith(f"{namespace}/{workload}")]:
            self._forwards.pop(key).close()
            self._admins.pop(key, None)
        if sidecar:
            self.wait_converged()

    # ---------------------------------------------------------------- cluster DNS
    def _corefile(self) -> str:
        """CoreDNS's Corefile: the stand-in is added to it as a hosts block, and restored after."""
        return self.kubectl.json("get", "configmap", "coredns", "-n", "kube-system")["data"]["Corefile"]

    def _set_corefile(self, corefile: str) -> None:
        # A merge patch of the one key: `kubectl apply` would leave its last-applied annotation behind.
        patch = json.dumps({"data": {"Corefile": corefile}})
        self.kubectl.run("patch", "configmap", "coredns", "-n", "kube-system", "--type=merge", "-p", patch)
        if self.restart_coredns:
            self.kubectl.run("rollout", "restart", "-n", "kube-system", "deployment/coredns")
            self.kubectl.run(
                "rollout", "status", "-n", "kube-system", "deployment/coredns", "--timeout=120s", timeout=130
            )

    # ---------------------------------------------------------------- evidence
    def collect(self, directory: Path) -> None:
        """The evidence of every backend (harness/mesh_evidence.py), each proxy read through
        pilot-agent in its istio-proxy container, plus the pod YAML, events and pods of the cluster."""
        directory.mkdir(parents=True, exist_ok=True)

        def save(name: str, fetch: Callable[[], object]) -> None:
            mesh_evidence.save(directory, name, fetch)

        # Functions of the pod, bound with partial: mypy cannot type a lambda with a default argument.
        def pod_yaml(pod: str) -> str:
            namespace, name, _ = self.pod_name(pod)
            return self.kubectl.run("get", "pod", "-n", namespace, name, "-o", "yaml").stdout

        def admin_json(pod: str, path: str) -> dict:
            body = json.loads(self.pilot_agent_request(pod, path) or "{}")
            return stat_values(body) if path.startswith("stats") else body

        # The pod table's pods and the deployed gateways of the Gateway API Gateways still applied.
        for pod in [*pod_table.PODS, *self._deployed]:
            d = mesh_evidence.save_proxy(
                directory,
                pod,
                {name: functools.partial(admin_json, pod, path) for name, path in mesh_evidence.PROXY_FILES.items()},
            )
            mesh_evidence.save(d, "pod.yaml", functools.partial(pod_yaml, pod))
            mesh_evidence.save(d, "istio-proxy.log", functools.partial(self.proxy_log, pod))
        save("istiod-configz.json", lambda: self.istiod_debug(CONFIGZ))
        save(
            "istiod.log",
            lambda: (
                self.kubectl.run(
                    "logs", "-n", ISTIO_NAMESPACE, f"deploy/{self.istiod_deployment}", "--tail=2000"
                ).stdout
            ),
        )
        save("istiod-syncz.json", self.syncz)
        save("events.txt", lambda: self.kubectl.run("get", "events", "-A", "--sort-by=.lastTimestamp").stdout)
        save("pods.txt", lambda: self.kubectl.run("get", "pods", "-A", "-o", "wide").stdout)
        # A deployed gateway's rollouts (a second ReplicaSet) and what the EndpointSlices say of its
        # pods: what a sidecar's "no healthy upstream" right after the endpoint wait comes from.
        save(
            "workloads.yaml",
            lambda: self.kubectl.run("get", "deployments,replicasets,endpointslices", "-A", "-o", "yaml").stdout,
        )
        save("upstream-records.json", lambda: [r.__dict__ for r in self.upstream().records()])
        save("kubectl-commands.txt", lambda: "\n".join(self.kubectl.log[-500:]))
        if self._api is not None:  # what the one apply path sent (harness/kube_rest.py)
            api = self._api
            save("api-requests.txt", lambda: "\n".join(api.log[-500:]))

    def look_inside(self) -> list[str]:
        namespaces = " ".join(sorted({self.namespace(n) for n in ("default", "test-egress")}))
        return [
            f"export KUBECONFIG={self.kubectl.kubeconfig}",
            f"then e.g.: kubectl get gateway,virtualservice,destinationrule,serviceentry -A; "
            f"kubectl get pods -o wide -n {ISTIO_NAMESPACE} (and the harness's namespaces: {namespaces})",
        ]

    def close_forwards(self) -> None:
        self.close_api()
        self._close_istiod()
        for admin in self._admins.values():
            close = getattr(admin, "close", None)
            if close:
                close()
        self._admins.clear()
        for fwd in self._forwards.values():
            fwd.close()
        self._forwards.clear()
        if self._upstream_client is not None:
            self._upstream_client.close()
            self._upstream_client = None


def _gateway_key(obj: dict) -> tuple[str, str]:
    meta = obj["metadata"]
    return meta.get("namespace") or "default", meta["name"]


def _ready(pod: dict) -> bool:
    conditions = (pod.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


def access_log_lines(log: str) -> list[str]:
    """The access-log lines of an istio-proxy container's log: the JSON objects with every field
    of harness/meshconfig.py's format (pilot-agent's and Envoy's own lines are not JSON)."""
    from harness.meshconfig import ACCESS_LOG_FIELDS

    lines = []
    for line in log.splitlines():
        if not line.startswith("{"):
            continue
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if isinstance(entry, dict) and set(ACCESS_LOG_FIELDS) <= set(entry):
            lines.append(line)
    return lines
