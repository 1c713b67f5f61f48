"""Every manifest the kind backend applies, checked offline by the real, pinned istioctl.

- each scenario rendering (every stage × both mTLS modes, with Kubernetes' credentialName trust)
  passes `istioctl validate -f` and `istioctl analyze --use-kube=false`, analyzed together with
  the cluster-side objects (namespaces, sleep pods, trust secrets) and the install manifests
  `istioctl manifest generate` makes from fixtures/kind/istio-operator.yaml with the backend's flags;
- the install with those flags has the egress gateway, access logs and the edition.cnn.com stats;
- broken manifests are rejected (so these checks can fail);
- the pure pieces: CoreDNS block, trust names, tool pins and checksum-verified downloads (against
  a real HTTP server on 127.0.0.1), apt mirror parsing, syncz/access-log parsing.
"""

from __future__ import annotations

import hashlib
import http.server
import os
import re
import subprocess
import threading
from pathlib import Path

import pytest
import yaml

from harness import manifests, stand_in
from harness.backends import kube, kube_steps, tools, upstream_image
from harness.backends.kube import KubeBackend
from harness.errors import HarnessError, ManifestRejected
from harness.kube import templates, trust
from harness.kube.kubectl import Kubectl
from harness.pki import RunPKI

CASES = [(stage, mode) for stage in manifests.STAGES for mode in manifests.MODES]
# Analyzer messages that are expected, each with the reason. Anything else fails the test.
KNOWN_MESSAGES = {
    # IST0129: the analyzer accepts credentialName only together with a workloadSelector; ours is
    # read by the egress gateway from istio-system/edition-cnn-com-ca (cacert), which does verify.
    "IST0129": "credentialName without workloadSelector",
}


@pytest.fixture(scope="module")
def istioctl(istio_binaries) -> Path:
    return istio_binaries.istioctl


@pytest.fixture(scope="module")
def pems(tmp_path_factory):
    pki = RunPKI(tmp_path_factory.mktemp("pki"))
    client = pki.public_ca.issue_client("gateway-client", "istio-egressgateway")
    server = pki.public_ca.issue_server("edition.cnn.com", ["edition.cnn.com"])
    yield {
        "public_ca": pki.public_ca.cert_pem.decode(),
        "untrusted_ca": pki.other_public_ca().cert_pem.decode(),
        "client_cert": client.cert_pem.decode(),
        "client_key": client.key_pem.decode(),
        "server_chain": server.chain_path.read_text(),
        "server_key": server.key_pem.decode(),
    }
    pki.cleanup()


@pytest.fixture(scope="module")
def install_manifest(istioctl, tmp_path_factory) -> Path:
    """`istioctl manifest generate` with exactly the flags the backend passes to `istioctl install`."""
    hub, tag = tools.istio_images("1.31")
    d = tmp_path_factory.mktemp("install")
    overlay = kube_steps.write_mesh_config_overlay(d)
    cmd = kube_steps.istioctl_install_cmd(str(istioctl), Path("/nonexistent/kubeconfig"), hub, tag, overlay)
    args = [a for a in cmd[2:] if a != "-y" and not a.startswith(("--kubeconfig", "--readiness-timeout"))]
    proc = subprocess.run([str(istioctl), "manifest", "generate", *args], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    out = d / "istio-install.yaml"
    out.write_text(proc.stdout)
    return out


@pytest.fixture(scope="module")
def setup_files(pems, tmp_path_factory) -> list[Path]:
    d = tmp_path_factory.mktemp("setup")
    files = []
    for name, text in kube_steps.setup_manifests(sleep_image=upstream_image.sleep_tag(), pems=pems).items():
        (d / name).write_text(text)
        files.append(d / name)
    up = d / "upstream-in-cluster.yaml"
    up.write_text(
        templates.render_fixture(
            "upstream-in-cluster.yaml.j2",
            namespace="eh-test-internet",
            run_labels={},
            image="registry.example/mock-upstream:1",
            args=stand_in.upstream_command(),
            cert_chain_pem=pems["server_chain"],
            key_pem=pems["server_key"],
            client_ca_pem=pems["public_ca"],
            control_token="test-token",
        )
    )
    files.append(up)
    return files


def _run(istioctl: Path, *args: str, input: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([str(istioctl), *args], capture_output=True, text=True, timeout=120, input=input)


def _messages(output: str) -> list[tuple[str, str, str]]:
    """(level, code, text) of each `istioctl analyze` message line."""
    return [
        (m.group(1), m.group(2), line)
        for line in output.splitlines()
        if (m := re.match(r"^(Error|Warning|Info) \[(IST\d{4})\]", line))
    ]


@pytest.mark.parametrize("stage,mode", CASES, ids=[f"{s}-{m}" for s, m in CASES])
def test_scenario_rendering_validates_and_analyzes(stage, mode, istioctl, install_manifest, setup_files, tmp_path):
    objs = manifests.render(stage, mode=mode, trust=trust.trust_values())
    assert objs, "a stage renders at least one object"
    path = tmp_path / "scenario.yaml"
    path.write_text(manifests.to_yaml(objs))
    validate = _run(istioctl, "validate", "-f", str(path))
    assert validate.returncode == 0, validate.stderr + validate.stdout
    assert "is valid" in validate.stdout + validate.stderr
    analyze = _run(
        istioctl,
        "analyze",
        "--use-kube=false",
        "--failure-threshold=Warning",
        str(path),
        str(install_manifest),
        *map(str, setup_files),
    )
    unexpected = [
        line for level, code, line in _messages(analyze.stdout + analyze.stderr) if code not in KNOWN_MESSAGES
    ]
    assert not unexpected, "\n".join(unexpected)
    if not _messages(analyze.stdout + analyze.stderr):
        assert analyze.returncode == 0, analyze.stderr
    # Kubernetes trust: no file path may leak into a kind rendering.
    text = path.read_text()
    assert "caCertificates" not in text and "/etc/" not in text


def test_kind_fixtures_validate_and_analyze(istioctl, install_manifest, setup_files):
    validate = _run(
        istioctl,
        "validate",
        *[a for f in setup_files for a in ("-f", str(f))],
        "-f",
        str(kube_steps.ISTIO_OPERATOR),
        "-f",
        str(install_manifest.parent / "istio-meshconfig.yaml"),
    )
    assert validate.returncode == 0, validate.stderr + validate.stdout
    analyze = _run(
        istioctl,
        "analyze",
        "--use-kube=false",
        "--failure-threshold=Info",
        str(install_manifest),
        *map(str, setup_files),
    )
    assert analyze.returncode == 0 and not _messages(analyze.stdout), analyze.stdout + analyze.stderr
    kinds = {(d["kind"], d["metadata"]["name"]) for f in setup_files for d in yaml.safe_load_all(f.read_text()) if d}
    assert {
        ("Deployment", "sleep"),
        ("Namespace", "test-egress"),
        ("Secret", "edition-cnn-com-ca"),
        ("Secret", "untrusted-ca"),
        ("Secret", "edition-cnn-com-client"),
        ("Deployment", "mock-upstream"),
    } <= kinds


def test_install_flags_give_the_egress_gateway_access_logs_and_counters(install_manifest):
    docs = [d for d in yaml.safe_load_all(install_manifest.read_text()) if d]
    deployments = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Deployment"}
    assert "istio-egressgateway" in deployments and "istiod" in deployments
    assert "istio-ingressgateway" not in deployments
    gw = deployments["istio-egressgateway"]["spec"]["template"]
    assert gw["metadata"]["labels"]["istio"] == "egressgateway"
    assert gw["spec"]["serviceAccountName"] == "istio-egressgateway-service-account"
    hub, tag = tools.istio_images("1.31")
    assert gw["spec"]["containers"][0]["image"] == f"{hub}/proxyv2:{tag}"
    services = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Service"}
    ports = {p["port"]: p["targetPort"] for p in services["istio-egressgateway"]["spec"]["ports"]}
    assert ports.get(80) == 8080 and ports.get(443) == 8443
    mesh = yaml.safe_load(
        next(d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"] == "istio")["data"]["mesh"]
    )
    # Exactly the mesh config every backend installs (harness/meshconfig.py), not a copy of it.
    from harness.meshconfig import mesh_config

    want = mesh_config()
    for key in (
        "accessLogFile",
        "accessLogEncoding",
        "accessLogFormat",
        "outboundTrafficPolicy",
        "enableAutoMtls",
        "trustDomain",
        "defaultProviders",
    ):
        assert mesh[key] == want[key], key
    for key, value in want["defaultConfig"].items():
        assert mesh["defaultConfig"][key] == value, key
    assert mesh["defaultConfig"]["proxyStatsMatcher"]["inclusionRegexps"] == [
        r"cluster\.outbound\|\d+\|[^|]*\|(edition\.cnn\.com);?\..*"
    ]
    assert mesh["outboundTrafficPolicy"] == {"mode": "REGISTRY_ONLY"}


def _broken(kind: str) -> list[dict]:
    if kind == "enum":
        objs = manifests.render("origination/simple", mode="plaintext", trust=trust.trust_values())
        dr = next(o for o in objs if o["metadata"]["name"] == "originate-tls-for-edition-cnn-com")
        dr["spec"]["trafficPolicy"]["portLevelSettings"][0]["tls"]["mode"] = "SIMPEL"
    else:
        objs = manifests.render("http/gateway", mode="plaintext", trust=trust.trust_values())
        next(o for o in objs if o["kind"] == "Gateway")["spec"]["servers"][0]["hosts"] = []
    return objs


@pytest.mark.parametrize(
    "kind,message",
    [("enum", 'unknown value "\\"SIMPEL\\""'), ("no-hosts", "server config must contain at least one host")],
)
def test_a_broken_manifest_is_rejected(kind, message, istioctl, tmp_path):
    bad = _broken(kind)
    path = tmp_path / "broken.yaml"
    path.write_text(manifests.to_yaml(bad))
    proc = _run(istioctl, "validate", "-f", str(path))
    assert proc.returncode != 0
    assert message in proc.stderr + proc.stdout
    # The backend refuses it before kubectl is ever called (kubectl here is a path that does not exist).
    backend = KubeBackend(
        kubectl=Kubectl(Path("/nonexistent/kubectl"), Path("/nonexistent/kubeconfig")),
        istioctl=istioctl,
        artifacts=tmp_path,
    )
    with pytest.raises(ManifestRejected, match=re.escape(message)):
        backend.apply(bad)


def test_istioctl_validate_does_not_catch_the_seeds_sni_hosts(istioctl, tmp_path):
    """A fact worth knowing: offline validation accepts the seed's `sni_hosts` (it is the API
    server's strict field validation that rejects it), so the suites must not rely on istioctl
    for that one."""
    objs = manifests.render("passthrough/gateway", mode="plaintext", trust=trust.trust_values())
    match = next(o for o in objs if o["kind"] == "VirtualService")["spec"]["tls"][0]["match"][0]
    match["sni_hosts"] = match.pop("sniHosts")
    path = tmp_path / "seed-field.yaml"
    path.write_text(manifests.to_yaml(objs))
    assert _run(istioctl, "validate", "-f", str(path)).returncode == 0


def test_analyze_catches_a_dangling_reference(istioctl, tmp_path):
    objs = manifests.render("http/gateway", mode="istio-mutual", trust=trust.trust_values())
    vs = next(o for o in objs if o["kind"] == "VirtualService")
    vs["spec"]["gateways"] = ["no-such-gateway", "mesh"]
    vs["spec"]["http"][1]["match"][0]["gateways"] = ["no-such-gateway"]
    path = tmp_path / "dangling.yaml"
    path.write_text(manifests.to_yaml(objs))
    assert _run(istioctl, "validate", "-f", str(path)).returncode == 0  # schema-valid …
    analyze = _run(istioctl, "analyze", "--use-kube=false", str(path))
    assert analyze.returncode != 0  # … but refers to nothing
    assert any(code == "IST0101" for _, code, _ in _messages(analyze.stdout + analyze.stderr)), analyze.stdout


def test_trust_values_name_secrets_that_the_backend_creates(pems):
    secrets = {
        d["metadata"]["name"]: d
        for d in yaml.safe_load_all(kube_steps.setup_manifests(sleep_image="x", pems=pems)["trust-secrets.yaml"])
        if d
    }
    assert all(s["metadata"]["namespace"] == "istio-system" for s in secrets.values())
    names = set()
    for stage, mode in CASES:
        for o in manifests.render(stage, mode=mode, trust=trust.trust_values()):
            if o["kind"] == "DestinationRule":
                for pls in o["spec"].get("trafficPolicy", {}).get("portLevelSettings", []):
                    if pls.get("tls", {}).get("credentialName"):
                        names.add((stage, pls["tls"]["mode"], pls["tls"]["credentialName"]))
    used = {name for _, _, name in names}
    assert used == set(secrets), (used, set(secrets))
    for stage, mode_, name in names:
        keys = set(secrets[name]["stringData"])
        # Istio's keys (pilot/pkg/credentials/kube/secrets.go): cacert, or tls.crt/tls.key with ca.crt.
        assert keys == ({"tls.crt", "tls.key", "ca.crt"} if mode_ == "MUTUAL" else {"cacert"}), (stage, name, keys)
    assert secrets["edition-cnn-com-ca"]["stringData"]["cacert"] == pems["public_ca"]
    assert secrets["untrusted-ca"]["stringData"]["cacert"] != pems["public_ca"]


def test_sleep_pods_carry_curl_openssl_image_and_ca(pems):
    text = kube_steps.setup_manifests(sleep_image=upstream_image.sleep_tag(), pems=pems)
    for name, sidecar in (("sleep-default.yaml", "true"), ("sleep-test-egress.yaml", "false")):
        docs = {d["kind"]: d for d in yaml.safe_load_all(text[name]) if d}
        pod = docs["Deployment"]["spec"]["template"]
        assert pod["metadata"]["labels"]["sidecar.istio.io/inject"] == sidecar
        assert pod["spec"]["containers"][0]["image"] == upstream_image.sleep_tag()
        assert pod["spec"]["containers"][0]["imagePullPolicy"] == "IfNotPresent"  # loaded by kind, never pulled
        assert docs["ConfigMap"]["data"]["ca.pem"] == pems["public_ca"]
        assert pod["spec"]["containers"][0]["volumeMounts"][0]["mountPath"] == str(Path(kube.UPSTREAM_CA_IN_POD).parent)


def test_kind_config_keeps_kindnet_for_network_policy():
    config = yaml.safe_load(kube_steps.KIND_CONFIG.read_text())
    assert config["apiVersion"] == "kind.x-k8s.io/v1alpha4" and config["kind"] == "Cluster"
    assert not config["networking"].get("disableDefaultCNI")
    assert [n["role"] for n in config["nodes"]] == ["control-plane"]


# ------------------------------------------------------------------------------ CoreDNS
KIND_COREFILE = """.:53 {
    errors
    health {
       lameduck 5s
    }
    ready
    kubernetes cluster.local in-addr.arpa ip6.arpa {
       pods insecure
       fallthrough in-addr.arpa ip6.arpa
       ttl 30
    }
    prometheus :9153
    forward . /etc/resolv.conf {
       max_concurrent 1000
    }
    cache 30
    loop
    reload
    loadbalance
}
"""


def test_coredns_block_is_added_once_and_removed_exactly():
    once = kube.add_hosts_block(KIND_COREFILE, "172.18.0.9", run="r1")
    twice = kube.add_hosts_block(once, "172.18.0.10", run="r2")
    assert once.startswith(KIND_COREFILE)
    assert "edition.cnn.com:53 {" in once and "172.18.0.9 edition.cnn.com" in once
    assert twice.count("edition.cnn.com:53 {") == 1 and "172.18.0.10 edition.cnn.com" in twice
    assert kube.remove_hosts_block(twice) == KIND_COREFILE
    assert twice.count("{") == twice.count("}")


# ------------------------------------------------------------------------------ tools
def test_pins_and_version_policy():
    assert tools.kind_node_image() == tools.KIND_NODE_IMAGES["1.37"]
    assert re.fullmatch(r"kindest/node:v1\.37\.0@sha256:[0-9a-f]{64}", tools.kind_node_image())
    with pytest.raises(HarnessError, match="EGRESS_HARNESS_KUBERNETES"):
        tools.kind_node_image("1.20")
    with pytest.raises(HarnessError, match="does not enforce NetworkPolicy"):
        tools.check_kind_version("v0.23.0", "PATH")
    tools.check_kind_version("v0.24.0", "PATH")
    assert tools.kubectl_fits("v1.36.4", "1.37") and tools.kubectl_fits("v1.38.0", "1.37")
    assert not tools.kubectl_fits("v1.32.4-dispatcher", "1.37")
    assert tools.kubectl_fits(tools.KUBECTL_VERSION, tools.DEFAULT_KUBERNETES)


def test_istio_images_are_explicit(monkeypatch):
    assert tools.istio_images("1.31") == ("docker.io/istio", "1.31.0")
    with pytest.raises(HarnessError, match="EGRESS_HARNESS_ISTIO_TAG"):
        tools.istio_images("v0.0.0-20260826214018-9739e10eb9d7")
    monkeypatch.setenv("EGRESS_HARNESS_ISTIO_HUB", "registry.example/istio")
    monkeypatch.setenv("EGRESS_HARNESS_ISTIO_TAG", "1.31.4")
    assert tools.istio_images("v0.0.0-20260826214018-9739e10eb9d7") == ("registry.example/istio", "1.31.4")


@pytest.fixture
def file_server(tmp_path):
    payload = os.urandom(4096)
    (tmp_path / "srv").mkdir()
    (tmp_path / "srv" / "kind-linux-amd64").write_bytes(payload)

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *a, **kw):
            super().__init__(*a, directory=str(tmp_path / "srv"), **kw)

        def log_message(self, *a):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/kind-linux-amd64", payload
    server.shutdown()
    server.server_close()


def test_download_is_kept_only_with_the_right_checksum(file_server, tmp_path, monkeypatch):
    for var in ("HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(var, raising=False)
    url, payload = file_server
    dest = tmp_path / "cache" / "kind"
    with pytest.raises(HarnessError, match="EGRESS_HARNESS_KIND_SHA256"):
        tools.download_verified(url, dest, None, "EGRESS_HARNESS_KIND_SHA256")
    with pytest.raises(HarnessError, match="checksum mismatch"):
        tools.download_verified(url, dest, "0" * 64, "EGRESS_HARNESS_KIND_SHA256")
    assert not dest.exists() and not [p for p in dest.parent.iterdir()]
    good = hashlib.sha256(payload).hexdigest()
    tools.download_verified(url, dest, good, "EGRESS_HARNESS_KIND_SHA256")
    assert dest.read_bytes() == payload and os.access(dest, os.X_OK)
    with pytest.raises(HarnessError, match="not a sha256"):
        tools.download_verified(url, dest, "abc", "EGRESS_HARNESS_KIND_SHA256")


def test_an_unpinned_release_checksum_refuses_the_download(tmp_path, monkeypatch):
    """The release checksums this machine cannot read are None in the tables: a fetch without Go
    must then refuse in one line naming the variable to set, and download nothing (the old test
    counted "# UNVERIFIED" comments, which no behaviour depends on)."""
    for table in (tools.KIND_RELEASE_SHA256, tools.KUBECTL_RELEASE_SHA256):
        for value in table.values():
            assert value is None or re.fullmatch(r"[0-9a-f]{64}", value)
    if tools.KIND_RELEASE_SHA256.get(tools.os_arch()) is not None:
        pytest.skip("kind's release checksum for this platform is pinned: the download is verified")
    monkeypatch.setenv("EGRESS_HARNESS_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("PATH", str(tmp_path))  # no kind on PATH
    monkeypatch.setattr(tools, "find_go", lambda: None)  # and no Go anywhere: the download path
    monkeypatch.delenv("EGRESS_HARNESS_KIND_SHA256", raising=False)
    with pytest.raises(HarnessError, match=r"no pinned sha256 .*set EGRESS_HARNESS_KIND_SHA256") as caught:
        tools.resolve_kind(fetch=True)
    assert "\n" not in str(caught.value)
    assert not [p for p in (tmp_path / "cache").rglob("*") if p.is_file()], "nothing is downloaded"


# ------------------------------------------------------------------------------ parsing
def test_debian_mirror_from_both_source_formats(tmp_path, monkeypatch):
    monkeypatch.delenv("EGRESS_HARNESS_DEBIAN_MIRROR", raising=False)
    apt = tmp_path / "apt"
    (apt / "sources.list.d").mkdir(parents=True)
    (apt / "sources.list.d" / "google.list").write_text(
        "deb https://packages.cloud.google.com/apt cloud-sdk-bookworm main\n"
    )
    (apt / "sources.list.d" / "debian.sources").write_text(
        "Types: deb\n# comment\nURIs: http://mirror.example/debian\nSuites: trixie trixie-updates\nComponents: main\n\n"
        "Types: deb\nURIs: http://mirror.example/debian-security\nSuites: trixie-security\nComponents: main\n"
    )
    assert upstream_image.debian_mirror(apt) == "http://mirror.example/debian"
    (apt / "sources.list").write_text(
        "deb [arch=amd64 signed-by=/k.gpg] http://old.example/debian bookworm main contrib\n"
    )
    assert upstream_image.debian_mirror(apt) == "http://old.example/debian"  # the entry that has bookworm itself
    monkeypatch.setenv("EGRESS_HARNESS_DEBIAN_MIRROR", "http://other.example/debian")
    assert upstream_image.debian_mirror(apt) == "http://other.example/debian"


def test_rootfs_cache_key_names_suite_and_packages():
    key = upstream_image.rootfs_key("bookworm", ("python3-minimal", "curl"))
    assert (
        key
        == upstream_image.rootfs_key("bookworm", ("curl", "python3-minimal"))
        == "debian-bookworm-minbase-curl+python3-minimal"
    )
    assert upstream_image.rootfs_key("trixie", ("curl",)) != key


def test_access_log_lines():
    import json

    from harness.meshconfig import ACCESS_LOG_FIELDS

    entry = json.dumps({k: "-" for k in ACCESS_LOG_FIELDS} | {"path": "/politics", "response_code": 200})
    log = "\n".join(
        [
            "2026-11-28T06:00:00.000000Z\tinfo\tEnvoy proxy is ready",
            entry,
            '{"level":"info","msg":"json, but not an access-log line"}',
            "{not json",
            "",
        ]
    )
    assert kube.access_log_lines(log) == [entry]


def test_namespace_mapping_of_the_cluster_backend(tmp_path):
    from harness.backends.cluster import run_namespaces

    ns = run_namespaces("abc123")
    backend = KubeBackend(
        kubectl=Kubectl(Path("/nonexistent"), Path("/nonexistent")),
        istioctl=Path("/nonexistent"),
        artifacts=tmp_path,
        namespaces={"default": ns["default"], "test-egress": ns["test-egress"]},
    )
    objs = manifests.render("network-policy", mode="plaintext") + manifests.render("http/gateway", mode="plaintext")
    mapped = backend.map_objects(objs)
    assert {o["metadata"]["namespace"] for o in mapped} == {"eh-abc123-default", "eh-abc123-test-egress"}
    assert objs[0]["metadata"]["namespace"] == "test-egress"  # the rendering itself is untouched
    assert backend.namespace("istio-system") == "istio-system"


def test_backends_implement_the_backend_interface():
    """The suites talk to every backend through harness.backend.Backend; a missing method would
    only show on a real cluster."""
    import inspect

    from harness.backend import Backend
    from harness.backends.cluster import ClusterBackend
    from harness.backends.kind import KindBackend
    from harness.local.mesh import LocalMesh

    wanted = {name for name, _ in inspect.getmembers(Backend, inspect.isfunction) if not name.startswith("_")}
    for cls in (LocalMesh, KindBackend, ClusterBackend):
        missing = sorted(n for n in wanted if not callable(getattr(cls, n, None)))
        assert not missing, f"{cls.__name__} lacks {missing}"
        for name in wanted:
            theirs = inspect.signature(getattr(cls, name))
            ours = inspect.signature(getattr(Backend, name))
            assert set(ours.parameters) <= set(theirs.parameters), f"{cls.__name__}.{name}{theirs} vs {ours}"


def test_a_kind_backend_is_whole_after_init_and_says_when_tools_are_missing(tmp_path):
    """Every field exists once constructed (the tools are attached by the plan's step, not by a
    constructor call inside it); using kubectl before that step is a harness fault that says so."""
    from harness.backends.kind import KindBackend
    from harness.errors import HarnessFault

    backend = KindBackend(cluster_name="whole", keep_cluster=False, istio_version="1.31", artifacts=tmp_path)
    assert backend.timings == {} and backend.generation == 0 and backend.artifacts == tmp_path
    assert backend.namespace("default") == "default" and backend.upstream_control_url is None
    with pytest.raises(HarnessFault, match="before its tools were resolved"):
        backend.kubectl  # noqa: B018 - the property is what is tested
    backend.attach_tools(Kubectl(Path("/bin/true"), tmp_path / "kubeconfig"), Path("/bin/true"))
    assert backend.kubectl.kubeconfig == tmp_path / "kubeconfig"
