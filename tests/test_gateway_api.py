"""The Gateway API's pinned CRDs and what the harness derives from them: the pin is the one Istio
builds against, the channel table is the files' own, a channel's CRD list is read as its
kustomization says, and (on a real API server) the doc's TLSRoute with only the standard channel
installed is refused in one line naming the channel."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from harness import gateway_api
from harness.errors import HarnessError, ManifestRejected
from harness.local.node_agent import resolve_env

# The doc's TLSRoute (istio.io "Egress Gateways", HTTPS, Gateway API tab), as written there.
DOC_TLSROUTE = {
    "apiVersion": "gateway.networking.k8s.io/v1alpha2",
    "kind": "TLSRoute",
    "metadata": {"name": "direct-cnn-to-egress-gateway", "namespace": "default"},
    "spec": {
        "parentRefs": [{"kind": "ServiceEntry", "group": "networking.istio.io", "name": "cnn"}],
        "rules": [{"backendRefs": [{"name": "cnn-egress-gateway-istio", "port": 443}]}],
    },
}


def _crds(channel: str) -> str:
    path = gateway_api.crd_dir() / f"{channel}.yaml"
    if not path.exists():
        pytest.fail(f"{path} is missing: `make test` runs `make istio`, which downloads the Gateway API CRDs")
    return path.read_text()


@pytest.mark.slow
def test_the_pin_is_the_version_istio_builds_against(istio_binaries):
    """GATEWAY_API_VERSION is what Istio's own go.mod requires: a newer Istio that moves its pin
    turns this red, rather than a CRD bundle it ignores with a warning."""
    from harness.istio_binaries import _module_dir
    from harness.versions import resolve_release

    go_mod = (_module_dir(resolve_release(istio_binaries.version)) / "go.mod").read_text()
    required = re.search(r"^\s*sigs\.k8s\.io/gateway-api (v\S+)$", go_mod, re.M)
    assert required, "Istio's go.mod requires no sigs.k8s.io/gateway-api"
    assert required.group(1) == gateway_api.GATEWAY_API_VERSION


@pytest.mark.slow
def test_experimental_only_is_what_the_two_channels_differ_by():
    experimental = gateway_api.served_kinds(_crds("experimental"))
    standard = gateway_api.served_kinds(_crds("standard"))
    differ = {k: v - standard.get(k, set()) for k, v in experimental.items() if v - standard.get(k, set())}
    assert differ == gateway_api.EXPERIMENTAL_ONLY
    # What the seed's sections apply is served by the channel every backend installs.
    assert {"v1"} <= experimental["Gateway"] and {"v1"} <= experimental["HTTPRoute"]
    assert "v1alpha2" in experimental["TLSRoute"] and "v1alpha2" in experimental["TCPRoute"]


def _module(tmp_path: Path, resources: dict[str, list[dict]]) -> Path:
    base = tmp_path / "config" / "crd" / "experimental"
    base.mkdir(parents=True)
    (base / "kustomization.yaml").write_text(yaml.safe_dump({"resources": list(resources)}))
    for name, docs in resources.items():
        (base / name).write_text(yaml.safe_dump_all(docs))
    return tmp_path


def _crd(kind: str, version: str = gateway_api.GATEWAY_API_VERSION) -> dict:
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": f"{kind.lower()}s.{gateway_api.GROUP}",
            "annotations": {f"{gateway_api.GROUP}/bundle-version": version},
        },
        "spec": {"names": {"kind": kind}, "versions": [{"name": "v1", "served": True}]},
    }


def test_a_channel_is_its_kustomization_in_order_crds_only(tmp_path):
    policy = {"apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingAdmissionPolicy"}
    module = _module(tmp_path, {"b.yaml": [_crd("TLSRoute")], "a.yaml": [_crd("Gateway"), policy]})
    kinds = [d["spec"]["names"]["kind"] for d in yaml.safe_load_all(gateway_api.channel_yaml(module, "experimental"))]
    assert kinds == ["TLSRoute", "Gateway"]


def test_a_crd_of_another_bundle_is_refused(tmp_path):
    module = _module(tmp_path, {"a.yaml": [_crd("Gateway", "v1.2.0")]})
    with pytest.raises(HarnessError, match="is not a v1.6.0 CRD"):
        gateway_api.channel_yaml(module, "experimental")


def test_the_channel_hint_names_the_channel_only_where_it_is_the_cause():
    hint = gateway_api.channel_hint(DOC_TLSROUTE)
    assert "experimental channel only" in hint and "v1alpha2" in hint
    assert gateway_api.channel_hint({**DOC_TLSROUTE, "apiVersion": "gateway.networking.k8s.io/v1"}) == ""
    assert gateway_api.channel_hint({"apiVersion": "networking.istio.io/v1alpha2", "kind": "TLSRoute"}) == ""


def test_a_container_gets_the_environment_the_kubelet_would_give():
    """istiod's kube-gateway template reads its pod's name, namespace, IP, service account,
    labels and CPU limit through the downward API; $(VAR) expands earlier variables."""
    pod = {
        "metadata": {"name": "gw-1", "namespace": "default", "uid": "u-1", "labels": {"app": "gw"}},
        "spec": {"serviceAccountName": "gw-sa"},
    }
    container = {
        "resources": {"limits": {"cpu": "1500m"}},
        "env": [
            {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            {"name": "NS", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
            {"name": "IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
            {"name": "SA", "valueFrom": {"fieldRef": {"fieldPath": "spec.serviceAccountName"}}},
            {"name": "APP", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['app']"}}},
            {"name": "CPUS", "valueFrom": {"resourceFieldRef": {"resource": "limits.cpu"}}},
            {"name": "WHO", "value": "$(POD_NAME).$(NS)"},
        ],
    }
    assert resolve_env(container, pod, "198.18.0.40") == {
        "POD_NAME": "gw-1",
        "NS": "default",
        "IP": "198.18.0.40",
        "SA": "gw-sa",
        "APP": "gw",
        "CPUS": "2",
        "WHO": "gw-1.default",
    }


@pytest.mark.mesh
@pytest.mark.slow
def test_the_docs_tlsroute_on_the_standard_channel_is_refused_naming_the_channel(istio_binaries, tmp_path):
    """The doc trap: a cluster with only the standard channel refuses the doc's v1alpha2
    TLSRoute. A local mesh whose API server has the standard channel's CRDs shows it."""
    from harness.local.mesh import LocalMesh

    mesh = LocalMesh(istio_binaries, tmp_path, gateway_api_channel="standard")
    try:
        mesh.start()
        with pytest.raises(ManifestRejected) as refused:
            mesh.registry.api.apply([DOC_TLSROUTE])
        line = str(refused.value)
        assert "\n" not in line and "experimental channel only" in line and "TLSRoute" in line, line
    finally:
        mesh.stop()
