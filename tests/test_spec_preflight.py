"""The preflight of an existing cluster's mesh config against a spec: one line per gap, and the
clauses it leaves out (parsing logic only)."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness import sites
from harness.meshconfig import mesh_config
from harness.spec.load import load_spec
from harness.spec.preflight import ACCESS_LOG, counters_clause, mesh_gaps, our_fields_are_enough
from harness.spec.world import spec_sites

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "payments" / "egress.yaml"


@pytest.fixture
def spec_sites_installed():
    """The example's hosts in the sites table, as `--egress-spec` installs them; the seed's after."""
    before = list(sites.SITES)
    sites.use(spec_sites(load_spec(EXAMPLE)))
    yield
    sites.use(before)


def test_the_harness_own_mesh_config_has_no_gaps(spec_sites_installed):
    assert our_fields_are_enough()
    gaps = mesh_gaps(mesh_config(), load_spec(EXAMPLE))
    assert gaps.lines == [] and gaps.unverifiable == set()


def test_the_seed_mesh_config_keeps_no_counter_of_the_spec_hosts():
    gaps = mesh_gaps(mesh_config(), load_spec(EXAMPLE))
    assert counters_clause("api.pay.example") in gaps.unverifiable and ACCESS_LOG not in gaps.unverifiable


def test_istio_defaults_leave_out_the_logs_and_every_counter():
    gaps = mesh_gaps({}, load_spec(EXAMPLE))
    assert ACCESS_LOG in gaps.unverifiable
    assert counters_clause("api.pay.example") in gaps.unverifiable
    assert gaps.lines[0].startswith("access logs are off (meshConfig.accessLogFile is empty)")
    assert any("api.pay.example's counters are not kept" in line for line in gaps.lines)
    assert all("\n" not in line for line in gaps.lines)


def test_text_logs_and_a_format_without_the_fields_are_gaps():
    spec = load_spec(EXAMPLE)
    text = mesh_gaps({"accessLogFile": "/dev/stdout"}, spec)
    assert "access logs are TEXT, not JSON" in text.lines[0]
    thin = mesh_gaps(
        {
            "accessLogFile": "/dev/stdout",
            "accessLogEncoding": "JSON",
            "accessLogFormat": '{"authority":"%REQ(:AUTHORITY)%"}',
        },
        spec,
    )
    assert "lacks upstream_cluster" in thin.lines[0] and ACCESS_LOG in thin.unverifiable


def test_a_prefix_that_keeps_one_host_keeps_only_that_one(spec_sites_installed):
    matcher = {"inclusionPrefixes": ["cluster.outbound|443||api.pay.example"]}
    gaps = mesh_gaps({**mesh_config(), "defaultConfig": {"proxyStatsMatcher": matcher}}, load_spec(EXAMPLE))
    assert counters_clause("api.pay.example") not in gaps.unverifiable
    assert counters_clause("legacy.partner.example") in gaps.unverifiable
    assert ACCESS_LOG not in gaps.unverifiable
