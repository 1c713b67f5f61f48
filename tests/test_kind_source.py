"""The IMAGES=source pieces of the kind backend that run without a cluster.

- the harness's Docker engine (harness/images/engine.py): a real dockerd in its own network
  namespace, where `ip route get` finds no route off the machine (nothing is sent), and which
  leaves no process, namespace or mount after stop();
- the runc wrapper really strips CAP_SYS_RESOURCE from a bundle and from an exec process spec
  (it is run as dockerd runs it, against a stand-in "runc" that records what it was given);
- the pure pieces: CapBnd parsing, the Corefile without `forward`, the toolchain's wrapper go.mod.
The full chain (images, cluster, Istio, suites) is `make e2e BACKEND=kind IMAGES=source`.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from harness.backends import upstream_image
from harness.backends.kind import without_forward
from harness.images import engine
from harness.toolchain import programs
from harness.toolchain.gobuild import go_mod_text, tools_go_text
from tests.helpers.expect import eventually

WRAPPER = Path(engine.__file__).with_name("runc_wrapper.py")


def test_capbnd_parsing():
    assert engine.lacks_cap_sys_resource("CapBnd:\t000001fffeffffff\n")
    assert not engine.lacks_cap_sys_resource("CapBnd:\t000001ffffffffff\n")


def _spec(caps: list[str]) -> dict:
    return {"process": {"capabilities": {k: list(caps) for k in ("bounding", "effective", "permitted")}}}


def test_runc_wrapper_strips_sys_resource(tmp_path):
    recorder = tmp_path / "runc"
    recorder.write_text(f"#!{sys.executable}\nimport sys, json\nprint(json.dumps(sys.argv[1:]))\n")
    recorder.chmod(0o755)
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    (bundle / "config.json").write_text(json.dumps(_spec(["CAP_NET_ADMIN", "CAP_SYS_RESOURCE"])))
    env = dict(os.environ, EH_REAL_RUNC=str(recorder))
    out = subprocess.run(
        [sys.executable, str(WRAPPER), "--root", "/run/x", "create", "--bundle", str(bundle), "id1"],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    assert json.loads(out.stdout) == ["--root", "/run/x", "create", "--bundle", str(bundle), "id1"]
    caps = json.loads((bundle / "config.json").read_text())["process"]["capabilities"]
    assert all(v == ["CAP_NET_ADMIN"] for v in caps.values()), caps
    process = tmp_path / "process.json"
    process.write_text(json.dumps(_spec(["CAP_SYS_RESOURCE", "CAP_CHOWN"])["process"]))
    subprocess.run(
        [sys.executable, str(WRAPPER), "exec", "--process", str(process), "id1"],
        env=env,
        check=True,
        capture_output=True,
    )
    assert all(v == ["CAP_CHOWN"] for v in json.loads(process.read_text())["capabilities"].values())


def test_corefile_without_forward():
    core = ".:53 {\n    errors\n    forward . /etc/resolv.conf {\n       max_concurrent 1000\n    }\n    cache 30\n}\n"
    assert without_forward(core) == ".:53 {\n    errors\n    cache 30\n}\n"
    assert "forward" not in without_forward(".:53 {\n    forward . 8.8.8.8\n}\n")


def test_wrapper_module_replaces_every_staging_module():
    text = go_mod_text(programs.KUBERNETES_PROGRAM)
    assert text.count("=> k8s.io/") == len(programs.K8S_STAGING) == 31
    assert "k8s.io/kubernetes v1.34.4" in text
    assert '_ "k8s.io/kubernetes/cmd/kubeadm"' in tools_go_text(programs.KUBERNETES_PROGRAM)


@pytest.fixture
def own_engine():
    if os.geteuid() != 0:
        pytest.skip("the harness's engine needs root (make test runs as root in CI)")
    # dockerd: make test installs docker.io (these tests are marked `packages`): missing is a failure.
    assert shutil.which("dockerd"), "dockerd is not installed (apt-get install docker.io)"
    if engine.running():
        pytest.skip("the harness's engine is in use by a kind run")
    engine.start()
    try:
        yield
    finally:
        engine.stop()


@pytest.mark.packages
def test_engine_has_no_route_off_the_machine_and_leaves_nothing(own_engine):
    assert engine.isolation_report() == ""
    routes = subprocess.run(engine.nsenter(["ip", "route", "show"]), capture_output=True, text=True).stdout
    assert "default" not in routes
    links = subprocess.run(engine.nsenter(["ip", "-o", "link", "show"]), capture_output=True, text=True).stdout
    assert not [ln for ln in links.splitlines() if ": lo:" not in ln and "docker0" not in ln], links
    pid = int((engine.RUN_DIR / "dockerd.pid").read_text())
    engine.stop()
    assert not Path(f"/proc/{pid}").exists()
    assert not engine.NETNS_PATH.exists() and not engine.RUN_DIR.exists()
    assert not [ln for ln in Path("/proc/self/mounts").read_text().splitlines() if str(engine.RUN_DIR) in ln]


_OWNER = """
import os, subprocess, sys, time
from harness.images import engine, with_engine
engine.start()
proc, fd = with_engine.start_watchdog(engine.engine_pid())
child = subprocess.Popen(["sleep", "600"])
os.write(fd, f"child {child.pid}\\n".encode())
print(child.pid, engine.engine_pid(), flush=True)
time.sleep(600)
"""


def _running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")


@pytest.mark.packages
def test_a_sigkilled_run_leaves_no_engine_and_no_suites(tmp_path):
    """with_engine's watchdog (run() starts it the same way): after SIGKILL of its owner, the
    suites' process is ended and the engine stopped, its namespace deleted."""
    if os.geteuid() != 0:
        pytest.skip("the harness's engine needs root (make test runs as root in CI)")
    # dockerd: make test installs docker.io (these tests are marked `packages`): missing is a failure.
    assert shutil.which("dockerd"), "dockerd is not installed (apt-get install docker.io)"
    if engine.running():
        pytest.skip("the harness's engine is in use by a kind run")
    script = tmp_path / "owner.py"
    script.write_text(_OWNER)
    repo = Path(__file__).resolve().parents[1]
    owner = subprocess.Popen(
        [sys.executable, str(script)], cwd=repo, env=dict(os.environ, PYTHONPATH=str(repo)), stdout=subprocess.PIPE
    )
    try:
        assert owner.stdout is not None
        child, dockerd = (int(x) for x in owner.stdout.readline().split())
        assert _running(child) and _running(dockerd)
    finally:
        owner.kill()
        owner.wait()
    eventually(
        "the watchdog to end the suites' process and stop the engine",
        lambda: [
            what
            for what, left in (
                ("the suites' process", _running(child)),
                ("dockerd", _running(dockerd)),
                (f"netns {engine.NETNS}", engine.NETNS_PATH.exists()),
            )
            if left
        ],
        ok=lambda left: not left,
        timeout=90,
        interval=0.5,
    )


def test_the_source_plan_names_the_engine_images_and_istio_settings():
    from harness.backends import kind
    from harness.images.kind_images import STEPS

    text = kind.kind_plan(
        cluster_name="egress-harness", keep_cluster=False, istio_version="1.31", images="source"
    ).render()
    assert "ip netns add eh-engine" in text and "ip route get 8.8.8.8" in text
    assert all(f"images: {title}" in text for name, title in STEPS.items() if name != "programs")
    assert "--image=egress-harness/kind-node:v1.34.4-<key>" in text
    sleep = upstream_image.sleep_tag()
    load = f"load docker-image --name egress-harness {sleep} egress-harness/pilot:1.31-<key> egress-harness/proxyv2:1.31-<key>"
    assert load in text  # one kind load: one docker save, one import into the node
    assert "PILOT_ENABLE_METADATA_EXCHANGE" in text and "failCgroupV1: false" in text
    assert "ip netns delete eh-engine" in text
    registry = kind.kind_plan(cluster_name="egress-harness", keep_cluster=False, istio_version="1.31").render()
    assert "eh-engine" not in registry and "kindest/node" in registry


def test_pod_streams_module_is_at_the_pinned_kubernetes():
    """harness/local/pod_streams/go.mod (what `make lint` vets and the build uses as it is) requires
    the kubelet and apimachinery of the pinned Kubernetes' staging version."""
    mod = dict(programs.POD_STREAMS.module_files)["go.mod"]
    for module in ("k8s.io/kubelet", "k8s.io/apimachinery"):
        assert f"\t{module} {programs.KUBERNETES_STAGING}\n" in mod, (module, mod)
    assert "k8s.io/kubelet " + programs.KUBERNETES_STAGING in dict(programs.POD_STREAMS.module_files)["go.sum"]


def test_kubectl_is_stamped_with_its_version():
    """`kubectl version --client` reads these variables: without them it says v0.0.0-master, and
    the harness's version-skew check (tools.kubectl_fits) would refuse the kubectl it built."""
    flags = " ".join(programs.KUBECTL.ldflags)
    for stamp in (
        "-X k8s.io/client-go/pkg/version.gitVersion=v1.37.0",
        "-X k8s.io/component-base/version.gitVersion=v1.37.0",
        "-X k8s.io/component-base/version.gitMajor=1",
        "-X k8s.io/component-base/version.gitMinor=37",
    ):
        assert stamp in flags, (stamp, flags)
