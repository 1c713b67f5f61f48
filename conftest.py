"""Shared pytest wiring for suites/ and tests/: options, the session mesh, per-test evidence.

A HarnessError (bad input, missing binary, no root) ends the session with its one line before
anything is started. The mesh is started once per session and always torn down: after pass,
failure, Ctrl-C (SIGINT) and SIGTERM; a SIGKILLed run is cleaned up by the mesh's watchdog.
"""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from harness.errors import HarnessError

from harness.pytest_support import EVIDENCE_KEY, REPORT_KEY, evidence_dir_for, has_failed


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("egress-harness")
    group.addoption("--backend", default="local", choices=["local", "kind", "cluster"],
                    help="where the mesh runs (default: local, the pocket cluster)")
    group.addoption("--istio-version", default=None, help="Istio version (default: the pinned one)")
    group.addoption("--artifacts", default="artifacts", help="folder for junit, summary and evidence")
    group.addoption("--dry-run", action="store_true", help="print the plan of the kind/cluster backend and exit")
    # pytest-kind-ng (the [kind] extra) defines these too when its plugin is loaded.
    for flag, kwargs in (("--keep-cluster", {"action": "store_true", "help": "kind: reuse and keep the cluster"}),
                         ("--cluster-name", {"default": "egress-harness", "help": "kind: cluster name"}),
                         ("--kubeconfig", {"default": None, "help": "cluster backend: kubeconfig of an existing cluster"})):
        try:
            group.addoption(flag, **kwargs)
        except ValueError:
            pass


def _sigterm_as_interrupt(signum, frame):  # noqa: ARG001
    raise KeyboardInterrupt("SIGTERM")


def pytest_configure(config: pytest.Config) -> None:
    # SIGTERM (CI timeouts, `kill`) takes the same clean path as Ctrl-C.
    signal.signal(signal.SIGTERM, _sigterm_as_interrupt)


@pytest.fixture(scope="session")
def artifacts_dir(pytestconfig: pytest.Config) -> Path:
    path = Path(pytestconfig.getoption("--artifacts")).resolve()
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        pytest.exit(f"egress-harness: cannot create the artifacts folder {path}: {exc.strerror} (pass --artifacts DIR)",
                    returncode=2)
    return path


@pytest.fixture(scope="session")
def istio_version(pytestconfig: pytest.Config) -> str:
    from harness.versions import DEFAULT_ISTIO_VERSION

    return pytestconfig.getoption("--istio-version") or DEFAULT_ISTIO_VERSION


@pytest.fixture(scope="session")
def istio_binaries(istio_version: str, pytestconfig: pytest.Config):
    from harness.istio_binaries import ensure_istio

    # A first build takes minutes: its progress goes to the terminal, not into captured output.
    capture = pytestconfig.pluginmanager.getplugin("capturemanager")
    try:
        with capture.global_and_fixture_disabled():
            return ensure_istio(istio_version)
    except HarnessError as exc:
        pytest.exit(f"egress-harness: {exc}", returncode=2)


@pytest.fixture(scope="session")
def mesh(pytestconfig: pytest.Config, request: pytest.FixtureRequest):
    """The backend the suites talk to (harness/backend.py describes its interface)."""
    backend = pytestconfig.getoption("--backend")
    from harness.manifests import check_fixtures

    try:
        check_fixtures()  # a broken fixture stops the run before anything is started
        if backend == "local":
            from harness.local.mesh import preflight

            preflight()  # no root, a missing command → one line, nothing created
    except HarnessError as exc:
        pytest.exit(f"egress-harness: {exc}", returncode=2)
    artifacts_dir = request.getfixturevalue("artifacts_dir")
    if backend != "local":
        from harness.backends import make_remote_backend

        try:
            remote = make_remote_backend(pytestconfig, artifacts_dir)
        except HarnessError as exc:
            pytest.exit(f"egress-harness: {exc}", returncode=2)
        yield remote
        remote.stop()
        return
    from harness.local.mesh import LocalMesh

    binaries = request.getfixturevalue("istio_binaries")
    local = LocalMesh(binaries, artifacts_dir)
    try:
        local.start()
    except HarnessError as exc:
        local.stop()
        pytest.exit(f"egress-harness: {exc}", returncode=2)
    except BaseException:
        local.stop()
        raise
    try:
        yield local
    finally:
        local.stop()


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call):
    report = yield
    item.stash.setdefault(REPORT_KEY, {})[report.when] = report
    return report


@pytest.fixture
def evidence(request: pytest.FixtureRequest, artifacts_dir: Path):
    """Collects evidence for this test; written out only if the test fails."""
    from harness.evidence import Evidence

    ev = Evidence()
    request.node.stash[EVIDENCE_KEY] = ev
    yield ev
    if has_failed(request.node):
        ev.write(evidence_dir_for(artifacts_dir, request.node), request.node)
