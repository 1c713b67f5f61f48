"""The one apply/delete path (harness/kube_rest.py): kubeconfig forms a user has, against the local
mesh's real kube-apiserver, and the server's refusals as one line."""

from __future__ import annotations

import base64
import json
import os
import stat
from pathlib import Path

import httpx
import pytest
import yaml

from harness.errors import HarnessFault, ManifestRejected
from harness.kube_rest import FIELD_MANAGER, KubeconfigError, KubeRest, connection_from_kubeconfig

SE = {
    "apiVersion": "networking.istio.io/v1",
    "kind": "ServiceEntry",
    "metadata": {"name": "kube-rest-probe", "namespace": "default"},
    "spec": {
        "hosts": ["probe.example.invalid"],
        "location": "MESH_EXTERNAL",
        "resolution": "DNS",
        "ports": [{"number": 80, "name": "http", "protocol": "HTTP"}],
    },
}


def _kubeconfig(mesh) -> dict:
    return json.loads(mesh.control_plane.kubeconfig.read_text())


def _embedded(config: dict) -> dict:
    """The same kubeconfig with certificate data inline, as kind writes it."""
    cluster = config["clusters"][0]["cluster"]
    user = config["users"][0]["user"]
    cluster["certificate-authority-data"] = base64.b64encode(Path(cluster.pop("certificate-authority")).read_bytes())
    for key in ("client-certificate", "client-key"):
        user[f"{key}-data"] = base64.b64encode(Path(user.pop(key)).read_bytes())
    for section in (cluster, user):
        for k, v in section.items():
            if isinstance(v, bytes):
                section[k] = v.decode()
    return config


def _open_files() -> list[str]:
    targets = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            targets.append(os.readlink(f"/proc/self/fd/{fd}"))
        except OSError:  # the listing's own descriptor, closed already
            pass
    return targets


@pytest.mark.mesh
def test_apply_and_delete_round_trip_with_the_files_kubeconfig(mesh):
    api = KubeRest.from_kubeconfig(mesh.control_plane.kubeconfig)
    try:
        stored = api.apply([SE])[0]
        assert stored["spec"]["hosts"] == ["probe.example.invalid"]
        assert FIELD_MANAGER in {m["manager"] for m in stored["metadata"]["managedFields"]}
        # Applied again with a field dropped: server-side apply removes what this manager no longer sets.
        smaller = json.loads(json.dumps(SE))
        del smaller["spec"]["location"]
        assert "location" not in api.apply([smaller])[0]["spec"]
        api.delete([SE])
        assert api.client.get(api.path(SE)).status_code == 404
        api.delete([SE])  # gone already: fine
    finally:
        api.delete([SE])
        api.close()


@pytest.mark.mesh
def test_embedded_certificates_leave_no_file_behind(mesh, tmp_path):
    path = tmp_path / "kubeconfig"
    path.write_text(yaml.safe_dump(_embedded(_kubeconfig(mesh))))
    before = set(os.listdir("/tmp"))
    conn = connection_from_kubeconfig(path)
    with conn.client() as client:
        assert client.get("/version").json()["major"] == "1"
    assert set(os.listdir("/tmp")) - before == set(), "key material was written to /tmp"
    # The memfd descriptors are closed once OpenSSL has read them.
    assert not [target for target in _open_files() if "memfd:client" in target]


@pytest.mark.mesh
def test_an_exec_credential_plugin_supplies_the_client_certificate(mesh, tmp_path):
    """What cloud kubeconfigs do (gke-gcloud-auth-plugin, aws eks get-token): the harness runs the
    plugin and uses what it prints."""
    config = _embedded(_kubeconfig(mesh))
    user = config["users"][0]["user"]
    credential = {
        "apiVersion": "client.authentication.k8s.io/v1",
        "kind": "ExecCredential",
        "status": {
            "clientCertificateData": base64.b64decode(user.pop("client-certificate-data")).decode(),
            "clientKeyData": base64.b64decode(user.pop("client-key-data")).decode(),
        },
    }
    plugin = tmp_path / "credential-plugin"
    plugin.write_text(
        f"#!/bin/sh\ntest -n \"$KUBERNETES_EXEC_INFO\" || exit 3\ncat <<'EOF'\n{json.dumps(credential)}\nEOF\n"
    )
    plugin.chmod(plugin.stat().st_mode | stat.S_IXUSR)
    user["exec"] = {"apiVersion": "client.authentication.k8s.io/v1", "command": str(plugin)}
    path = tmp_path / "kubeconfig"
    path.write_text(yaml.safe_dump(config))
    with connection_from_kubeconfig(path).client() as client:
        assert client.get("/api/v1/namespaces/default").status_code == 200


@pytest.mark.mesh
def test_the_servers_refusals_are_one_line(mesh):
    api = mesh.registry.api
    unknown_field = json.loads(json.dumps(SE))
    unknown_field["spec"]["sni_hosts"] = ["x"]  # the seed's old field name: strict validation refuses it
    with pytest.raises(ManifestRejected) as err:
        api.apply([unknown_field])
    assert "sni_hosts" in str(err.value) and "\n" not in str(err.value), err.value
    wrong_version = dict(SE, apiVersion="networking.istio.io/v9")
    with pytest.raises(ManifestRejected, match="serves no networking.istio.io/v9"):
        api.apply([wrong_version])


def _one_context(tmp_path: Path, cluster: dict, user: dict) -> Path:
    """A kubeconfig file with one context of `cluster` and `user` (parsing tests: no server runs)."""
    path = tmp_path / "kubeconfig"
    path.write_text(
        yaml.safe_dump(
            {
                "current-context": "c",
                "contexts": [{"name": "c", "context": {"cluster": "k", "user": "u"}}],
                "clusters": [{"name": "k", "cluster": cluster}],
                "users": [{"name": "u", "user": user}],
            }
        )
    )
    return path


def test_an_auth_provider_is_one_line_naming_the_fix(tmp_path):
    path = _one_context(tmp_path, {"server": "https://127.0.0.1:1"}, {"auth-provider": {"name": "oidc"}})
    with pytest.raises(KubeconfigError, match="exec credential plugin, a token or a client certificate"):
        connection_from_kubeconfig(path)


def test_a_missing_context_is_one_line(tmp_path):
    path = tmp_path / "kubeconfig"
    path.write_text(yaml.safe_dump({"current-context": "gone", "contexts": [], "clusters": [], "users": []}))
    with pytest.raises(KubeconfigError, match="has no context 'gone'"):
        connection_from_kubeconfig(path)


def test_a_token_file_becomes_a_bearer_header(tmp_path):
    (tmp_path / "token").write_text("abc.def\n")
    path = _one_context(
        tmp_path,
        {"server": "https://127.0.0.1:1/", "insecure-skip-tls-verify": True},
        {"tokenFile": str(tmp_path / "token")},
    )
    conn = connection_from_kubeconfig(path)
    assert conn.server == "https://127.0.0.1:1" and conn.verify is False
    assert conn.auth is not None
    request = httpx.Request("GET", "https://127.0.0.1:1/api")
    flow = conn.auth.auth_flow(request)
    assert next(flow).headers["Authorization"] == "Bearer abc.def"
    # Rotated in place, then a 401: the token is read again and the request retried with it.
    (tmp_path / "token").write_text("ghi.jkl\n")
    retried = flow.send(httpx.Response(401, request=request))
    assert retried.headers["Authorization"] == "Bearer ghi.jkl"


def test_a_proxy_url_is_one_line(tmp_path):
    path = _one_context(tmp_path, {"server": "https://10.0.0.1", "proxy-url": "http://p:3128"}, {})
    with pytest.raises(KubeconfigError, match="proxy-url"):
        connection_from_kubeconfig(path)


def test_a_broken_kubeconfig_is_one_line(tmp_path):
    """A missing certificate file is a KubeconfigError naming the file, not a traceback."""
    path = _one_context(
        tmp_path, {"server": "https://127.0.0.1:1"}, {"client-certificate": "gone.pem", "client-key": "gone.key"}
    )
    with pytest.raises(KubeconfigError, match="gone.pem"):
        connection_from_kubeconfig(path)


@pytest.mark.mesh
def test_pod_log_is_the_containers_log_as_kubectl_logs_prints_it(mesh):
    """The kind and cluster backends read access logs with pod_log: one GET of the log subresource
    (here served by the local mesh's pod-streams from the file the gateway's Envoy writes)."""
    api = KubeRest.from_kubeconfig(mesh.control_plane.kubeconfig)
    try:
        text = api.pod_log("istio-system", "istio-egressgateway", "istio-proxy")
        on_disk = mesh.proxy("istio-system/istio-egressgateway").log_path.read_text()
        assert text.splitlines()[:20] == on_disk.splitlines()[:20] and text.strip(), text[-300:]
        with pytest.raises(HarnessFault, match="no-such-pod"):
            api.pod_log("istio-system", "no-such-pod", "istio-proxy")
    finally:
        api.close()
