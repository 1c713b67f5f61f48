"""pytest wiring of an egress spec (`pytest --egress-spec FILE suites/test_egress_spec.py`, which
`make e2e SPEC=FILE` runs): read and checked at configure time, before anything starts (a bad spec
is one line naming the file and line); its pods and hosts put into the tables every backend reads;
its manifests validated by the real istioctl, then applied once for the session; one test per
expectation, named by it.

Without --egress-spec, suites/test_egress_spec.py is not collected: the seed's suites run.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from harness.pytest_options import setting

SPEC_KEY = pytest.StashKey[Any]()
GAPS_KEY = pytest.StashKey[Any]()
MANIFESTS_KEY = pytest.StashKey[list]()
SPEC_SUITE = "test_egress_spec.py"


def configure(config: pytest.Config) -> str | None:
    """Read the spec given by --egress-spec and install its world; the refusal line, if any."""
    from harness.spec import world
    from harness.spec.load import SpecError, load_spec
    from harness.spec.manifests import read_manifests

    path = setting(config, "spec")
    if not path:
        return None
    try:
        spec = load_spec(path)
        manifests = read_manifests(spec)
    except SpecError as exc:
        return str(exc)
    config.stash[SPEC_KEY] = spec
    config.stash[MANIFESTS_KEY] = manifests
    world.install(spec)
    return None


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    if collection_path.name == SPEC_SUITE and SPEC_KEY not in config.stash:
        return True
    return None


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "egress_expectation" not in metafunc.fixturenames:
        return
    spec = metafunc.config.stash.get(SPEC_KEY, None)
    if spec is None:
        raise pytest.UsageError(
            f"{metafunc.definition.nodeid} runs an egress spec: pass --egress-spec FILE (make e2e SPEC=FILE)"
        )
    metafunc.parametrize("egress_expectation", spec.expectations, ids=[e.id for e in spec.expectations])


def mesh_config_gaps(mesh: Any, spec: Any) -> Any:
    """On an existing cluster, what its mesh config does not let the checks see (preflight.py);
    the local mesh and kind run the harness's own mesh config: no gaps."""
    import yaml

    from harness.spec.preflight import Gaps, mesh_gaps

    if getattr(mesh, "name", "") != "cluster":
        return Gaps()
    data = mesh.kubectl.json("get", "configmap", "istio", "-n", "istio-system").get("data") or {}
    return mesh_gaps(yaml.safe_load(data.get("mesh") or "") or {}, spec)


@pytest.fixture
def spec_gaps(spec_applied: Any, pytestconfig: pytest.Config) -> Any:
    return pytestconfig.stash[GAPS_KEY]


def validate_manifests(config: pytest.Config, istioctl: Path) -> None:
    """The spec's Istio objects through the real `istioctl validate`, before the mesh starts."""
    from harness.istioctl_validate import IstioctlValidator
    from harness.spec.manifests import validate

    manifests = config.stash.get(MANIFESTS_KEY, None)
    if manifests:
        validate(manifests, IstioctlValidator(istioctl))


@pytest.fixture(scope="session")
def egress_spec(pytestconfig: pytest.Config) -> Any:
    return pytestconfig.stash[SPEC_KEY]


@pytest.fixture(scope="session")
def spec_applied(mesh: Any, egress_spec: Any, pytestconfig: pytest.Config) -> Iterator[Any]:
    """The spec's Secrets, Namespace labels and manifests on the mesh, for the whole session (the
    apply waits until every proxy runs them); deleted at its end."""
    from harness.spec.manifests import apply_spec

    manifests = pytestconfig.stash[MANIFESTS_KEY]
    gaps = mesh_config_gaps(mesh, egress_spec)
    pytestconfig.stash[GAPS_KEY] = gaps
    if gaps.lines:
        capture = pytestconfig.pluginmanager.getplugin("capturemanager")
        with capture.global_and_fixture_disabled():
            for line in gaps.lines:
                print(f"egress-harness: cannot verify on this cluster: {line}", flush=True)
    applied = apply_spec(mesh, egress_spec, manifests)
    yield mesh
    for objs in applied:
        mesh.delete(objs)
