"""A NetworkPolicy's refusal in an egress spec: `refused: network-policy` holds while the policy is
there, and turns red at the source's own hop when it is gone (each run a pytest session of its own)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers.spec_runs import run_spec

pytestmark = [pytest.mark.mesh, pytest.mark.slow]

SPEC = """\
hosts:
  api.pay.example:
    ports: {443: HTTPS}
manifests: [policy.yaml]
sources:
  batch/job: {sidecar: false}
  payments/app: {sidecar: false}
expect:
  - from: batch/job
    to: https://api.pay.example/
    refused: network-policy
  - from: payments/app
    to: https://api.pay.example/
    via: direct
    tls_by: app
    sni: api.pay.example
"""
POLICY = """\
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: no-egress, namespace: batch}
spec:
  podSelector: {}
  policyTypes: [Egress]
  egress: []
"""
REFUSED = "batch/job -> https://api.pay.example/ refused (network-policy)"


def write(tmp_path: Path, policy: str) -> Path:
    (tmp_path / "policy.yaml").write_text(policy)
    spec = tmp_path / "egress.yaml"
    spec.write_text(SPEC)
    return spec


def test_the_policy_refuses_one_namespace_and_not_the_other(tmp_path, istio_binaries, istio_version):
    results = run_spec(tmp_path, write(tmp_path, POLICY), istio_version)
    assert results == {REFUSED: None, "payments/app -> https://api.pay.example/": None}, results


def test_without_the_policy_the_refusal_is_red_at_the_source(tmp_path, istio_binaries, istio_version):
    # The same object with an egress rule that allows everything: applied, and refusing nothing.
    results = run_spec(tmp_path, write(tmp_path, POLICY.replace("egress: []", "egress: [{}]")), istio_version)
    assert list(k for k, v in results.items() if v) == [REFUSED], results
    assert "[hop: app → upstream]" in (results[REFUSED] or ""), results
