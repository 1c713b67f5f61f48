"""The local mesh itself: the seed's first scenario end to end, config errors surfacing with the
right message, and teardown that leaves nothing after Ctrl-C and after SIGKILL."""

from __future__ import annotations

import json
import os
import select
import shutil
import signal
import ssl
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path

import pytest

from harness.backend import GATEWAY, SLEEP
from harness.checks.http_gateway import URL
from harness.curl_result import CurlResult, curl_command
from harness.errors import ConfigRejected, HarnessError, ManifestRejected
from harness.evidence import Evidence
from harness.local.runstate import STATE_ROOT, pid_alive, proc_start_time
from harness.scenario import Scenario
from tests.helpers.expect import eventually

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.mesh


def test_seed_first_scenario_plaintext(mesh):
    """Issue 3's acceptance: HTTP through the egress gateway, plaintext mode, on the real Istio."""
    sc = Scenario(mesh, Evidence(), "plaintext")
    sc.apply("http/gateway")
    try:
        mark = mesh.upstream().mark()
        res = mesh.exec(SLEEP, ["curl", "-sSL", "-o", "/dev/null", "-D", "-", URL])
        result = CurlResult.parse(res.exit_code, res.stdout, res.stderr)
        assert result.statuses == [301, 200], result.describe()
        reqs = mesh.upstream().wait_for_requests(2, since=mark)
        port80 = [r for r in reqs if r.listener == "http"]
        assert [r.peer_address for r in port80] == [mesh.pod_address(GATEWAY)], [r.summary() for r in reqs]
    finally:
        sc.delete_all()


def test_invalid_manifest_is_rejected_before_traffic(mesh):
    bad = {
        "apiVersion": "networking.istio.io/v1",
        "kind": "VirtualService",
        "metadata": {"name": "bad", "namespace": "default"},
        "spec": {
            "hosts": ["edition.cnn.com"],
            "http": [{"route": [{"destination": {"host": "edition.cnn.com", "port": {"number": 99999}}}]}],
        },
    }
    with pytest.raises(ManifestRejected, match="port number 99999 must be in the range"):
        mesh.apply([bad])
    assert "VirtualService.default.bad.yaml" not in mesh.manifests.applied


def test_unsupported_kind_and_missing_namespace_are_refused(mesh):
    with pytest.raises(HarnessError, match="cannot apply kind 'Deployment'"):
        mesh.apply([{"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "x", "namespace": "default"}}])
    with pytest.raises(HarnessError, match="has no metadata.namespace"):
        mesh.apply(
            [
                {
                    "apiVersion": "networking.istio.io/v1",
                    "kind": "ServiceEntry",
                    "metadata": {"name": "x"},
                    "spec": {"hosts": ["x.example"], "ports": [{"number": 80, "name": "http", "protocol": "HTTP"}]},
                }
            ]
        )


def test_envoy_nack_fails_with_envoys_message(mesh):
    """Config istiod accepts but Envoy refuses (a Lua filter that does not compile) fails the
    apply at once with Envoy's own message, naming the proxy."""
    broken = {
        "apiVersion": "networking.istio.io/v1alpha3",
        "kind": "EnvoyFilter",
        "metadata": {"name": "broken-lua", "namespace": "istio-system"},
        "spec": {
            "workloadSelector": {"labels": {"istio": "egressgateway"}},
            "configPatches": [
                {
                    "applyTo": "HTTP_FILTER",
                    "match": {
                        "context": "GATEWAY",
                        "listener": {
                            "filterChain": {
                                "filter": {
                                    "name": "envoy.filters.network.http_connection_manager",
                                    "subFilter": {"name": "envoy.filters.http.router"},
                                }
                            }
                        },
                    },
                    "patch": {
                        "operation": "INSERT_BEFORE",
                        "value": {
                            "name": "envoy.filters.http.lua",
                            "typed_config": {
                                "@type": "type.googleapis.com/envoy.extensions.filters.http.lua.v3.Lua",
                                "default_source_code": {"inline_string": "this is not lua"},
                            },
                        },
                    },
                }
            ],
        },
    }
    # A listener must exist for the patch to apply to: the seed's first scenario gives one.
    sc = Scenario(mesh, Evidence(), "plaintext")
    sc.apply("http/gateway")
    try:
        with pytest.raises(ConfigRejected) as err:
            mesh.apply([broken])
        assert "istio-egressgateway" in str(err.value) and "Listener" in str(err.value)
    finally:
        mesh.delete([broken])
        sc.delete_all()


def test_api_server_holds_what_istiod_sees(mesh):
    """On the run's real kube-apiserver, as kubectl shows it: the pods as Pods with their
    addresses, the gateway's Service with an EndpointSlice of the gateway pod, the trust Secrets,
    and what a stage applied (through the same server-side apply as the kind backend)."""
    sc = Scenario(mesh, Evidence(), "plaintext")
    sc.apply("http/gateway")
    try:
        kubectl = mesh.registry.kubectl
        pods = {
            f"{p['metadata']['namespace']}/{p['metadata']['name']}": p
            for p in kubectl.json("get", "pods", "-A")["items"]
        }
        for key in (GATEWAY, SLEEP):
            assert pods[key]["status"]["podIP"] == mesh.pod_address(key), pods[key]["status"]
        slices = kubectl.json(
            "get", "endpointslices", "-n", "istio-system", "-l", "kubernetes.io/service-name=istio-egressgateway"
        )["items"]
        assert [e["addresses"] for s in slices for e in s["endpoints"]] == [[mesh.pod_address(GATEWAY)]]
        secrets = {s["metadata"]["name"] for s in kubectl.json("get", "secrets", "-n", "istio-system")["items"]}
        assert {"edition-cnn-com-ca", "untrusted-ca", "edition-cnn-com-client"} <= secrets
        names = {v["metadata"]["name"] for v in kubectl.json("get", "virtualservices", "-n", "default")["items"]}
        assert names, "the stage's VirtualService is not on the API server"
    finally:
        sc.delete_all()


def test_istioctl_looks_inside_through_the_api_server(mesh, tmp_path):
    """`istioctl proxy-status` and `proxy-config` with only the run's KUBECONFIG, as on a cluster:
    each port-forwards through the real API server to the node's pod-streams (istiod's xDS port,
    Envoy's admin port)."""
    env = {"PATH": os.environ["PATH"], "KUBECONFIG": str(mesh.control_plane.kubeconfig), "HOME": str(tmp_path)}
    istioctl = str(mesh.binaries.istioctl)

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([istioctl, *args], env=env, capture_output=True, text=True, timeout=60)

    status = run("proxy-status")
    assert status.returncode == 0, status.stderr
    assert "sleep.default" in status.stdout and "istio-egressgateway.istio-system" in status.stdout, status.stdout
    clusters = run("proxy-config", "clusters", "sleep.default", "-o", "json")
    assert clusters.returncode == 0, clusters.stderr
    names = {c.get("name") for c in json.loads(clusters.stdout)}
    assert "outbound|443||istio-egressgateway.istio-system.svc.cluster.local" in names, sorted(names)
    assert "port-forward default/sleep:15000" in (mesh.log_dir / "pod-streams.log").read_text()


def test_kubectl_logs_reads_the_pods_logs_through_the_api_server(mesh, tmp_path):
    """`kubectl logs` (tail and follow) of the proxies and istiod, served by the node's pod-streams
    from the files the processes write."""
    kubectl = [str(mesh.control_plane.kubectl_bin), f"--kubeconfig={mesh.control_plane.kubeconfig}"]
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path)}
    tail = subprocess.run(
        [*kubectl, "logs", "-n", "istio-system", "istio-egressgateway", "-c", "istio-proxy", "--tail=3"],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert tail.returncode == 0, tail.stderr
    on_disk = mesh.proxy(GATEWAY).log_path.read_text().splitlines()
    assert tail.stdout.splitlines() == on_disk[-3:]
    follow = subprocess.Popen(
        [*kubectl, "logs", "-f", "--tail=1", "-n", "istio-system", "istiod"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert follow.stdout is not None

        def next_line(what: str) -> str:
            ready, _, _ = select.select([follow.stdout], [], [], 15)
            assert ready, f"kubectl logs -f printed nothing within 15 s: {what}"
            return follow.stdout.readline()

        assert next_line("the last line (--tail=1)").strip()
        # istiod logs each push; a change of the harness's own marker makes one, after the stream
        # is open (its first line came).
        mesh.convergence.wait()
        line = next_line("after a push")
        assert "\t" in line and line.startswith("20"), line
    finally:
        follow.kill()
        follow.wait()


def test_only_the_api_server_reaches_the_node_port_forward(mesh):
    """pod-streams serves only the API server's kubelet-client certificate: not a client without
    one, and not the admin's, though the same CA signed it."""
    from harness.local.apiserver import KUBELET_PORT, NODE_ADDRESS

    cp = mesh.control_plane
    for cert in (None, "admin"):
        ctx = ssl.create_default_context(cafile=str(cp.certs.ca.cert_path))
        if cert:
            ctx.load_cert_chain(cp.certs.path(f"{cert}.pem"), cp.certs.path(f"{cert}.key"))
        sock = cp.netns.socket()
        sock.settimeout(5)
        sock.connect((NODE_ADDRESS, KUBELET_PORT))
        with (
            pytest.raises((ssl.SSLError, ConnectionError)),
            ctx.wrap_socket(sock, server_hostname=NODE_ADDRESS) as tls,
        ):
            tls.sendall(b"GET /portForward/default/sleep HTTP/1.1\r\nHost: x\r\n\r\n")
            if not tls.recv(1):  # TLS 1.3: the refusal arrives after the handshake
                raise ConnectionError("closed without an answer")


def test_api_server_validation_is_one_line(mesh):
    """What the API server itself refuses (here past istioctl: the CRD schema wants a list of
    hosts) fails the apply with the server's message on one line."""
    bad = {
        "apiVersion": "networking.istio.io/v1",
        "kind": "ServiceEntry",
        "metadata": {"name": "bad-hosts", "namespace": "default"},
        "spec": {"hosts": "edition.cnn.com", "ports": [{"number": 80, "name": "http", "protocol": "HTTP"}]},
    }
    with pytest.raises(ManifestRejected) as err:
        mesh.registry.write_all([bad])
    assert "spec.hosts" in str(err.value) and "\n" not in str(err.value), str(err.value)


def _child_mesh(artifacts: Path) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen(
        [sys.executable, str(REPO / "tests/helpers/run_mesh.py"), str(artifacts)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=dict(os.environ, PYTHONPATH=str(REPO)),
    )
    line = proc.stdout.readline()
    if not line.startswith("READY "):
        proc.kill()
        raise AssertionError(f"child mesh did not start: {line!r} {proc.stderr.read()[-2000:]}")
    return proc, line.split()[1]


def _leftovers(run_id: str) -> list[str]:
    netns = [n for n in os.listdir("/var/run/netns") if f"eh-{run_id}-" in n] if os.path.isdir("/var/run/netns") else []
    etc = [n for n in os.listdir("/etc/netns") if f"eh-{run_id}-" in n] if os.path.isdir("/etc/netns") else []
    paths = [p for p in (Path(f"/tmp/egress-harness-{run_id}"), STATE_ROOT / run_id) if p.exists()]
    procs = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        # etcd and kube-apiserver carry the run's directory, /run/egress-harness/<id>/, in their flags.
        if (
            f"eh-{run_id}-" in cmdline
            or f"egress-harness-{run_id}" in cmdline
            or f"egress-harness/{run_id}/" in cmdline
        ):
            procs.append(f"{pid}: {cmdline[:120]}")
    return [*(f"netns {n}" for n in netns), *(f"/etc/netns/{n}" for n in etc), *map(str, paths), *procs]


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL], ids=["ctrl-c", "sigkill"])
def test_teardown_leaves_nothing(mesh, sig, tmp_path):
    """A second mesh beside the session's: after Ctrl-C (its own teardown) or SIGKILL (the
    watchdog's), no namespace, /etc/netns file, process, key or state is left, and the session's
    mesh still works (two runs coexist)."""
    proc, run_id = _child_mesh(tmp_path)
    assert _leftovers(run_id), "the child mesh should have created namespaces"
    proc.send_signal(sig)
    try:
        proc.wait(90)  # Ctrl-C: the child's own teardown, every process's grace included, under load
    except subprocess.TimeoutExpired:
        proc.kill()
        raise AssertionError(
            f"the child mesh did not end within 90 s of {sig!r}: {proc.stderr.read()[-2000:]}"
        ) from None
    eventually(
        f"run {run_id} to leave nothing behind", lambda: _leftovers(run_id), ok=lambda left: not left, timeout=20
    )
    res = mesh.exec(SLEEP, curl_command(URL, follow=False))
    assert res.exit_code == 0, res.stderr


def test_not_root_gets_one_line_error():
    """Without root the run stops before starting anything, with one line naming the fix."""
    # A folder and a Python an unprivileged user can reach (pytest's tmp_path and the venv's
    # interpreter may sit under 0700 folders); the venv's packages through PYTHONPATH.
    home = Path(tempfile.mkdtemp(prefix="egress-harness-notroot-"))
    home.chmod(0o777)
    python = f"/usr/bin/python{sys.version_info.major}.{sys.version_info.minor}"
    site = sysconfig.get_paths()["purelib"]
    try:
        proc = subprocess.run(
            [
                "setpriv",
                "--reuid=65534",
                "--regid=65534",
                "--clear-groups",
                python,
                "-m",
                "pytest",
                "-p",
                "no:cacheprovider",
                "-q",
                str(REPO / "suites/test_troubleshooting.py"),
                "--egress-artifacts",
                str(home / "a"),
            ],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=60,
            env=dict(os.environ, PYTHONPATH=f"{REPO}:{site}", HOME=str(home)),
        )
    finally:
        shutil.rmtree(home, ignore_errors=True)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "egress-harness: the local mesh needs root" in out, out[-2000:]
    assert "Traceback" not in out


def test_deleting_a_gateway_api_gateway_leaves_nothing_of_it(mesh):
    """istiod deploys a Gateway API Gateway as a Deployment; the node agent runs its Pod (network
    namespace, pilot-agent and Envoy). Deleting the Gateway removes the Deployment, Service and
    ServiceAccount (garbage collector), the Pod, its namespace and its processes."""
    from harness import gateway_api

    sc = Scenario(mesh, Evidence(), "gateway-api-plaintext")
    sc.apply("http/gateway")
    deployed = gateway_api.deployed_name(gateway_api.SEED_GATEWAY)
    try:
        [pod] = mesh.node_agent.pods("default", {gateway_api.GATEWAY_NAME_LABEL: gateway_api.SEED_GATEWAY})
        assert pod.proxy is not None and pod.proxy.process is not None and pod.proxy.process.popen is not None
        pids = [(pod.proxy.process.popen.pid, proc_start_time(pod.proxy.process.popen.pid))]
        netns = Path("/var/run/netns", pod.netns.name)
        assert netns.exists() and all(pid_alive(*p) for p in pids)
    finally:
        sc.delete_all()
    assert pod.key not in mesh.pods and not netns.exists()
    assert not [p for p in pids if pid_alive(*p)], f"processes of the deleted gateway's pod still run: {pids}"
    kubectl = mesh.registry.kubectl

    def gone() -> list[str]:
        left = []
        for kind in ("deployment", "service", "serviceaccount", "pod"):
            items = kubectl.json("get", kind, "-n", "default", "-l", f"{gateway_api.GATEWAY_NAME_LABEL}")["items"]
            left += [f"{kind}/{i['metadata']['name']}" for i in items]
        for kind in ("deployment", "service", "serviceaccount"):
            names = [i["metadata"]["name"] for i in kubectl.json("get", kind, "-n", "default")["items"]]
            left += [f"{kind}/{n}" for n in names if n == deployed]
        return sorted(set(left))

    eventually("the deleted Gateway's objects to be gone", gone, lambda left: not left, timeout=20)


def test_a_gateway_without_the_rolebinding_is_refused_its_client_certificate(mesh):
    """The local API server authorizes by RBAC: mutual origination in the Gateway API without the
    doc's Role/RoleBinding leaves the deployed gateway without its client certificate (istiod's
    SubjectAccessReview is refused), so the stand-in's mTLS port refuses the gateway: 503, and
    istiod says why. A Gateway of its own name: istiod caches a ServiceAccount's answer (a
    refusal 1 minute, an allowance 5), which must not decide the suites' positive test."""
    from harness import gateway_api
    from harness.manifests import render

    objs = render("origination/mutual", mode="gateway-api-plaintext", trust=mesh.upstream_trust())
    objs = [o for o in objs if o["kind"] not in ("Role", "RoleBinding")]
    objs = json.loads(json.dumps(objs).replace(gateway_api.SEED_GATEWAY, "cnn-egress-unbound"))
    mesh.apply(objs)
    try:
        mark = mesh.upstream().mark()
        res = mesh.exec(SLEEP, ["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", URL])
        assert res.stdout.strip() == "503", (res.stdout, res.stderr)
        conns = [c for c in mesh.upstream().wait_for_connections(1, since=mark) if c.listener == "mtls"]
        assert conns and all(c.handshake_error for c in conns), [c.summary() for c in conns]
        log = mesh.istiod.process.log_path.read_text()
        assert "cnn-egress-unbound-istio/default is not authorized to read secrets" in log, log[-2000:]
    finally:
        mesh.delete(objs)
