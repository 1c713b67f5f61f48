"""The seed's §1–§3 written as egress specs (examples/seed/, generated from the seed's own stages)
give the same verdicts as the Python suites' tests of the same sections on the local mesh."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.spec.seed_specs import SECTIONS, spec_files
from tests.helpers.spec_runs import ROOT, run_pytest, run_spec

SEED = ROOT / "examples" / "seed"


def test_the_seed_specs_are_the_current_rendering_of_the_stages():
    for section in SECTIONS:
        for name, text in spec_files(section).items():
            assert (SEED / name).read_text() == text, (
                f"examples/seed/{name} is stale: run python -m harness.spec.seed_specs"
            )


@pytest.mark.mesh
@pytest.mark.slow
def test_each_section_as_a_spec_has_the_suites_verdict(tmp_path: Path, istio_binaries, istio_version):
    suite_ids = [suite_test for _, suite_test, _ in SECTIONS.values()]
    suites = run_pytest(tmp_path / "suites", istio_version, *suite_ids)
    verdicts = {}
    for section, (_, suite_test, _) in SECTIONS.items():
        spec = run_spec(tmp_path / section, SEED / f"{section}.yaml", istio_version)
        suite_verdict = suites[suite_test.split("::", 1)[1]]
        verdicts[section] = (suite_verdict is None, all(v is None for v in spec.values()), spec, suite_verdict)
    assert all(suite == spec for suite, spec, _, _ in verdicts.values()), verdicts
    assert all(suite for suite, _, _, _ in verdicts.values()), verdicts  # and on a sound mesh: all pass
