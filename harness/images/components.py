"""The images kubeadm and the node need, built from harness/toolchain's programs, never pulled.

Named as `kubeadm config images list --kubernetes-version v1.34.4` names them (plus pause:3.10,
kind's containerd sandbox image), so kubeadm and containerd find them preloaded in the node image:
  - kube-apiserver, kube-controller-manager, kube-scheduler, etcd: the static binary on scratch
    (kubeadm's static pods run them by name: PATH is set in the image).
  - kube-proxy: on the kind rootfs, because it runs iptables and every shared library its xtables
    modules load (a missing libm.so.6 silently broke Service routing in the trial run).
  - coredns: the static binary as /coredns, the entrypoint of the official image.
  - pause: build/pause/linux/pause.c of the Kubernetes module, `gcc -Os -static` (as its Makefile).
  - kube-router: the NetworkPolicy enforcer (programs.py says why not kube-network-policies), on
    the kind rootfs for iptables and ipset. Its manifest is the node's /kind/manifests/default-cni.yaml,
    which kind applies at create.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING

from harness.errors import HarnessError
from harness.images.docker_build import build, content_key, say
from harness.toolchain import programs
from harness.toolchain.gobuild import ensure_program, go_binary, toolchain_dir

if TYPE_CHECKING:
    import docker

REGISTRY = "registry.k8s.io"
LOCAL = "egress-harness"
KUBE_ROUTER_IMAGE = f"{LOCAL}/kube-router:{programs.KUBE_ROUTER.version}"
_PATH = "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def _scratch(binary: str, dest: str, entrypoint: bool = False) -> str:
    lines = ["FROM scratch", f"COPY {binary} {dest}", _PATH]
    if entrypoint:
        lines.append(f'ENTRYPOINT ["{dest}"]')
    return "\n".join(lines) + "\n"


def ensure_pause() -> Path:
    """pause, compiled statically from the Kubernetes module's source, cached by its content."""
    proc = subprocess.run(
        [go_binary(), "mod", "download", "-json", f"k8s.io/kubernetes@{programs.KUBERNETES}"],
        capture_output=True,
        text=True,
        cwd="/",
    )
    try:
        src = Path(json.loads(proc.stdout)["Dir"]) / "build" / "pause" / "linux" / "pause.c"
    except (ValueError, KeyError):
        raise HarnessError(
            f"go mod download k8s.io/kubernetes@{programs.KUBERNETES} failed: {proc.stderr.strip()[-200:]}"
        ) from None
    out = toolchain_dir() / f"pause-{content_key(src, programs.PAUSE_TAGS[0])}" / "pause"
    if out.exists():
        return out
    if shutil.which("gcc") is None:
        raise HarnessError("gcc is needed to build the pause image: apt-get install gcc libc6-dev")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    cmd = [
        "gcc",
        "-Os",
        "-Wall",
        "-Werror",
        "-static",
        f"-DVERSION=v{programs.PAUSE_TAGS[0]}",
        "-o",
        str(tmp),
        str(src),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise HarnessError(
            f"building pause failed: {(proc.stderr or proc.stdout).strip()[-200:]} "
            f"(is libc6-dev installed? apt-get install libc6-dev)"
        )
    subprocess.run(["strip", str(tmp)], capture_output=True)
    tmp.rename(out)
    say(f"built pause {programs.PAUSE_TAGS[0]}: {out}")
    return out


def ensure_component_images(client: docker.DockerClient, rootfs: str) -> dict[str, str]:
    """`registry reference -> local tag` for every image the node preloads."""
    k8s = ensure_program(programs.KUBERNETES_PROGRAM)
    out: dict[str, str] = {}

    def one(ref: str, dockerfile: str, files: dict[str, Path], what: str) -> None:
        name = ref.rsplit("/", 1)[1].split(":")[0]
        local = f"{LOCAL}/{name}:{content_key(dockerfile, *files.values())}"
        out[ref] = build(client, local, dockerfile, files, what=what)

    for comp in ("kube-apiserver", "kube-controller-manager", "kube-scheduler"):
        one(
            f"{REGISTRY}/{comp}:{programs.KUBERNETES}",
            _scratch(comp, f"/usr/local/bin/{comp}"),
            {comp: k8s / comp},
            comp,
        )
    one(
        f"{REGISTRY}/kube-proxy:{programs.KUBERNETES}",
        f"FROM {rootfs}\nCOPY kube-proxy /usr/local/bin/kube-proxy\n",
        {"kube-proxy": k8s / "kube-proxy"},
        "kube-proxy",
    )
    one(
        f"{REGISTRY}/etcd:{programs.ETCD_TAG}",
        _scratch("etcd", "/usr/local/bin/etcd"),
        {"etcd": ensure_program(programs.ETCD) / "etcd"},
        "etcd",
    )
    one(
        f"{REGISTRY}/coredns/coredns:{programs.COREDNS_TAG}",
        _scratch("coredns", "/coredns", entrypoint=True),
        {"coredns": ensure_program(programs.COREDNS) / "coredns"},
        "coredns",
    )
    pause = ensure_pause()
    for tag in programs.PAUSE_TAGS:
        one(f"{REGISTRY}/pause:{tag}", _scratch("pause", "/pause", entrypoint=True), {"pause": pause}, "pause")
    kube_router = ensure_program(programs.KUBE_ROUTER) / "kube-router"
    dockerfile = (
        f'FROM {rootfs}\nCOPY kube-router /usr/local/bin/kube-router\nENTRYPOINT ["/usr/local/bin/kube-router"]\n'
    )
    out[KUBE_ROUTER_IMAGE] = build(
        client,
        f"{LOCAL}/kube-router-build:{content_key(dockerfile, kube_router)}",
        dockerfile,
        {"kube-router": kube_router},
        what="kube-router",
    )
    return out


def network_policy_manifest() -> str:
    """kube-router's firewall controller only (its daemonset/kube-router-firewall-daemonset.yaml and the
    RBAC of kubeadm-kuberouter.yaml, v2.1.0), in-cluster credentials, the preloaded image."""
    return _KUBE_ROUTER_MANIFEST.format(image=KUBE_ROUTER_IMAGE)


_KUBE_ROUTER_MANIFEST = """\
apiVersion: v1
kind: ServiceAccount
metadata:
  name: kube-router
  namespace: kube-system
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata:
  name: kube-router
rules:
- apiGroups: [""]
  resources: [namespaces, pods, services, nodes, endpoints]
  verbs: [list, get, watch]
- apiGroups: [networking.k8s.io]
  resources: [networkpolicies]
  verbs: [list, get, watch]
- apiGroups: [coordination.k8s.io]
  resources: [leases]
  verbs: [get, create, update]
- apiGroups: [""]
  resources: [services/status]
  verbs: [update]
- apiGroups: [discovery.k8s.io]
  resources: [endpointslices]
  verbs: [get, list, watch]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata:
  name: kube-router
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: ClusterRole
  name: kube-router
subjects:
- kind: ServiceAccount
  name: kube-router
  namespace: kube-system
---
apiVersion: apps/v1
kind: DaemonSet
metadata:
  name: kube-router
  namespace: kube-system
  labels:
    k8s-app: kube-router
spec:
  selector:
    matchLabels:
      k8s-app: kube-router
  template:
    metadata:
      labels:
        k8s-app: kube-router
    spec:
      serviceAccountName: kube-router
      priorityClassName: system-node-critical
      hostNetwork: true
      hostPID: true
      tolerations:
      - operator: Exists
      containers:
      - name: kube-router
        image: {image}
        imagePullPolicy: Never
        args: ["--run-router=false", "--run-firewall=true", "--run-service-proxy=false", "--health-port=20244"]
        securityContext:
          privileged: true
        env:
        - name: NODE_NAME
          valueFrom:
            fieldRef:
              fieldPath: spec.nodeName
        readinessProbe:
          httpGet:
            path: /healthz
            port: 20244
          periodSeconds: 3
        volumeMounts:
        - name: lib-modules
          mountPath: /lib/modules
          readOnly: true
        - name: xtables-lock
          mountPath: /run/xtables.lock
      volumes:
      - name: lib-modules
        hostPath:
          path: /lib/modules
      - name: xtables-lock
        hostPath:
          path: /run/xtables.lock
          type: FileOrCreate
"""
