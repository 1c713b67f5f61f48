"""Running the local mesh without root, in an unprivileged user namespace (harness.rootless)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path

import pytest

from harness import gateway_api
from harness.cache import cache_root
from harness.rootless import PROXY_UID, subordinate_range
from harness.wait import poll
from tests.helpers.expect import eventually

REPO = Path(__file__).resolve().parents[1]
NOBODY = 65534


def test_subordinate_range_parsing(tmp_path):
    f = tmp_path / "subuid"
    f.write_text("alice:100000:65536\n# comment\nbob:x:1\n1000:300000:2000\n")
    assert subordinate_range(f, {"alice"}) == (100000, 65536)
    assert subordinate_range(f, {"carol", "1000"}) == (300000, 2000)
    assert subordinate_range(f, {"bob"}) is None
    assert subordinate_range(tmp_path / "missing", {"alice"}) is None


def _as_nobody(argv: list[str], **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", *argv],
        capture_output=True,
        text=True,
        **kwargs,
    )


def _skip_unless_possible() -> str:
    if os.geteuid() != 0:
        pytest.skip("needs root to play an unprivileged user (make test runs as root in CI)")
    for tool in ("unshare", "newuidmap", "newgidmap", "setpriv"):
        # make test installs these (harness.system_packages): missing is a failure, not a skip.
        assert shutil.which(tool), f"{tool} is not installed (apt-get install uidmap util-linux)"
    # The venv's interpreter may live under a private home; any Python of the same minor can use
    # the venv's packages.
    python = f"/usr/bin/python{sys.version_info.major}.{sys.version_info.minor}"
    if not os.access(python, os.X_OK):
        pytest.skip(f"{python} is not installed")
    probe = _as_nobody(["test", "-r", str(REPO / "harness/rootless.py")])
    if probe.returncode != 0:
        pytest.skip(f"{REPO} is not readable by an unprivileged user")
    return python


@pytest.mark.packages  # newuidmap (uidmap): make test installs it
def test_without_subordinate_ids_one_line_names_the_fix():
    python = _skip_unless_possible()
    env = dict(os.environ, PYTHONPATH=f"{REPO}:{sysconfig.get_paths()['purelib']}")
    proc = _as_nobody(["unshare", "--mount", "--", python, "-m", "harness.rootless", "true"], env=env, cwd=REPO)
    if proc.returncode != 0 and "unshare" in proc.stderr and "Operation not permitted" in proc.stderr:
        proc = _as_nobody([python, "-m", "harness.rootless", "true"], env=env, cwd=REPO)
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 2, proc.stderr
    assert len(lines) == 1 and "subordinate ids" in lines[0] and "sudo make e2e" in lines[0], proc.stderr


@pytest.fixture
def shared_tmp():
    """A temporary folder an unprivileged user can reach (pytest's tmp_path sits under 0700)."""
    path = Path(tempfile.mkdtemp(prefix="egress-harness-rootless-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def _link_or_copy(src: str, dst: str) -> None:
    """A hard link (no copy), or a copy where /tmp is another file system (a tmpfs)."""
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def _unprivileged_cache(tmp_path: Path) -> Path:
    """A cache the unprivileged user can use: hard links (no copy) of Istio 1.31, the Gateway API
    CRDs and the local mesh's toolchain builds (etcd, kube-apiserver, pod-streams), in directories it owns (the toolchain's locks and the etcd
    seed are written there)."""
    from harness.toolchain.gobuild import program_dir
    from harness.toolchain.programs import LOCAL_MESH

    cache = tmp_path / "cache"
    src = cache_root() / "istio-1.31"
    assert (src / "bin" / "pilot-discovery").exists(), "make test builds Istio 1.31 first"
    shutil.copytree(src, cache / "istio-1.31", copy_function=_link_or_copy)
    crds = gateway_api.crd_dir()
    assert gateway_api.crd_file().exists(), "make test downloads the Gateway API CRDs first (make istio)"
    shutil.copytree(crds, cache / crds.relative_to(cache_root()), copy_function=_link_or_copy)
    for prog in LOCAL_MESH:
        built = program_dir(prog)
        assert (built / "done.json").exists(), "make test builds the local mesh's toolchain first (make kube-toolchain)"
        shutil.copytree(built, cache / "toolchain" / built.name, copy_function=_link_or_copy)
    for d in (cache, cache / "toolchain"):
        os.chown(d, NOBODY, NOBODY)
    return cache


def _rootless_pytest(tmp_path: Path, python: str, pytest_args: str, extra_env: str = "") -> tuple[list[str], Path]:
    """The command line that runs `pytest pytest_args` as nobody through harness.rootless, with
    Istio hard-linked into a cache nobody can read and subordinate ids bind-mounted over
    /etc/subuid and /etc/subgid in a private mount namespace (the host's files never change)."""
    cache = _unprivileged_cache(tmp_path)
    home, artifacts = tmp_path / "home", tmp_path / "artifacts"
    for d in (home, artifacts):
        d.mkdir()
        os.chown(d, NOBODY, NOBODY)
    ids = tmp_path / "subids"
    ids.write_text(f"{NOBODY}:200000:65536\n")
    site = sysconfig.get_paths()["purelib"]
    inner = (
        f"mount --bind {ids} /etc/subuid && mount --bind {ids} /etc/subgid && "
        f"exec setpriv --reuid={NOBODY} --regid={NOBODY} --clear-groups "
        f"env HOME={home} EGRESS_HARNESS_CACHE={cache} PYTHONPATH={REPO}:{site} {extra_env} "
        f"{python} -m harness.rootless {python} -m pytest -p no:cacheprovider -q {pytest_args} "
        f"--egress-artifacts {artifacts}"
    )
    return ["unshare", "--mount", "--propagation", "private", "sh", "-c", inner], artifacts


# A whole local mesh under pytest: the toolchain and Istio builds of `make test` come first.
@pytest.mark.mesh
@pytest.mark.slow
def test_the_seed_first_scenario_runs_without_root(shared_tmp):
    """An unprivileged user with subordinate ids runs the mesh: istio-proxy as uid 1337, the real
    istio-iptables, namespaces and all. /etc/subuid is only replaced inside a private mount
    namespace; nothing on the host changes."""
    python = _skip_unless_possible()
    argv, artifacts = _rootless_pytest(
        shared_tmp, python, "tests/test_local_mesh.py::test_seed_first_scenario_plaintext"
    )
    proc = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=120)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    assert "1 passed" in out
    # Inner uid 1337 is subordinate id 200000 + 1336 outside: the proxy's log proves who ran it.
    proxy_log = artifacts / "mesh-logs" / "default.sleep.istio-proxy.log"
    assert proxy_log.stat().st_uid == 200000 + PROXY_UID - 1
    assert (artifacts / "mesh-logs" / "istiod.log").stat().st_uid == NOBODY


def _descendants(root: int) -> dict[int, str]:
    """Every process below `root`, by pid, with its command line (seen from the host)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                ppid = int(Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry))
    out: dict[int, str] = {}
    todo = [root]
    while todo:
        for child in children.get(todo.pop(), []):
            try:
                out[child] = Path(f"/proc/{child}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            todo.append(child)
    return out


# A whole local mesh under pytest: the toolchain and Istio builds of `make test` come first.
@pytest.mark.mesh
@pytest.mark.slow
def test_sigkill_of_a_rootless_run_leaves_nothing(shared_tmp):
    """SIGKILL the rootless run's pytest and its watchdog while the mesh is up: every process of
    the run (istiod, the stand-in, pilot-agent and Envoy) goes with its PID namespace, and no key
    or state is left on the host: they lived on the run's private /run."""
    python = _skip_unless_possible()
    signals = shared_tmp / "signals"
    signals.mkdir()
    os.chown(signals, NOBODY, NOBODY)
    ready, hold = signals / "ready", signals / "hold"
    os.mkfifo(hold, 0o666)
    before_tmp = set(os.listdir("/tmp"))
    argv, _ = _rootless_pytest(shared_tmp, python, "tests/helpers/hold_mesh.py", f"EH_READY={ready} EH_HOLD={hold}")
    proc = subprocess.Popen(argv, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:

        def up() -> bool:
            if proc.poll() is not None:
                raise AssertionError(f"the rootless run ended (exit {proc.returncode}): {proc.stdout.read()[-3000:]}")
            return ready.exists()

        poll("the rootless mesh to be up", up, timeout=90, interval=0.1)
        run = _descendants(proc.pid)
        assert any("pilot-discovery" in c for c in run.values()) and any("envoy" in c for c in run.values()), run
        for pid, cmdline in run.items():
            if (" -m pytest " in cmdline and "harness.rootless" not in cmdline) or "reaper --watch" in cmdline:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:  # pytest went first: the kernel ended its namespace's processes
                    pass
        proc.wait(30)
        eventually(
            "every process of the killed run to be gone",
            lambda: [p for p in run if Path(f"/proc/{p}").exists() and _state(p) != "Z"],
            ok=lambda left: not left,
            timeout=20,
            describe=lambda left: str({p: run[p] for p in left}),
        )
    finally:
        if proc.poll() is None:
            proc.kill()
    run_id = ready.read_text()
    new = {n for n in set(os.listdir("/tmp")) - before_tmp if run_id in n}
    assert run_id and not new, f"the run left {new} in /tmp"


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "gone"
