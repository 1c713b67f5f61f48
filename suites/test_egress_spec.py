"""Your own egress: one test per expectation of the spec given by --egress-spec (make e2e
SPEC=FILE). Not collected without a spec; README's "Test your own egress" describes the format."""

from __future__ import annotations

from harness.spec import checks


def test_expectation(spec_mesh, spec_gaps, egress_expectation, evidence):
    """The expectation's client command from its source, checked clause by clause, hop by hop
    (on an existing cluster, the clauses its mesh config lets the harness see)."""
    checks.run(spec_mesh, evidence, egress_expectation, spec_gaps)
