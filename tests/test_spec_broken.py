"""The example egress spec on the local mesh, whole and in broken copies: each break turns exactly
the expectation it breaks red, at the hop where it breaks, and leaves the others green. Each copy
runs as its own pytest session (`pytest --egress-spec COPY suites/test_egress_spec.py`), read
back from its JUnit file, as CI would read it."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.helpers.spec_runs import run_spec

pytestmark = [pytest.mark.mesh, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "payments"
PAY = "payments/app -> https://api.pay.example/v1/charges"
PARTNER = "payments/app -> http://legacy.partner.example/orders"
REPORTING_REFUSED = "reporting/app -> http://legacy.partner.example/orders refused (authorization-policy)"
UNLISTED = "payments/app -> https://unlisted.example/ refused (registry-only)"


def broken_copy(tmp_path: Path, file: str, old: str, new: str | None) -> Path:
    """The example in tmp_path with one edit of one manifest (new=None: the YAML document holding
    `old` removed); the spec file to run."""
    copy = tmp_path / "payments"
    shutil.copytree(EXAMPLE, copy)
    target = copy / "manifests" / file
    text = target.read_text()
    assert text.count(old) == 1, f"{old!r} is not once in {file}"
    if new is None:
        text = "---\n".join(doc for doc in text.split("---\n") if old not in doc)
    else:
        text = text.replace(old, new)
    target.write_text(text)
    return copy / "egress.yaml"


def red(results: dict[str, str | None]) -> dict[str, str]:
    return {k: v for k, v in results.items() if v is not None}


def test_the_example_passes_whole(tmp_path, istio_binaries, istio_version):
    results = run_spec(tmp_path, EXAMPLE / "egress.yaml", istio_version)
    assert len(results) == 7 and red(results) == {}, results


@pytest.mark.parametrize(
    "file, old, new, expectation, hop",
    [
        pytest.param(
            "egress-gateway.yaml",
            "        host: istio-egressgateway.istio-system.svc.cluster.local\n        subset: pay\n",
            "        host: api.pay.example\n",
            PAY,
            "sidecar → gateway",
            id="mesh-route-bypasses-the-gateway",
        ),
        pytest.param(
            "origination.yaml",
            "sni: legacy.partner.example",
            "sni: wrong.partner.example",
            PARTNER,
            "gateway → upstream",
            id="wrong-sni-in-the-origination-rule",
        ),
        pytest.param(
            "policy.yaml",
            "kind: AuthorizationPolicy",
            None,
            REPORTING_REFUSED,
            "gateway → upstream",
            id="authorization-policy-removed",
        ),
        pytest.param(
            "policy.yaml",
            "mode: REGISTRY_ONLY",
            "mode: ALLOW_ANY",
            UNLISTED,
            "sidecar → upstream",
            id="allow-any-instead-of-registry-only",
        ),
    ],
)
def test_a_broken_copy_turns_its_expectation_red_at_its_hop(
    tmp_path, istio_binaries, istio_version, file, old, new, expectation, hop
):
    results = run_spec(tmp_path, broken_copy(tmp_path, file, old, new), istio_version)
    failed = red(results)
    assert list(failed) == [expectation], results
    assert f"[hop: {hop}]" in failed[expectation], failed
