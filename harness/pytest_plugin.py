"""pytest wiring of egress-harness, loaded as a plugin (the `pytest11` entry point in pyproject).

It acts only in a harness session: one whose tests request a fixture of HARNESS_FIXTURES (or that
the repository's conftest.py activates). Any other session in the venv is left as pytest would run
it: no artifacts folder, no lock, no junit.xml moved, no signal handler changed.

Before anything starts, one line and exit 4 (pytest's usage error) for: an artifacts folder that
cannot be written or is in use by another run, a dry run of the local backend, a broken fixture
(Jinja syntax, YAML, or a field `istioctl validate` refuses), a missing command, no root. Then the mesh is started once per
session and always torn down: after pass, failure, Ctrl-C (SIGINT), SIGTERM and SIGHUP; a SIGKILLed
run is cleaned up by the mesh's watchdog (root) or by the kernel (rootless: a PID namespace).

Per test: evidence collected while it runs, written under artifacts/evidence/<test>/ if it fails
(in its cleanup too), the mesh-wide state added; a row in artifacts/summary.md. A fault of the
harness (anything that is not a mesh assertion) is reported as a harness error, not as a failure
of the mesh; a HarnessFault (and a HopFailure made one_line: istiod not answering its debug
endpoint) reads as its one line, the traceback going into the evidence. A
process the session holds that exited (the stand-in, istiod) is said once and stops the session.

Each test counts once in the terminal's totals, as its row in summary.md does: a test that passed
and then failed its cleanup is one error (or one failure), not "1 passed, 1 error".
"""

from __future__ import annotations

import os
import re
import signal
import time
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NoReturn

import pytest

from harness import artifacts as _artifacts
from harness import pytest_options
from harness.errors import HarnessError, HarnessFault, HopFailure, MeshFailure, ProcessExited
from harness.evidence import Evidence
from harness.istio_binaries import IstioBinaries
from harness.manifests import GATEWAY_API_MODES, MODES
from harness.pytest_options import flag, required, setting
from harness.pytest_reports import (
    ACTIVE,
    ARTIFACTS,
    HOP,
    SUITE,
    SessionReports,
    active,
    add_suite_property,
    header_lines,
    properties_of,
    step_summary,
    write_json,
)
from harness.scenario import Scenario
from harness.spec import pytest_spec
from harness.summary import SummaryWriter

REPORT_KEY = pytest.StashKey[dict]()
EVIDENCE_KEY = pytest.StashKey[Evidence]()
_SUMMARY = pytest.StashKey[SummaryWriter]()
_LOCK = pytest.StashKey[int]()
_MESH = pytest.StashKey[Any]()
_STOPPED = pytest.StashKey[str]()  # why the session stopped early: a process it holds exited
HARNESS_ERROR = "harness error"


def pytest_addoption(parser: pytest.Parser, pluginmanager: pytest.PytestPluginManager) -> None:
    # An egress spec's hooks and fixtures (--egress-spec) come with this plugin.
    pluginmanager.register(pytest_spec, "egress_harness_spec")
    # The options, their environment variables and ini keys: harness/pytest_options.py.
    pytest_options.add_options(parser)


def _usage(line: str) -> NoReturn:
    """Bad setup found while pytest configures and collects: one line, before anything starts, and
    pytest's exit status for a usage error (4)."""
    raise pytest.UsageError(f"egress-harness: {line}")


def _exit(line: str) -> NoReturn:
    """Bad setup found by a session fixture (a UsageError there would read as that test's error):
    the same line and status, the session ended before a test runs."""
    pytest.exit(f"egress-harness: {line}", returncode=pytest.ExitCode.USAGE_ERROR)


def _as_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(signal.Signals(signum).name)


def _claim_artifacts(config: pytest.Config) -> Path:
    """The artifacts folder, writable, with room, and this run's alone (harness/artifacts.py)."""
    from harness import artifacts

    try:
        path, fd = artifacts.claim(Path(required(config, "artifacts")))
    except artifacts.ArtifactsProblem as exc:
        _usage(str(exc))
        raise  # not reached
    config.stash[_LOCK] = fd
    return path


# The fixtures of this plugin and of pytest_spec: a session whose tests request none of them is not
# a harness session, and the plugin then leaves it alone (tests/test_quiet_plugin.py pins the set).
HARNESS_FIXTURES = frozenset(
    {
        "artifacts_dir",
        "evidence",
        "istio_binaries",
        "istio_version",
        "istioctl",
        "mesh",
        "scenario",
        "spec_mesh",
        "egress_spec",
        "spec_applied",
        "spec_gaps",
    }
)
_OUR_JUNIT = pytest.StashKey[bool]()  # xmlpath was set by this plugin, not by --junitxml


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "istio: needs Istio's binaries (set on every test that requests istio_binaries)")
    config.addinivalue_line("markers", "gateway_api: the test's section has a Gateway API form (runs in its modes too)")
    config.stash[_SUMMARY] = SummaryWriter()
    if _only_listing(config):
        return
    if flag(config, "dry_run") and required(config, "backend") == "local":
        _usage(
            "a dry run prints the plan of --egress-backend kind or cluster; the local mesh has none: drop --egress-dry-run (DRY_RUN)"
        )
    refused = pytest_spec.configure(config)  # a bad spec: one line, before anything is claimed
    if refused:
        _usage(refused)
    # junit.xml goes with the rest, unless --junitxml says otherwise. Set now: junitxml opens its
    # report in its own pytest_configure, after this one. Dropped again (nothing written) once
    # collection shows a session that requests no harness fixture.
    if getattr(config.option, "xmlpath", None) is None and hasattr(config.option, "xmlpath"):
        config.option.xmlpath = str(Path(required(config, "artifacts")).resolve() / "junit.xml")
        config.stash[_OUR_JUNIT] = True


def _only_listing(config: pytest.Config) -> bool:
    return bool(config.option.help or config.option.collectonly and not flag(config, "dry_run"))


# pytest-xdist: each worker would start a mesh of its own on the one artifacts folder (the second
# then read "in use by another run"), and the suites' tests share one mesh in turn.
XDIST_REFUSAL = (
    "pytest-xdist (-n/--dist) is not supported: a session runs one mesh, which its tests share in "
    "turn; drop -n (the suites take about a minute on the local mesh)"
)
_XDIST_OUTPUT = "egress_harness_refused"
_REFUSED = pytest.StashKey[str]()


def _xdist_controller(config: pytest.Config) -> bool:
    return getattr(config.option, "dist", "no") != "no" and not hasattr(config, "workerinput")


def activate(config: pytest.Config) -> None:
    """Make this a harness session (once): claim the artifacts folder (writable, with room, this
    run's alone: harness/artifacts.py) and turn SIGTERM (CI timeouts, `kill`) and SIGHUP (a closed
    terminal) into Ctrl-C's clean path. The plugin calls it when a collected test requests a
    harness fixture; the repository's conftest.py for its own sessions, whatever they request."""
    if active(config) or _only_listing(config):
        return
    if _xdist_controller(config):  # the repository's conftest.py, before any worker starts
        _usage(XDIST_REFUSAL)
    for name, option in pytest_options.OPTIONS.items():  # a bad environment or ini value: one line now
        (flag if option.flag else setting)(config, name)
    try:
        config.stash[ARTIFACTS] = _claim_artifacts(config)
    except BaseException:
        _leave_alone(config)  # no junit.xml into a folder that could not be claimed
        raise
    config.stash[ACTIVE] = True
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _as_interrupt)
    config.pluginmanager.register(SessionReports(config), "egress_harness_reports")
    from harness.versions import DEFAULT_ISTIO_VERSION

    add_suite_property(config, "backend", required(config, "backend"))
    add_suite_property(config, "istio_version", setting(config, "istio_version") or DEFAULT_ISTIO_VERSION)


def _leave_alone(config: pytest.Config) -> None:
    """Not a harness session: the junit.xml this plugin asked for is not written."""
    if not config.stash.get(_OUR_JUNIT, False):
        return
    del config.stash[_OUR_JUNIT]
    from _pytest.junitxml import xml_key

    xml = config.stash.get(xml_key, None)
    if xml is not None:
        del config.stash[xml_key]
        config.pluginmanager.unregister(xml)
    config.option.xmlpath = None


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # A test that needs Istio's binaries may start a build of minutes: `-m "not istio"` (make unit)
    # leaves it out without each test having to say so. The marker is registered in pytest_configure.
    for item in items:
        if "istio_binaries" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.istio)


@pytest.hookimpl(tryfirst=True)  # before an xdist worker sends its controller the collected ids
def pytest_collection_finish(session: pytest.Session) -> None:
    config = session.config
    if active(config):  # the repository's conftest.py activated it already
        return
    if not any(HARNESS_FIXTURES & set(getattr(item, "fixturenames", ())) for item in session.items):
        _leave_alone(config)
        return
    workeroutput = getattr(config, "workeroutput", None)
    if workeroutput is not None:
        # An xdist worker of a user's session (its controller collects nothing, so only a worker
        # can tell): it runs nothing and starts nothing; the controller says the one line.
        workeroutput[_XDIST_OUTPUT] = XDIST_REFUSAL
        config.hook.pytest_deselected(items=list(session.items))
        session.items.clear()
        _leave_alone(config)
        return
    activate(config)
    terminal = config.pluginmanager.get_plugin("terminalreporter")
    if terminal is not None and active(config):  # pytest printed its report header before collecting
        for line in header_lines(config):
            terminal.write_line(line)


@pytest.hookimpl(tryfirst=True)
def pytest_runtestloop(session: pytest.Session) -> None:
    # A session that collected nothing here (pytest-xdist's controller: its workers collect) is
    # not one of the harness's: its junit.xml stays where pytest would put it.
    if not active(session.config):
        _leave_alone(session.config)


@pytest.hookimpl(optionalhook=True)  # pytest-xdist's hook: absent without it
def pytest_testnodedown(node: Any, error: object) -> None:
    refused = getattr(node, "workeroutput", {}).get(_XDIST_OUTPUT)
    if refused:
        node.config.stash[_REFUSED] = refused


def _say_refused(session: pytest.Session) -> None:
    """The controller of a refused xdist session: the one line, and pytest's usage-error status."""
    refused = session.config.stash.get(_REFUSED, None)
    if refused is None:
        return
    session.exitstatus = pytest.ExitCode.USAGE_ERROR
    terminal = session.config.pluginmanager.get_plugin("terminalreporter")
    if terminal is not None:
        terminal.write_line(f"ERROR: egress-harness: {refused}", red=True)


def pytest_unconfigure(config: pytest.Config) -> None:
    fd = config.stash.get(_LOCK, None)
    if fd is not None:
        os.close(fd)


# ---------------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="session")
def artifacts_dir(pytestconfig: pytest.Config) -> Path:
    return pytestconfig.stash.get(ARTIFACTS, None) or Path(required(pytestconfig, "artifacts")).resolve()


@pytest.fixture(scope="session")
def istio_version(pytestconfig: pytest.Config) -> str:
    from harness.versions import DEFAULT_ISTIO_VERSION

    return setting(pytestconfig, "istio_version") or DEFAULT_ISTIO_VERSION


def _say(pytestconfig: pytest.Config):
    """A printer that reaches the terminal through pytest's output capture."""
    capture = pytestconfig.pluginmanager.getplugin("capturemanager")

    def say(line: str) -> None:
        with capture.global_and_fixture_disabled():
            print(f"[egress-harness] {line}", flush=True)

    return say


@pytest.fixture(scope="session")
def istio_binaries(istio_version: str, pytestconfig: pytest.Config) -> IstioBinaries:
    from harness.istio_binaries import ensure_istio

    # A first build takes minutes: its progress goes to the terminal, not into captured output.
    capture = pytestconfig.pluginmanager.getplugin("capturemanager")
    try:
        with capture.global_and_fixture_disabled():
            return ensure_istio(istio_version)
    except HarnessError as exc:
        _exit(str(exc))
        raise  # not reached


@pytest.fixture(scope="session")
def istioctl(istio_version: str, request: pytest.FixtureRequest) -> Path:
    """The istioctl of the session's Istio: the release's own for a released version (kind with a
    registry, a cluster: harness/istio_release.py), the one in EGRESS_HARNESS_ISTIO_BIN, else the
    one built with its binaries. istioctl alone: a cluster user brings no pilot-discovery or
    pilot-agent, so asking for the whole build (the istio_binaries fixture) would build it."""
    from harness.backends.tools import resolve_istioctl

    capture = request.config.pluginmanager.getplugin("capturemanager")
    try:
        with capture.global_and_fixture_disabled():  # a first build's progress reaches the terminal
            return resolve_istioctl(istio_version, fetch=True).fetched_path()
    except HarnessError as exc:
        _exit(str(exc))
        raise  # not reached


def _check_fixtures(dry_run: bool, request: pytest.FixtureRequest) -> None:
    """Every stage × mode rendered, and (but in a dry run) validated by the real istioctl, once."""
    from harness.manifests import fixture_set

    fixtures = fixture_set()
    fixtures.check()
    if not dry_run:
        fixtures.validate_all(request.getfixturevalue("istioctl"))


@pytest.fixture(scope="session")
def mesh(pytestconfig: pytest.Config, request: pytest.FixtureRequest, artifacts_dir: Path) -> Iterator[Any]:
    """The backend the suites talk to (harness/backend.py describes its interface)."""
    backend = required(pytestconfig, "backend")
    dry_run = bool(flag(pytestconfig, "dry_run"))
    try:
        if backend == "local":
            from harness.local.mesh import preflight

            preflight()  # no root, a missing command → one line, nothing created
        _check_fixtures(dry_run, request)  # a broken fixture stops the run before anything starts
        if not dry_run and pytest_spec.SPEC_KEY in pytestconfig.stash:
            pytest_spec.validate_manifests(pytestconfig, request.getfixturevalue("istioctl"))
    except HarnessError as exc:
        _exit(str(exc))
    if backend != "local":
        from harness.backends.remote import make_remote_backend

        # The backend's progress (one line per plan step, minutes in all) reaches the terminal
        # and CI's log, not pytest's captured output.
        capture = pytestconfig.pluginmanager.getplugin("capturemanager")
        try:
            with capture.global_and_fixture_disabled():
                remote = make_remote_backend(pytestconfig, artifacts_dir)
        except HarnessError as exc:
            _exit(str(exc))
        _envoy_property(pytestconfig, remote)
        try:
            yield remote
            _keep_after_failure(request.session, remote)
        finally:
            with capture.global_and_fixture_disabled():
                remote.stop()
        return
    from harness.local.mesh import LocalMesh

    binaries = request.getfixturevalue("istio_binaries")
    local = LocalMesh(binaries, artifacts_dir, say=_say(pytestconfig))
    try:
        local.start()
    except HarnessError as exc:
        local.stop()
        _exit(str(exc))
    except HarnessFault as exc:
        # Every test would error the same way: one line for the session instead.
        local.stop()
        pytest.exit(
            f"egress-harness: harness error while starting the local mesh (not a mesh failure): {exc}", returncode=3
        )
    except BaseException:
        local.stop()
        raise
    pytestconfig.stash[_MESH] = local
    _envoy_property(pytestconfig, local)
    try:
        yield local
        _keep_after_failure(request.session, local)
    finally:
        del pytestconfig.stash[_MESH]
        local.stop()


def _keep_after_failure(session: pytest.Session, backend: Any) -> None:
    """--egress-keep-mesh: after a failed test the session's mesh stays up, with the lines that reach
    it, until Ctrl-C, SIGTERM or SIGHUP; then it is torn down as always (Istio's framework has
    --istio.test.nocleanup; here the mesh is the session's processes, so keeping it is holding it)."""
    if not flag(session.config, "keep_mesh") or not session.testsfailed:
        return
    say = _say(session.config)
    say(f"{session.testsfailed} failed; --egress-keep-mesh keeps the {backend.name} mesh up:")
    for line in backend.look_inside():
        say(f"  {line}")
    say("Ctrl-C (or SIGTERM) tears it down")
    try:
        while True:  # a timed sleep: a signal delivered to another thread runs its handler here too
            time.sleep(0.2)
    except KeyboardInterrupt:
        say("tearing the kept mesh down")


def _envoy_property(config: pytest.Config, mesh: Any) -> None:
    """The Envoy the mesh runs, as its gateway's admin API reports it (every backend has one)."""
    from harness.pod_table import GATEWAY

    try:
        version = mesh.proxy_admin(GATEWAY).server_version()
    except Exception as exc:  # noqa: BLE001 - a property, never a reason to stop the session
        version = f"unknown ({type(exc).__name__})"
    add_suite_property(config, "envoy_version", version)


@pytest.fixture
def evidence(request: pytest.FixtureRequest, artifacts_dir: Path) -> Iterator[Evidence]:
    """Collects evidence for this test; written out only if the test fails."""
    ev = Evidence()
    request.node.stash[EVIDENCE_KEY] = ev
    yield ev
    if has_failed(request.node):
        ev.write(evidence_dir_for(artifacts_dir, request.node), request.node)


# The backends the Gateway API modes run on: the local mesh runs istiod's deployed gateways with
# its node agent, kind with its own controllers and kubelet (the CRDs installed before Istio). An
# existing cluster: not yet (its CRDs, channel and namespaces are the team's: issue 22's backend).
GATEWAY_API_BACKENDS = ("local", "kind")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """`mode`: the sidecar → gateway hop (istio-mutual, plaintext), and for a test marked
    `gateway_api` (its section has a Gateway API form) the same two hops in the Gateway API
    (gateway-api-istio-mutual, gateway-api-plaintext). The words appear in test ids."""
    if "mode" not in metafunc.fixturenames:
        return
    for marker in metafunc.definition.iter_markers("parametrize"):
        names = marker.args[0] if marker.args else marker.kwargs.get("argnames", "")
        if "mode" in ([n.strip() for n in names.split(",")] if isinstance(names, str) else list(names)):
            return  # the test gives its own modes
    modes = list(MODES)
    if metafunc.definition.get_closest_marker("gateway_api") and (
        required(metafunc.config, "backend") in GATEWAY_API_BACKENDS
    ):
        modes += GATEWAY_API_MODES
    metafunc.parametrize("mode", modes)


@pytest.fixture
def scenario(mesh: Any, evidence: Evidence, mode: str, request: pytest.FixtureRequest, artifacts_dir: Path):
    """A scenario in `mode`; afterwards its stages are deleted and, for a failed test, the
    mesh-wide state is collected into the evidence first."""
    sc = Scenario(mesh, evidence, mode)
    yield sc
    directory = evidence_dir_for(artifacts_dir, request.node)
    failed = has_failed(request.node)
    if failed:
        _collect_mesh(mesh, evidence, directory)
    try:
        sc.delete_all(wait=False)  # the next test's first apply or command waits for it
    except BaseException as exc:
        # The cleanup's own failure gets evidence too: the `evidence` fixture only sees the
        # test's setup and call, since the teardown's report comes after every finalizer.
        if not failed:
            _collect_mesh(mesh, evidence, directory)
        evidence.add_text("cleanup-error.txt", "".join(traceback.format_exception(exc)))
        evidence.write(directory, request.node)
        raise


@pytest.fixture
def spec_mesh(spec_applied: Any, evidence: Evidence, request: pytest.FixtureRequest, artifacts_dir: Path):
    """The mesh with the egress spec applied (harness/spec/pytest_spec.py); a failed expectation
    gets the mesh-wide evidence, as a suite test's scenario does."""
    yield spec_applied
    if has_failed(request.node):
        _collect_mesh(spec_applied, evidence, evidence_dir_for(artifacts_dir, request.node))


def _collect_mesh(mesh: Any, evidence: Evidence, directory: Path) -> None:
    try:
        mesh.collect(directory / "mesh")
    except Exception as exc:  # noqa: BLE001 - keep the test's own evidence
        evidence.add_text("mesh-collect-error.txt", repr(exc))


# ---------------------------------------------------------------------------------- reports


def has_failed(item: pytest.Item) -> bool:
    reports = item.stash.get(REPORT_KEY, {})
    return any(r.failed for r in reports.values())


def outcome_of(item: pytest.Item) -> str:
    reports = item.stash.get(REPORT_KEY, {})
    if any(getattr(r, "harness_error", False) for r in reports.values()):
        return HARNESS_ERROR
    if any(r.failed for r in reports.values()):
        return "failed"
    if any(r.skipped for r in reports.values()):
        return "skipped"
    return "passed"


def evidence_dir_for(artifacts: Path, item: pytest.Item) -> Path:
    safe = re.sub(r"[^A-Za-z0-9_.\-\[\]]+", "_", item.nodeid).strip("_")
    return artifacts / "evidence" / safe


def is_mesh_verdict(exc: BaseException | None) -> bool:
    """Assertions are verdicts on the mesh (or on the harness's own unit under test); anything
    else raised while a test runs is a fault of the harness."""
    return exc is None or isinstance(exc, (AssertionError, MeshFailure, pytest.skip.Exception, pytest.xfail.Exception))


def _where(item: pytest.Item, excinfo: pytest.ExceptionInfo) -> str:
    """The test's own line that led to the exception (else where it was raised), relative."""
    entries = [e for e in excinfo.traceback if Path(e.path) == Path(item.path)] or list(excinfo.traceback)
    if not entries:
        return item.nodeid
    entry = entries[-1]
    return f"{os.path.relpath(entry.path, item.config.rootpath)}:{entry.lineno + 1}"


def _one_line(item: pytest.Item, report: pytest.TestReport, excinfo: pytest.ExceptionInfo, kind: str) -> None:
    """The exception reads as its one line at the test's own line; its traceback goes into the
    test's evidence (<kind>.<when>.txt)."""
    exc = excinfo.value
    ev = item.stash.get(EVIDENCE_KEY, None)
    if ev is not None:
        ev.add_text(f"{kind}.{report.when}.txt", "".join(traceback.format_exception(exc)))
    report.longrepr = f"{_where(item, excinfo)}: {type(exc).__name__}: {exc}"


def _session_process_exited(item: pytest.Item, exc: BaseException) -> ProcessExited | None:
    if isinstance(exc, ProcessExited):
        return exc
    mesh = item.config.stash.get(_MESH, None)
    check = getattr(mesh, "exited_process", None)
    try:
        return check() if check is not None else None
    except Exception:  # noqa: BLE001 - asking must never hide the test's own failure
        return None


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Any:
    report = yield
    if report.failed and call.excinfo is not None:
        exc = call.excinfo.value
        if isinstance(exc, HopFailure):
            item.stash[HOP] = exc.hop
        exited = _session_process_exited(item, exc)
        if exited is not None:
            # Said once, here; every later test would fail the same way: the session stops.
            report.harness_error = True
            report.longrepr = f"{_where(item, call.excinfo)}: {type(exited).__name__}: {exited}"
            if exc is not exited:
                first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
                report.longrepr += f"\n  (the test's own {type(exc).__name__}, a consequence: {first[:300]})"
            item.config.stash[_STOPPED] = str(exited)
            item.session.shouldstop = (
                "egress-harness: a process the session holds exited (the HARNESS ERROR above); the session stops"
            )
        elif getattr(exc, "one_line", False):
            _one_line(item, report, call.excinfo, "failure")
        elif not is_mesh_verdict(exc):
            report.harness_error = True
            if isinstance(exc, HarnessFault):
                _one_line(item, report, call.excinfo, "harness-error")
            else:
                report.sections.append(
                    (HARNESS_ERROR, f"{type(exc).__name__} is a fault of the harness, not a failure of the mesh")
                )
    artifacts_dir = item.config.stash.get(ARTIFACTS, None)
    if report.failed and artifacts_dir is not None and _artifacts.is_full(artifacts_dir):
        # A verdict built on missing lines (an access log that could not be written) is no verdict.
        report.harness_error = True
        report.sections.append((HARNESS_ERROR, _artifacts.full_line(artifacts_dir)))
        item.session.shouldstop = f"egress-harness: {_artifacts.full_line(artifacts_dir)}"
    item.stash.setdefault(REPORT_KEY, {})[report.when] = report
    if report.when == "teardown":
        ev = item.stash.get(EVIDENCE_KEY, None)
        outcome = outcome_of(item)
        observations = getattr(ev, "observations", {})
        item.config.stash[_SUMMARY].add(item, outcome, observations, hop=item.stash.get(HOP, None))
        # junit.xml's properties of the test: junitxml reads the teardown report's.
        report.user_properties.extend(properties_of(item, outcome, observations))
        _count_once(item, outcome)
    return report


# What each summary.md outcome is called in the terminal's totals.
CATEGORY = {"passed": "passed", "failed": "failed", "skipped": "skipped", HARNESS_ERROR: "error"}


class _NotCounted(pytest.TestReport):
    """A report shown as usual but left out of the terminal's totals (pytest reads
    count_towards_summary, a read-only property, when it counts)."""

    @property
    def count_towards_summary(self) -> bool:
        return False


def _count_once(item: pytest.Item, outcome: str) -> None:
    """pytest counts reports, not tests: a test whose call passed and whose cleanup failed is
    "1 passed, 1 error" in the terminal and one row in summary.md. Every report of the item but
    one in the category of its outcome is shown as usual and left out of the totals."""
    reports = list(item.stash.get(REPORT_KEY, {}).values())
    wanted = CATEGORY.get(outcome)

    def category(report: pytest.TestReport) -> str:
        status = item.config.hook.pytest_report_teststatus(report=report, config=item.config)
        return status[0] if status else ""

    counted = [r for r in reports if category(r)]
    keep = next((r for r in counted if category(r) == wanted), None)
    if keep is None or len(counted) < 2:
        return
    for report in counted:
        if report is not keep and type(report) is pytest.TestReport:
            report.__class__ = _NotCounted


def pytest_report_teststatus(report: pytest.TestReport, config: pytest.Config) -> tuple[str, str, str] | None:
    if getattr(report, "harness_error", False):
        return "error", "E", "HARNESS ERROR"
    if report.failed and report.when != "call":
        # A mesh verdict in a fixture (a cleanup's convergence timed out) is a failure of the
        # mesh, as in summary.md; pytest would call any setup/teardown failure an error.
        return "failed", "F", "FAILED"
    return None


def pytest_deselected(items: list[pytest.Item]) -> None:
    if items:
        items[0].config.stash[_SUMMARY].deselected += len(items)


@pytest.hookimpl(tryfirst=True)  # before junitxml writes its file: the reserve makes room for both
def pytest_sessionfinish(session: pytest.Session) -> None:
    _say_refused(session)
    if not active(session.config):
        return
    writer = session.config.stash.get(_SUMMARY, None)
    artifacts = session.config.stash.get(ARTIFACTS, None)
    if artifacts is not None:
        _artifacts.release_reserve(artifacts)
    stopped = session.config.stash.get(_STOPPED, None)
    if stopped is not None:
        session.exitstatus = 3  # a harness error that ended the session, as one while the mesh starts
        if writer is not None:
            writer.stopped = stopped
    if writer is None or not writer.rows or artifacts is None:
        return
    try:
        writer.write(artifacts / "summary.md")
        write_json(artifacts / "summary.json", writer.as_json(session.config.stash.get(SUITE, {})))
    except OSError as exc:
        print(f"egress-harness: cannot write the summary into {artifacts}: {exc.strerror}")
        return
    step_summary(artifacts / "summary.md")
