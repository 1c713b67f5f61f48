"""The egress spec's reader: the example loads, and every bad spec is one line naming the file,
the line and the fix (no mesh: parsing logic only)."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.spec.load import SpecError, load_spec
from harness.spec.manifests import read_manifests
from harness.spec.world import spec_sites

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "payments" / "egress.yaml"

GOOD = """\
hosts:
  api.pay.example:
    ports: {443: HTTPS}
  "*.cloud.example":
    names: [storage.cloud.example]
    ports: {443: TLS}
sources:
  payments/app: {}
expect:
  - from: payments/app
    to: https://api.pay.example/v1
    via: gateway
"""


def write(tmp_path: Path, text: str, manifests: dict[str, str] | None = None) -> Path:
    spec = tmp_path / "egress.yaml"
    spec.write_text(text)
    for name, body in (manifests or {}).items():
        (tmp_path / name).write_text(body)
    return spec


def refusal(tmp_path: Path, text: str, manifests: dict[str, str] | None = None) -> str:
    spec = write(tmp_path, text, manifests)
    with pytest.raises(SpecError) as info:
        read_manifests(load_spec(spec))
    line = str(info.value)
    assert "\n" not in line
    return line


def test_the_example_loads_and_never_mentions_cnn():
    spec = load_spec(EXAMPLE)
    ids = [e.id for e in spec.expectations]
    assert "payments/app -> https://api.pay.example/v1/charges" in ids
    assert "reporting/app -> http://legacy.partner.example/orders refused (authorization-policy)" in ids
    assert len(read_manifests(spec)) >= 8
    for path in [EXAMPLE, *spec.manifests]:
        assert "cnn" not in path.read_text().lower(), path


def test_a_good_spec_and_its_world(tmp_path):
    spec = load_spec(write(tmp_path, GOOD))
    (e,) = spec.expectations
    assert (e.source, e.target.host, e.target.port, e.via, e.expected_status) == (
        "payments/app",
        "api.pay.example",
        443,
        "gateway",
        200,
    )
    sites = {s.name: s for s in spec_sites(spec)}
    assert sites["*.cloud.example"].names == ("storage.cloud.example",)
    assert sites["*.cloud.example"].cert_names == ("*.cloud.example",)
    assert sites["api.pay.example"].ports == {}  # the stand-in's fixed https port


@pytest.mark.parametrize(
    "change, line, words",
    [
        (("    via: gateway", "    via: gatway"), 12, "via is one of: gateway, direct"),
        (("    via: gateway", "    vai: gateway"), 12, "unknown key `vai` (did you mean `via`?)"),
        (
            ("to: https://api.pay.example/v1", "to: https://api.other.example/v1"),
            11,
            "host api.other.example is not declared",
        ),
        (("- from: payments/app", "- from: payments/ap"), 10, "source 'payments/ap' is not declared"),
        (("    names: [storage.cloud.example]\n", ""), 4, "needs at least one concrete name|`names:`"),
        (("{443: TLS}", "{80: TLS}"), 6, "port 80 is the stand-in's fixed http port"),
        (("to: https://api.pay.example/v1", "to: https://api.pay.example:8443/v1"), 11, "has no port 8443"),
        (
            ("    via: gateway", "    via: gateway\n    refused: registry-only"),
            12,
            "a refused exchange reaches no host: drop `via:`",
        ),
        (("hosts:", "hosts:\n  bad_name:\n    ports: {443: HTTPS}"), 2, "'bad_name' is not a DNS name"),
        (("{443: HTTPS}", "{443: HTTP2}"), 3, "one of HTTP, HTTPS, TLS, TCP"),
    ],
)
def test_a_bad_spec_is_one_line_with_its_line(tmp_path, change, line, words):
    text = GOOD.replace(*change)
    assert text != GOOD
    got = refusal(tmp_path, text)
    assert got.startswith(f"{tmp_path / 'egress.yaml'}:{line}: "), got
    assert any(w in got for w in words.split("|")), got


def test_not_yaml_names_its_line(tmp_path):
    got = refusal(tmp_path, GOOD.replace("    ports: {443: HTTPS}", "    ports: {443: HTTPS"))
    assert ":4: not YAML" in got or ":3: not YAML" in got, got


def test_two_expectations_with_one_id_are_refused(tmp_path):
    got = refusal(tmp_path, GOOD + "  - from: payments/app\n    to: https://api.pay.example/v1\n")
    assert ":13: two expectations are both" in got and "give one a `name:`" in got


def test_a_manifest_the_harness_does_not_apply_names_file_and_line(tmp_path):
    manifests = {
        "m.yaml": "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: a}\nspec: {hosts: [a.b]}\n"
        "---\n# the workload\napiVersion: apps/v1\nkind: Deployment\nmetadata: {name: app}\n"
    }
    got = refusal(tmp_path, GOOD + "manifests: [m.yaml]\n", manifests)
    assert got.startswith(f"{tmp_path / 'm.yaml'}:7: the harness does not apply a Deployment"), got


def test_a_missing_manifest_is_named(tmp_path):
    got = refusal(tmp_path, GOOD + "manifests: [nothing-here]\n")
    assert ":13: nothing-here: no such file or folder" in got, got


def test_a_manifest_without_namespace_lands_in_default(tmp_path):
    manifests = {
        "m.yaml": "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: a}\nspec: {hosts: [a.b]}\n"
    }
    spec = load_spec(write(tmp_path, GOOD + "manifests: [m.yaml]\n", manifests))
    (m,) = read_manifests(spec)
    assert m.obj["metadata"]["namespace"] == "default" and m.where.line == 1


def test_a_missing_spec_file_says_which(tmp_path):
    with pytest.raises(SpecError, match="cannot read the egress spec"):
        load_spec(tmp_path / "nope.yaml")


def test_a_manifest_istio_rejects_names_its_file_and_line(tmp_path, istio_binaries):
    from harness.istioctl_validate import IstioctlValidator
    from harness.spec.manifests import validate

    good = "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: a, namespace: x}\nspec: {hosts: [a.example], ports: [{number: 443, name: tls, protocol: TLS}], resolution: DNS}\n"
    bad = good.replace("name: a,", "name: b,").replace("resolution: DNS", "resolution: SOMETIMES")
    spec = load_spec(write(tmp_path, GOOD + "manifests: [m.yaml]\n", {"m.yaml": good + "---\n" + bad}))
    with pytest.raises(SpecError) as info:
        validate(read_manifests(spec), IstioctlValidator(istio_binaries.istioctl))
    assert str(info.value).startswith(f"{tmp_path / 'm.yaml'}:6: ServiceEntry x/b: "), info.value
