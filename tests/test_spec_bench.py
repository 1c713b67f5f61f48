"""The generated spec of `make bench-spec` is a valid spec (parsing logic only); the benchmark
itself runs with `make bench-spec`, not as a timed test."""

from __future__ import annotations

from harness.spec.bench import _durations, write_spec
from harness.spec.load import load_spec
from harness.spec.manifests import read_manifests


def test_the_generated_spec_loads(tmp_path):
    spec = load_spec(write_spec(tmp_path, 3))
    assert len(spec.expectations) == 12 and len(spec.hosts) == 3
    assert len(read_manifests(spec)) == 2 + 2 * 3  # Gateway, gateway DR, a ServiceEntry and a VirtualService per host


def test_durations_are_read_by_phase():
    out = "19.70s setup    suites/x.py::t[a]\n0.25s call     suites/x.py::t[b]\n3.60s teardown suites/x.py::t[c]\n"
    assert _durations(out) == {"setup": [19.7], "call": [0.25], "teardown": [3.6]}
