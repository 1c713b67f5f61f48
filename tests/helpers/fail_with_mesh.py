"""A test module the keep-mesh test runs in a child pytest (no test_ prefix: `make test` does not
collect it): one test that fails while the session's mesh is up."""

from __future__ import annotations


def test_fails(mesh):
    raise AssertionError("a deliberate failure: --egress-keep-mesh should hold the mesh up now")
