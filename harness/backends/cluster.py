"""The cluster backend: an existing cluster from a kubeconfig, for users who have outgrown kind.

It never creates or deletes the cluster, and never installs Istio: without istiod and the egress
gateway it refuses, naming the `istioctl install` command that would install them. What it
creates lives in namespaces of its own, `eh-<run>-default`, `eh-<run>-test-egress` and
`eh-<run>-internet` (the seed's "default" and "test-egress" are mapped onto the first two), labelled
egress-harness/run=<run>, and is deleted at the end. The only things it has to touch outside them,
all put back at the end:
  - the credentialName secrets, in istio-system (Istio reads a gateway's secrets from its own
    namespace), named eh-<run>-… so that none of the owner's is overwritten, labelled with the run
    and deleted;
  - the convergence marker, ServiceEntry istio-system/egress-harness-sync-<run>, deleted;
  - a CoreDNS server block for edition.cnn.com: the Corefile key of the coredns ConfigMap is
    patched, CoreDNS's `reload` plugin reads it (CoreDNS is not restarted, its Deployment not
    changed), and the Corefile is put back as it was;
  - namespace labels the suites set on kube-system / istio-system (seed §4), restored.
The gateway's Envoy resolves a `resolution: DNS` ServiceEntry's host through the cluster's DNS, so
the stand-in's name has to be there: the one alternative, hostAliases on the gateway's Deployment,
would change and roll the owner's gateway. tests/kind/test_cluster_backend.py lists the cluster
before and after a run and holds the two equal.
Images come from a registry the cluster can pull from: EGRESS_HARNESS_SLEEP_IMAGE and
EGRESS_HARNESS_UPSTREAM_IMAGE (build them with docs/kind-backend.md, "Images for an existing cluster").

start() runs the setup steps of the plan (cluster_plan(backend=self): the list a dry run
prints), one line each, `cluster step N/M: <the plan's title>`: preflight → the stand-in → CoreDNS →
namespaces, secrets, sleep pods → DNS check in the pods → first convergence. stop() does the
teardown itself, every part even when one fails, and reports all that failed.
"""

from __future__ import annotations

import functools
import json
import os
import re
import secrets
import time
from collections.abc import Callable
from pathlib import Path

from harness import kube_rest, stand_in
from harness.backends import tools
from harness.backends.kube import ISTIO_NAMESPACE, UPSTREAM_HOST, KubeBackend, add_hosts_block
from harness.backends.kube_steps import (
    FIRST_CONVERGENCE_TIMEOUT,
    corefile_cmds,
    first_convergence_step,
    istio_install_hint,
    per_test_steps,
    seed_wait_step,
    setup_manifests,
)
from harness.backends.steps import Plan, Step, bind_actions, run_steps
from harness.console import say as _say
from harness.errors import HarnessError
from harness.kube import workloads
from harness.kube.kubectl import Kubectl, PortForward
from harness.kube.templates import render_fixture
from harness.kube.trust import gateway_trust_pems
from harness.pki import RunPKI
from harness.sync import MARKER_NAME
from harness.wait import poll

RUN_LABEL = "egress-harness/run"
# CoreDNS's `reload` checks the Corefile every 30 s (with up to 15 s of jitter), after the kubelet
# has updated the mounted ConfigMap: the deadline for every CoreDNS pod to reload it.
DNS_RELOAD_TIMEOUT = 150


def run_namespaces(run_id: str) -> dict[str, str]:
    """The run's own namespaces: one per namespace of the deployed pods (harness/pod_table.py), and
    the stand-in's "internet"."""
    return {ns: f"eh-{run_id}-{ns}" for ns in [*workloads.workload_namespaces(), "internet"]}


def kubeconfig_from(option: str | None) -> Path:
    value = option or os.environ.get("KUBECONFIG")
    if not value:
        raise HarnessError("BACKEND=cluster needs a kubeconfig: pass --egress-kubeconfig PATH (or set KUBECONFIG)")
    path = Path(value.split(os.pathsep)[0]).expanduser()
    if not path.is_file():
        raise HarnessError(
            f"kubeconfig {path} does not exist: pass --egress-kubeconfig with the path of an existing cluster's kubeconfig"
        )
    problem = kube_rest.kubeconfig_problem(path)
    if problem:
        raise HarnessError(
            f"kubeconfig {path} {problem}: pass --egress-kubeconfig with an existing cluster's kubeconfig"
        )
    return path


def images_from_env() -> tuple[str, str]:
    sleep, up = os.environ.get("EGRESS_HARNESS_SLEEP_IMAGE"), os.environ.get("EGRESS_HARNESS_UPSTREAM_IMAGE")
    if not sleep or not up:
        raise HarnessError(
            "BACKEND=cluster pulls its images from your registry: set EGRESS_HARNESS_SLEEP_IMAGE and "
            "EGRESS_HARNESS_UPSTREAM_IMAGE (see docs/kind-backend.md, 'Images for an existing cluster')"
        )
    return sleep, up


class ClusterBackend(KubeBackend):
    name = "cluster"

    def __init__(self, *, kubeconfig: Path, istio_version: str, artifacts: Path):
        self.istio_version = istio_version
        self.run_id = secrets.token_hex(3)
        self.run_ns = run_namespaces(self.run_id)
        self.sleep_image, self.upstream_image = images_from_env()
        self.pki: RunPKI | None = None
        self._coredns_original: str | None = None
        self._label_originals: dict[str, dict[str, str]] = {}
        self._upstream_forward: PortForward | None = None
        self._upstream_address: str | None = None  # the stand-in Service's ClusterIP, once it runs
        self._started = False
        self.trust_prefix = f"eh-{self.run_id}-"
        self.restart_coredns = False
        self.marker_name = f"{MARKER_NAME}-{self.run_id}"
        kubectl = tools.resolve_kubectl(fetch=True)
        istioctl = tools.resolve_istioctl(istio_version, fetch=True)
        super().__init__(
            kubectl=Kubectl(kubectl.fetched_path(), kubeconfig),
            istioctl=istioctl.fetched_path(),
            artifacts=artifacts,
            namespaces={ns: self.run_ns[ns] for ns in workloads.workload_namespaces()},
        )
        # The marker's hosts (sync-<generation>.…) of this run, apart from any other run's on the
        # same cluster: a proxy holding another run's marker cluster is not converged for this one.
        self.generation = int(self.run_id, 16) * 1000

    def preflight(self) -> None:
        """Reach the cluster, check kubectl's skew and that Istio is there; nothing is changed."""
        version = self.kubectl.run("version", "-o", "json", check=False, timeout=30)
        try:
            server = json.loads(version.stdout)["serverVersion"]
        except (ValueError, KeyError):
            raise HarnessError(
                f"cannot reach the cluster of {self.kubectl.kubeconfig}: "
                f"{(version.stderr.strip().splitlines() or ['no answer'])[-1]} (check its server and credentials)"
            ) from None
        server_minor = f"{server['major']}.{server['minor'].rstrip('+')}"
        client = tools.kubectl_version_of(self.kubectl.path)
        if not tools.kubectl_fits(client, server_minor):
            raise HarnessError(
                f"kubectl {client} is more than one minor away from the cluster's Kubernetes {server_minor}: "
                f"set EGRESS_HARNESS_KUBECTL to a kubectl {server_minor}.x"
            )
        self.find_istio()
        corefile = self.kubectl.run("get", "configmap", "-n", "kube-system", "coredns", "-o", "name", check=False)
        if not corefile.ok:
            raise HarnessError(
                "this cluster has no CoreDNS ConfigMap (kube-system/coredns): the harness points the stand-in's "
                "names at it through CoreDNS, the DNS kubeadm, kind and most distributions run"
            )
        if not re.search(r"^\s*reload\b", self._corefile(), re.MULTILINE):
            raise HarnessError(
                "this cluster's CoreDNS has no `reload` plugin in its Corefile (kube-system/coredns), so the "
                "stand-in's name could not be added without restarting CoreDNS: add `reload` to the Corefile's "
                "server block, as kubeadm's default Corefile has it"
            )

    def find_istio(self) -> None:
        """istiod, found by its app=istiod label in istio-system (`istioctl install` names it istiod,
        a revisioned install istiod-<rev>; several revisions: the one EGRESS_HARNESS_ISTIOD names),
        and the seed's egress gateway where the task's YAML points: Deployment and Service
        istio-egressgateway in istio-system, pods labelled istio=egressgateway."""
        hub, tag = tools.istio_images(self.istio_version)
        install = f"install it with: {istio_install_hint(hub, tag)}"
        found = self.kubectl.json("get", "deployment", "-n", ISTIO_NAMESPACE, "-l", "app=istiod")["items"]
        names = sorted(d["metadata"]["name"] for d in found)
        named = os.environ.get("EGRESS_HARNESS_ISTIOD")
        if not found:
            raise HarnessError(f"no istiod (a Deployment labelled app=istiod) in {ISTIO_NAMESPACE}; {install}")
        if named and named not in names:
            raise HarnessError(f"EGRESS_HARNESS_ISTIOD={named}: {ISTIO_NAMESPACE} has istiod Deployments {names}")
        if len(found) > 1 and not named:
            raise HarnessError(
                f"{ISTIO_NAMESPACE} runs several istiod revisions {names}: "
                f"set EGRESS_HARNESS_ISTIOD to the one whose proxies the run should check"
            )
        istiod = next(d for d in found if d["metadata"]["name"] == (named or names[0]))
        self.istiod_deployment = istiod["metadata"]["name"]
        labels = istiod["spec"]["selector"].get("matchLabels") or {"app": "istiod"}
        self.istiod_selector = ",".join(f"{k}={v}" for k, v in sorted(labels.items()))
        gateway = self.kubectl.run(
            "get", "deployment,service", "-n", ISTIO_NAMESPACE, "istio-egressgateway", "-o", "name", check=False
        ).stdout.split()
        if len(gateway) < 2:
            elsewhere = self.kubectl.run(
                "get", "pods", "-A", "-l", "istio=egressgateway", "-o", "name", check=False
            ).stdout.split()
            raise HarnessError(
                f"the seed's egress gateway (Deployment and Service istio-egressgateway in {ISTIO_NAMESPACE}, "
                f"where the task's YAML routes to) is not there (found: {gateway or 'nothing'}; pods labelled "
                f"istio=egressgateway: {elsewhere or 'none'}); {install}"
            )
        _say(
            f"cluster: istiod {ISTIO_NAMESPACE}/{self.istiod_deployment} ({self.istiod_selector}), "
            f"egress gateway {ISTIO_NAMESPACE}/istio-egressgateway"
        )

    def apply_marker(self, marker: dict) -> None:
        """The convergence marker under this run's own name (egress-harness-sync-<run>)."""
        marker = {**marker, "metadata": {**marker["metadata"], "name": self.marker_name}}
        super().apply_marker(marker)

    def make_plan(self) -> Plan:
        """This run's plan: the dry run's steps, the setup ones bound to the actions that perform them here."""
        return cluster_plan(
            kubeconfig=self.kubectl.kubeconfig, istio_version=self.istio_version, run_id=self.run_id, backend=self
        )

    def start(self) -> None:
        t0 = time.monotonic()

        def timed(step: Step) -> None:
            if step.timing:
                self.timings[step.timing] = time.monotonic() - t0

        run_steps("cluster step", self.make_plan().steps, timed)

    # ---------------------------------------------------------------- the plan's setup steps, after preflight
    def start_upstream(self) -> None:
        """The stand-in in the run's own namespace, with a certificate from the run's PKI."""
        self._started = True  # from here on stop() has something to undo
        self.pki = RunPKI(self.artifacts / "cluster" / f"pki-{self.run_id}")
        server = stand_in.issue_upstream_certificate(self.pki.public_ca, UPSTREAM_HOST)
        token = secrets.token_urlsafe(24)  # in the run's Secret: a pod of the mesh cannot reset the records
        self.kubectl.run(
            "apply",
            "-f",
            "-",
            input=render_fixture(
                "upstream-in-cluster.yaml.j2",
                namespace=self.run_ns["internet"],
                run_labels={RUN_LABEL: self.run_id},
                image=self.upstream_image,
                args=stand_in.upstream_command(),
                cert_chain_pem=server.chain_path.read_text(),
                key_pem=server.key_pem.decode(),
                client_ca_pem=self.pki.public_ca.cert_pem.decode(),
                control_token=token,
            ),
        )
        self.kubectl.run(
            "rollout",
            "status",
            "-n",
            self.run_ns["internet"],
            "deployment/mock-upstream",
            "--timeout=180s",
            timeout=190,
        )
        self._upstream_address = self.kubectl.json("get", "service", "-n", self.run_ns["internet"], "edition-cnn-com")[
            "spec"
        ]["clusterIP"]
        pod = self.kubectl.json("get", "pods", "-n", self.run_ns["internet"], "-l", "app=mock-upstream")["items"][0]
        self._upstream_forward = PortForward(self.kubectl, self.run_ns["internet"], pod["metadata"]["name"], 9901)
        self.upstream_control_url = self._upstream_forward.url
        self.upstream_control_token = token

    def point_dns_at_upstream(self) -> None:
        assert self._upstream_address is not None, "start_upstream runs first"
        self._coredns_original = self._corefile()
        self._reloaded_corefile(add_hosts_block(self._coredns_original, self._upstream_address, run=self.run_id))

    def _reloaded_corefile(self, corefile: str) -> None:
        """The Corefile patched, then every CoreDNS pod's reload of it awaited: its reload plugin
        logs "Reloading complete" once it serves the new Corefile. One pod answering is not enough:
        a pod still on the old Corefile would answer the next lookup with the old address."""
        pods = self.kubectl.run(
            "get", "pods", "-n", "kube-system", "-l", "k8s-app=kube-dns", "-o", "name", timeout=30
        ).stdout.split()
        changed = time.monotonic()
        self._set_corefile(corefile)

        def not_reloaded() -> list[str]:
            since = f"--since={int(time.monotonic() - changed) + 2}s"  # the server's clock, not ours
            return [
                pod
                for pod in pods
                if "Reloading complete"
                not in self.kubectl.run("logs", "-n", "kube-system", pod, since, check=False).stdout
            ]

        poll(
            f"every CoreDNS pod ({len(pods)}) to reload the Corefile (its reload plugin's 'Reloading complete')",
            not_reloaded,
            ok=lambda left: not left,
            timeout=DNS_RELOAD_TIMEOUT,
            interval=2.0,
            describe=lambda left: f"not yet: {left}",
        )

    def apply_setup_manifest(self, name: str) -> None:
        self.kubectl.run("apply", "-f", "-", input=self._setup_manifests[name])

    @functools.cached_property
    def _setup_manifests(self) -> dict[str, str]:
        """Rendered once, for every apply step: the trust PEMs are made here (a new CA each time)."""
        assert self.pki is not None, "start_upstream makes the PKI first"
        return setup_manifests(
            sleep_image=self.sleep_image,
            namespaces=self.run_ns,
            run_labels={RUN_LABEL: self.run_id},
            pems=gateway_trust_pems(self.pki),
            trust_prefix=self.trust_prefix,
        )

    def wait_for_seed(self) -> None:
        for ns, target in workloads.rollouts(self.run_ns):
            self.kubectl.run("rollout", "status", "-n", ns, target, "--timeout=180s", timeout=190)
        address = self._upstream_address
        dns = workloads.dns_check_pod().key
        poll(
            f"{UPSTREAM_HOST} to resolve to the stand-in ({address}) in {dns}",
            lambda: self.exec(dns, ["getent", "hosts", UPSTREAM_HOST]).stdout.split()[:1],
            ok=lambda got: got == [address],
            timeout=DNS_RELOAD_TIMEOUT,
            interval=1.0,
        )

    def label_namespace(self, namespace: str, labels: dict[str, str | None]) -> None:
        actual = self.namespace(namespace)
        if actual not in self.run_ns.values() and actual not in self._label_originals:
            self._label_originals[actual] = dict(
                self.kubectl.json("get", "namespace", actual)["metadata"].get("labels") or {}
            )
        super().label_namespace(namespace, labels)

    def stop(self) -> None:
        if not self._started:
            return
        self.close_forwards()
        if self._upstream_forward is not None:
            self._upstream_forward.close()
        errors = []
        steps: list[tuple[str, Callable[[], object]]] = [
            (
                "delete the run's namespaces",
                lambda: self.kubectl.run(
                    "delete", "namespace", "-l", f"{RUN_LABEL}={self.run_id}", "--wait=true", timeout=300
                ),
            ),
            (
                "delete the run's secrets",
                lambda: self.kubectl.run("delete", "secret", "-n", ISTIO_NAMESPACE, "-l", f"{RUN_LABEL}={self.run_id}"),
            ),
            (
                "delete the marker ServiceEntry",
                lambda: self.kubectl.run(
                    "delete", "serviceentry", "-n", ISTIO_NAMESPACE, self.marker_name, "--ignore-not-found"
                ),
            ),
        ]
        if self._coredns_original is not None:
            steps.append(("restore CoreDNS", functools.partial(self._reloaded_corefile, self._coredns_original)))
        for ns, original in self._label_originals.items():

            def restore(ns=ns, original=original):
                now = self.kubectl.json("get", "namespace", ns)["metadata"].get("labels") or {}
                args = [f"{k}-" for k in now if k not in original] + [
                    f"{k}={v}" for k, v in original.items() if now.get(k) != v
                ]
                if args:
                    self.kubectl.run("label", "namespace", ns, "--overwrite", *args)

            steps.append((f"restore the labels of {ns}", restore))
        for what, step in steps:
            try:
                step()
            except Exception as exc:  # noqa: BLE001 - do every step, report all
                errors.append(f"{what}: {exc}")
        if self.pki is not None:
            self.pki.cleanup()
        self._started = False
        if errors:
            raise RuntimeError("cluster teardown left: " + "; ".join(errors))


# ------------------------------------------------------------------------------ the cluster plan
def cluster_plan(
    *, kubeconfig: Path | None, istio_version: str, run_id: str = "<run>", backend: ClusterBackend | None = None
) -> Plan:
    """The cluster backend's steps, in the order they run. A dry run prints them; given `backend` (a
    real run), the setup steps carry the actions ClusterBackend.start() runs. The teardown is printed
    only: stop() does every part of it even when one fails, and reports them all."""
    kubectl = tools.resolve_kubectl(fetch=False)
    istioctl = tools.resolve_istioctl(istio_version, fetch=False)
    hub, tag = tools.istio_images(istio_version)
    kc = kubeconfig or Path("$KUBECONFIG")
    kubectl_bin = str(kubectl.path or "kubectl")
    k = [kubectl_bin, f"--kubeconfig={kc}"]
    ns = run_namespaces(run_id)
    labels = {RUN_LABEL: run_id}
    act = bind_actions(backend)
    versions = {"Istio (must already be installed)": istio_version, "kubectl": kubectl.version}
    steps = [
        Step(
            "Refuse unless Istio and its egress gateway are installed",
            [
                k + ["get", "deployment", "-n", ISTIO_NAMESPACE, "-l", "app=istiod"],
                k + ["get", "deployment,service", "-n", ISTIO_NAMESPACE, "istio-egressgateway"],
            ],
            note=f"istiod by its label (a revisioned istiod-<rev> too; several: EGRESS_HARNESS_ISTIOD names one); "
            f"otherwise: {istio_install_hint(hub, tag)}",
            run=act(ClusterBackend.preflight),
        ),
        Step(
            "Run the stand-in in a namespace of its own",
            [k + ["apply", "-f", "-"]],
            note=f"namespace {ns['internet']}",
            run=act(ClusterBackend.start_upstream),
        ),
        Step(
            "CoreDNS hosts entry, read by CoreDNS's reload plugin (the Corefile restored at the end)",
            corefile_cmds(k, restart=False),
            add_hosts_block("", "<stand-in Service ClusterIP>", run=run_id),
            run=act(ClusterBackend.point_dns_at_upstream),
        ),
        *(
            Step(
                f"Apply {fname}", [k + ["apply", "-f", "-"]], text, run=act(ClusterBackend.apply_setup_manifest, fname)
            )
            for fname, text in setup_manifests(
                sleep_image="$EGRESS_HARNESS_SLEEP_IMAGE",
                namespaces=ns,
                run_labels=labels,
                trust_prefix=f"eh-{run_id}-",
            ).items()
        ),
        seed_wait_step(k, ns, act(ClusterBackend.wait_for_seed)),
        first_convergence_step(k, act(ClusterBackend.wait_converged, FIRST_CONVERGENCE_TIMEOUT)),
        *per_test_steps(
            str(istioctl.path or "istioctl"), k, f" (namespaces mapped to {ns['default']}, {ns['test-egress']})"
        ),
    ]
    teardown = [
        Step(
            "Delete the run's namespaces and secrets, restore CoreDNS and namespace labels",
            [
                k + ["delete", "namespace", "-l", f"{RUN_LABEL}={run_id}"],
                k + ["delete", "secret", "-n", ISTIO_NAMESPACE, "-l", f"{RUN_LABEL}={run_id}"],
                k + ["delete", "serviceentry", "-n", ISTIO_NAMESPACE, f"{MARKER_NAME}-{run_id}", "--ignore-not-found"],
                corefile_cmds(k, restart=False)[1],
            ],
        )
    ]
    return Plan("cluster", versions, [kubectl, istioctl], steps, teardown)
