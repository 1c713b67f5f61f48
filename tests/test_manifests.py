"""harness/manifests.py: every scenario stage renders, in both mTLS modes, to objects the real
istioctl accepts; the mode decides ISTIO_MUTUAL vs DISABLE/PASSTHROUGH; bad input gives one clear
HarnessError line."""

from __future__ import annotations

import itertools
import re
import subprocess
from pathlib import Path

import pytest

from harness.errors import HarnessError
from harness.manifests import MODES, STAGES, VIA_HEADER, load_manifest_file, render, to_yaml
from tests.test_broken_mesh import BROKEN

# What the local mesh hands in: file paths inside the gateway's filesystem.
LOCAL_TRUST = {
    "trust": {"ca_certificates": "/x/ca.pem"},
    "wrong_trust": {"ca_certificates": "/x/other.pem"},
    "client": {"client_certificate": "/x/c.pem", "private_key": "/x/k.pem"},
}
REPO = Path(__file__).resolve().parents[1]
API_VERSIONS = {"networking.istio.io/v1", "networking.k8s.io/v1"}
GATEWAY_DR = "egressgateway-for-cnn"
ORIGINATION_DR = "originate-tls-for-edition-cnn-com"

# The stages whose sidecar → gateway hop the mode decides (they carry a Gateway and/or the gateway's
# DestinationRule); the others hold only ServiceEntries or the NetworkPolicy.
MODE_STAGES = {
    "http/gateway",
    "origination/simple",
    "origination/wrong-ca",
    "origination/no-origination",
    "origination/mutual",
    "origination/mutual-without-client-cert",
    "passthrough/gateway",
    "network-policy/destinationrule",
}
RENDERINGS = list(itertools.product(sorted(STAGES), MODES))


def _ids(case: tuple[str, str]) -> str:
    return f"{case[0]}-{case[1]}"


def _by_kind(objs: list[dict], kind: str) -> list[dict]:
    return [o for o in objs if o["kind"] == kind]


def _tls_modes(node: object) -> list[str]:
    """Every `tls: {mode: ...}` anywhere in an object."""
    found = []
    if isinstance(node, dict):
        if isinstance(node.get("tls"), dict) and "mode" in node["tls"]:
            found.append(node["tls"]["mode"])
        for value in node.values():
            found += _tls_modes(value)
    elif isinstance(node, list):
        for value in node:
            found += _tls_modes(value)
    return found


def test_every_stage_is_used_by_a_suite_or_check():
    """stages.yaml holds no dead stage, and the code names no stage it lacks."""
    sources = [p for d in ("suites", "harness/checks") for p in (REPO / d).glob("*.py")]
    code = "\n".join(p.read_text() for p in sources + [REPO / "tests/test_broken_mesh.py"])
    named = set(re.findall(r"(?:apply|render)\(\s*[\"']([a-z0-9/-]+)[\"']", code))
    for listed in re.findall(r"^STAGES = \[(.*)\]", code, re.M):
        named |= set(re.findall(r"[\"']([a-z0-9/-]+)[\"']", listed))
    named |= {broken.stage for broken in BROKEN}  # each broken variant names the stage it breaks
    assert named - set(STAGES) == set(), "the code applies stages that stages.yaml lacks"
    assert set(STAGES) - named == set(), "stages.yaml has stages no suite or check applies"


@pytest.mark.parametrize("case", RENDERINGS, ids=_ids)
def test_every_stage_renders_to_namespaced_networking_objects(case: tuple[str, str]):
    stage, mode = case
    objs = render(stage, mode=mode, trust=LOCAL_TRUST)
    assert objs, f"{stage}/{mode} rendered nothing"
    assert len(objs) == len(STAGES[stage].templates)  # one object per template
    for obj in objs:
        assert obj["apiVersion"] in API_VERSIONS, obj
        assert obj["kind"] and obj["metadata"]["name"], obj
        assert obj["metadata"].get("namespace"), (
            f"{stage}/{mode}: {obj['kind']} {obj['metadata']['name']} has no namespace"
        )
    kinds = {o["kind"] for o in objs}
    if stage == "network-policy":
        assert kinds == {"NetworkPolicy"} and objs[0]["apiVersion"] == "networking.k8s.io/v1"
        assert objs[0]["metadata"]["namespace"] == "test-egress"
    else:
        assert all(o["apiVersion"] == "networking.istio.io/v1" for o in objs)
    expected_ns = "test-egress" if stage.startswith("network-policy") else "default"
    assert {o["metadata"]["namespace"] for o in objs} == {expected_ns}


@pytest.mark.parametrize("stage", sorted(MODE_STAGES))
def test_istio_mutual_hop_is_istio_mutual(stage: str):
    objs = render(stage, mode="istio-mutual", trust=LOCAL_TRUST)
    text = to_yaml(objs)
    assert "DISABLE" not in text and "PASSTHROUGH" not in text
    for gateway in _by_kind(objs, "Gateway"):
        servers = gateway["spec"]["servers"]
        assert [(s["port"]["number"], s["tls"]["mode"]) for s in servers] == [(443, "ISTIO_MUTUAL")]
    [dr] = [d for d in _by_kind(objs, "DestinationRule") if d["metadata"]["name"] == GATEWAY_DR]
    [subset] = dr["spec"]["subsets"]
    [port_setting] = subset["trafficPolicy"]["portLevelSettings"]
    assert port_setting["port"]["number"] == 443
    assert port_setting["tls"] == {"mode": "ISTIO_MUTUAL", "sni": "edition.cnn.com"}
    for vs in _by_kind(objs, "VirtualService"):  # the mesh route goes to the gateway's mTLS port
        to_gateway = [
            r
            for rule in vs["spec"].get("http", []) + vs["spec"].get("tls", [])
            for r in rule["route"]
            if r["destination"]["host"].startswith("istio-egressgateway.")
        ]
        assert [r["destination"]["port"]["number"] for r in to_gateway] == [443]


@pytest.mark.parametrize("stage", sorted(MODE_STAGES))
def test_plaintext_hop_is_disable_or_passthrough(stage: str):
    objs = render(stage, mode="plaintext", trust=LOCAL_TRUST)
    assert "ISTIO_MUTUAL" not in to_yaml(objs)
    [dr] = [d for d in _by_kind(objs, "DestinationRule") if d["metadata"]["name"] == GATEWAY_DR]
    [subset] = dr["spec"]["subsets"]
    assert subset["trafficPolicy"]["tls"] == {"mode": "DISABLE"}
    for gateway in _by_kind(objs, "Gateway"):
        [server] = gateway["spec"]["servers"]
        if stage == "passthrough/gateway":
            assert (server["port"]["number"], server["port"]["protocol"], server["tls"]) == (
                443,
                "TLS",
                {"mode": "PASSTHROUGH"},
            )
        else:
            assert (server["port"]["number"], server["port"]["protocol"]) == (80, "HTTP")
            assert "tls" not in server


@pytest.mark.parametrize("mode", MODES)
def test_stages_without_the_gateway_hop_do_not_depend_on_the_mode(mode: str):
    for stage in sorted(set(STAGES) - MODE_STAGES):
        objs = render(stage, mode=mode, trust=LOCAL_TRUST)
        assert not {"Gateway", "VirtualService"} & {o["kind"] for o in objs}, stage
        assert "ISTIO_MUTUAL" not in to_yaml(objs) and "DISABLE" not in to_yaml(objs), stage


@pytest.mark.parametrize(
    ("stage", "mode_", "port", "ca", "client"),
    [
        ("origination/simple", "SIMPLE", 443, "/x/ca.pem", False),
        ("origination/wrong-ca", "SIMPLE", 443, "/x/other.pem", False),
        ("origination/mutual", "MUTUAL", 8443, "/x/ca.pem", True),
        ("origination/mutual-without-client-cert", "SIMPLE", 8443, "/x/ca.pem", False),
    ],
)
@pytest.mark.parametrize("mode", MODES)
def test_origination_rule_uses_the_backend_trust(stage, mode_, port, ca, client, mode):
    objs = render(stage, mode=mode, trust=LOCAL_TRUST)
    [dr] = [d for d in _by_kind(objs, "DestinationRule") if d["metadata"]["name"] == ORIGINATION_DR]
    [setting] = dr["spec"]["trafficPolicy"]["portLevelSettings"]
    assert setting["port"]["number"] == port
    expected = {"mode": mode_, "sni": "edition.cnn.com", "subjectAltNames": ["edition.cnn.com"], "caCertificates": ca}
    if client:
        expected |= {"clientCertificate": "/x/c.pem", "privateKey": "/x/k.pem"}
    assert setting["tls"] == expected
    # The gateway route adds the via header and goes to the upstream port the rule covers.
    [vs] = _by_kind(objs, "VirtualService")
    gateway_route = vs["spec"]["http"][1]
    assert gateway_route["route"][0]["destination"]["port"]["number"] == port
    assert VIA_HEADER in gateway_route["headers"]["request"]["add"]


def test_credential_name_trust_is_used_on_kubernetes():
    trust = {
        "trust": {"credential_name": "edition-cnn-com-ca"},
        "wrong_trust": {"credential_name": "untrusted-ca"},
        "client": {"credential_name": "edition-cnn-com-client"},
    }
    tls = {
        stage: render(stage, mode="plaintext", trust=trust)[-1]["spec"]["trafficPolicy"]["portLevelSettings"][0]["tls"]
        for stage in ("origination/simple", "origination/wrong-ca", "origination/mutual")
    }
    assert tls["origination/simple"]["credentialName"] == "edition-cnn-com-ca"
    assert tls["origination/wrong-ca"]["credentialName"] == "untrusted-ca"
    assert tls["origination/mutual"]["credentialName"] == "edition-cnn-com-client"
    assert not any("caCertificates" in t for t in tls.values())


def test_extra_values_override_and_results_are_fresh_copies():
    objs = render("http/serviceentry", mode="plaintext", namespace="elsewhere")
    assert objs[0]["metadata"]["namespace"] == "elsewhere"
    objs[0]["metadata"]["namespace"] = "mutated"
    assert (
        render("http/serviceentry", mode="plaintext", namespace="elsewhere")[0]["metadata"]["namespace"] == "elsewhere"
    )


# --- errors -------------------------------------------------------------------------------------


def test_missing_template_value_names_the_template():
    with pytest.raises(HarnessError) as caught:
        render("origination/simple", mode="plaintext")  # no trust: caCertificates has no value
    message = str(caught.value)
    assert message.startswith("fixtures/tls-origination/destinationrule.yaml.j2: ")
    assert "ca_certificates" in message and "the backend must provide it" in message
    assert "\n" not in message


def test_mutual_without_client_values_names_the_template():
    trust = {"trust": LOCAL_TRUST["trust"], "wrong_trust": LOCAL_TRUST["wrong_trust"]}
    with pytest.raises(
        HarnessError, match=r"^fixtures/tls-origination/destinationrule\.yaml\.j2: .*client_certificate"
    ):
        render("origination/mutual", mode="istio-mutual", trust=trust)


def test_unknown_stage_lists_the_known_ones():
    with pytest.raises(HarnessError) as caught:
        render("http/nope", mode="plaintext")
    message = str(caught.value)
    assert "unknown scenario stage 'http/nope'" in message
    assert all(stage in message for stage in STAGES)


def test_unknown_mode_lists_the_modes():
    with pytest.raises(HarnessError, match=r"unknown mTLS mode 'mutual': use one of istio-mutual, plaintext"):
        render("http/gateway", mode="mutual")


@pytest.mark.parametrize(
    ("text", "line"),
    [
        ("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: x\n bad: indent\n", 5),
        ("kind: A\nmetadata: {name: a}\n---\nkind: B\nmetadata: {name: [1, 2}\n", 5),
        ('kind: A\nmetadata:\n  name: "unterminated\n', 4),
    ],
    ids=["indentation", "second-document", "unterminated-string"],
)
def test_malformed_manifest_file_names_the_line(tmp_path: Path, text: str, line: int):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(HarnessError) as caught:
        load_manifest_file(path)
    message = str(caught.value)
    assert message.startswith(f"malformed manifest {path} line {line}: ")
    assert message.endswith("(fix the YAML)") and "\n" not in message


def test_manifest_file_documents_need_kind_and_metadata(tmp_path: Path):
    path = tmp_path / "m.yaml"
    path.write_text("kind: A\nmetadata: {name: a}\n---\n- just\n- a list\n")
    with pytest.raises(HarnessError, match="every document needs kind and metadata"):
        load_manifest_file(path)
    with pytest.raises(HarnessError, match=r"cannot read manifest .*missing\.yaml"):
        load_manifest_file(tmp_path / "missing.yaml")


def test_manifest_file_round_trips_a_rendering(tmp_path: Path):
    objs = render("origination/mutual", mode="istio-mutual", trust=LOCAL_TRUST)
    path = tmp_path / "m.yaml"
    path.write_text("# comment\n---\n" + to_yaml(objs))
    assert load_manifest_file(path) == objs


# --- the real istioctl ---------------------------------------------------------------------------


def _istioctl_validate(istioctl: Path, text: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(istioctl), "validate", "-f", "-"], input=text, capture_output=True, text=True, timeout=60
    )


@pytest.fixture(scope="module")
def istioctl(istio_binaries) -> Path:
    """istioctl found or built exactly as the harness does (never skipped: make test builds it)."""
    return istio_binaries.istioctl


@pytest.mark.parametrize("case", RENDERINGS, ids=_ids)
def test_istioctl_validates_every_rendering(istioctl: Path, case: tuple[str, str]):
    stage, mode = case
    text = to_yaml(render(stage, mode=mode, trust=LOCAL_TRUST))
    result = _istioctl_validate(istioctl, text)
    assert result.returncode == 0, f"istioctl rejected {stage}/{mode}:\n{result.stdout}{result.stderr}\n{text}"
    assert "validation succeed" in result.stdout + result.stderr


def test_istioctl_rejects_a_broken_rendering(istioctl: Path):
    """The validation above can fail: a wrong TLS mode in the same objects is refused."""
    objs = render("http/gateway", mode="plaintext", trust=LOCAL_TRUST)
    [dr] = [d for d in objs if d["metadata"]["name"] == GATEWAY_DR]
    dr["spec"]["subsets"][0]["trafficPolicy"]["tls"]["mode"] = "NOT_A_MODE"
    result = _istioctl_validate(istioctl, to_yaml(objs))
    assert result.returncode != 0
    assert f"DestinationRule/default/{GATEWAY_DR}" in result.stdout + result.stderr
    assert "NOT_A_MODE" in result.stdout + result.stderr
