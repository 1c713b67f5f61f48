"""The pinned programs behind the kind images, and how each is built (see gobuild.py).

Versions are those kubeadm, kind and containerd expect for the pinned Kubernetes (KUBERNETES):
  - Kubernetes v1.34.4: kubeadm/kubelet/kubectl and the control-plane components, from
    k8s.io/kubernetes with its 31 staging modules replaced by their published v0.34.4. Version
    fields stamped as Kubernetes' own build does (hack/lib/version.sh): kubeadm derives the image
    tags it asks for from gitVersion, and kind reads the node's version from kubeadm.
  - etcd v3.6.5 and CoreDNS: what `kubeadm config images list` names for v1.34.4 (etcd 3.6.5-0,
    coredns v1.12.1). The module proxy serves CoreDNS only from v1.14.3, so v1.14.5 is built with
    the plugins kubeadm's Corefile uses (plus `hosts` and `log`, which the harness adds) and tagged
    as the version kubeadm asks for; its Corefile syntax is unchanged for those plugins.
  - containerd v2.4.2 and crictl v1.34.0 for the node: Debian's containerd 1.6 lacks `ctr info`
    and `ctr import --label`, which kind's tooling uses (kind-from-source.md).
  - kube-router v2.1.0, its firewall (NetworkPolicy) controller only: kindnetd is not on the module
    proxy, and the seed's §4 needs policies enforced. kube-network-policies (what kindnet embeds)
    builds, but it enforces through nftables' `queue` statement, and kernels without
    CONFIG_NFT_QUEUE (ours: `nft add rule … queue` answers "No such file or directory") cannot run
    it; kube-router enforces with iptables and ipset, which every kernel kind runs on has.
  - kind v0.33.0: harness.backends.tools.KIND_VERSION.
"""

from __future__ import annotations

from pathlib import Path

from harness.toolchain.gobuild import GoProgram

KUBERNETES = "v1.34.4"
KUBERNETES_STAGING = "v0.34.4"
# The `=> ./staging/src/k8s.io/...` lines of k8s.io/kubernetes v1.34.4's go.mod.
K8S_STAGING = (
    "api",
    "apiextensions-apiserver",
    "apimachinery",
    "apiserver",
    "cli-runtime",
    "client-go",
    "cloud-provider",
    "cluster-bootstrap",
    "code-generator",
    "component-base",
    "component-helpers",
    "controller-manager",
    "cri-api",
    "cri-client",
    "csi-translation-lib",
    "dynamic-resource-allocation",
    "endpointslice",
    "externaljwt",
    "kms",
    "kube-aggregator",
    "kube-controller-manager",
    "kube-proxy",
    "kube-scheduler",
    "kubectl",
    "kubelet",
    "metrics",
    "mount-utils",
    "pod-security-admission",
    "sample-apiserver",
    "sample-cli-plugin",
    "sample-controller",
)
K8S_COMMANDS = (
    "kubeadm",
    "kubelet",
    "kubectl",
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "kube-proxy",
)
# `kubeadm config images list --kubernetes-version v1.34.4`, and kind's containerd sandbox image.
ETCD_TAG = "3.6.5-0"
COREDNS_TAG = "v1.12.1"
PAUSE_TAGS = ("3.10.1", "3.10")


def _k8s_ldflags(version: str) -> tuple[str, ...]:
    major, minor = version.lstrip("v").split(".")[:2]
    flags = ["-s", "-w"]
    for pkg in ("k8s.io/component-base/version", "k8s.io/client-go/pkg/version"):
        flags += [
            f"-X {pkg}.gitVersion={version}",
            f"-X {pkg}.gitMajor={major}",
            f"-X {pkg}.gitMinor={minor}",
            f"-X {pkg}.gitTreeState=clean",
            f"-X {pkg}.buildDate=1970-01-01T00:00:00Z",
        ]
    return tuple(flags)


KUBERNETES_PROGRAM = GoProgram(
    name="kubernetes",
    version=KUBERNETES,
    requires=(("k8s.io/kubernetes", KUBERNETES),),
    replaces=tuple((f"k8s.io/{m}", f"k8s.io/{m}", KUBERNETES_STAGING) for m in K8S_STAGING),
    packages=tuple(f"k8s.io/kubernetes/cmd/{c}" for c in K8S_COMMANDS),
    ldflags=_k8s_ldflags(KUBERNETES),
    outputs=K8S_COMMANDS,
)

ETCD = GoProgram(
    name="etcd",
    version="v3.6.5",
    requires=(("go.etcd.io/etcd/server/v3", "v3.6.5"),),
    replaces=tuple(
        (m, m, "v3.6.5")
        for m in (
            "go.etcd.io/etcd/api/v3",
            "go.etcd.io/etcd/client/pkg/v3",
            "go.etcd.io/etcd/client/v3",
            "go.etcd.io/etcd/pkg/v3",
        )
    ),
    packages=("go.etcd.io/etcd/server/v3",),
    renames=(("server", "etcd"),),
    outputs=("etcd",),
)

# The local mesh's kubelet streaming endpoint (harness/local/pod_streams/, a Go module of its own
# that `make lint` vets), on the kubelet's own port-forward code at the pinned Kubernetes' staging
# version.
_POD_STREAMS_DIR = Path(__file__).resolve().parents[1] / "local" / "pod_streams"
POD_STREAMS = GoProgram(
    name="pod-streams",
    version=KUBERNETES_STAGING,
    requires=(),  # go.mod's, checked against KUBERNETES_STAGING by tests/test_kind_source.py
    packages=(".",),
    module_files=tuple((n, (_POD_STREAMS_DIR / n).read_text()) for n in ("go.mod", "go.sum", "main.go")),
    binary="pod-streams",
    outputs=("pod-streams",),
)

_COREDNS_PLUGINS = (
    "errors",
    "health",
    "ready",
    "kubernetes",
    "metrics",
    "forward",
    "cache",
    "loop",
    "reload",
    "loadbalance",
    "hosts",
    "log",
)
COREDNS = GoProgram(
    name="coredns",
    version="v1.14.5",
    requires=(("github.com/coredns/coredns", "v1.14.5"),),
    packages=(".",),
    binary="coredns",
    outputs=("coredns",),
    main_go="// CoreDNS with the plugins kubeadm's Corefile uses (see programs.py).\npackage main\n\nimport (\n"
    + "".join(f'\t_ "github.com/coredns/coredns/plugin/{p}"\n' for p in _COREDNS_PLUGINS)
    + '\t"github.com/coredns/coredns/coremain"\n)\n\nfunc main() { coremain.Run() }\n',
)

CONTAINERD = GoProgram(
    name="containerd",
    version="v2.4.2",
    requires=(("github.com/containerd/containerd/v2", "v2.4.2"),),
    packages=tuple(
        f"github.com/containerd/containerd/v2/cmd/{c}" for c in ("containerd", "ctr", "containerd-shim-runc-v2")
    ),
    tags=("no_aufs", "no_zfs", "no_btrfs", "no_devmapper"),
    ldflags=("-s", "-w", "-X github.com/containerd/containerd/v2/version.Version=v2.4.2"),
    outputs=("containerd", "ctr", "containerd-shim-runc-v2"),
)

CRICTL = GoProgram(
    name="crictl",
    version="v1.34.0",
    requires=(("sigs.k8s.io/cri-tools", "v1.34.0"),),
    packages=("sigs.k8s.io/cri-tools/cmd/crictl",),
    ldflags=("-s", "-w", "-X sigs.k8s.io/cri-tools/pkg/version.Version=v1.34.0"),
    outputs=("crictl",),
)

KUBE_ROUTER = GoProgram(
    name="kube-router",
    version="v2.1.0",
    requires=(("github.com/cloudnativelabs/kube-router/v2", "v2.1.0"),),
    packages=("github.com/cloudnativelabs/kube-router/v2/cmd/kube-router",),
    outputs=("kube-router",),
    ldflags=("-s", "-w", "-X github.com/cloudnativelabs/kube-router/v2/pkg/version.Version=v2.1.0"),
)

KIND = GoProgram(
    name="kind",
    version="v0.33.0",
    requires=(("sigs.k8s.io/kind", "v0.33.0"),),
    packages=("sigs.k8s.io/kind",),
    outputs=("kind",),
)

# kubectl for a kind or existing cluster (IMAGES=registry, BACKEND=cluster), of the default node
# image's Kubernetes (harness/backends/tools.py): k8s.io/kubernetes/cmd/kubectl's main package
# around the staging module k8s.io/kubectl, version-stamped as Kubernetes' build does.
KUBECTL_VERSION = "v1.37.0"
KUBECTL_STAGING = "v0.37.0"
_KUBECTL_MAJOR, _KUBECTL_MINOR = KUBECTL_VERSION.lstrip("v").split(".")[:2]
KUBECTL = GoProgram(
    name="kubectl",
    version=KUBECTL_VERSION,
    requires=(("k8s.io/kubectl", KUBECTL_STAGING), ("k8s.io/component-base", KUBECTL_STAGING)),
    packages=(".",),
    main_go="""\
// kubectl, as k8s.io/kubernetes/cmd/kubectl/kubectl.go builds it, from the staging module.
package main

import (
\t"k8s.io/component-base/cli"
\t"k8s.io/kubectl/pkg/cmd"
\t"k8s.io/kubectl/pkg/cmd/util"
)

func main() {
\tcommand := cmd.NewDefaultKubectlCommand()
\tif err := cli.RunNoErrOutput(command); err != nil {
\t\tutil.CheckErr(err)
\t}
}
""",
    binary="kubectl",
    outputs=("kubectl",),
    ldflags=(
        "-s",
        "-w",
        *(
            f"-X k8s.io/{pkg}.{field}"
            for pkg in ("client-go/pkg/version", "component-base/version")
            for field in (
                f"gitVersion={KUBECTL_VERSION}",
                "gitTreeState=clean",
                f"gitMajor={_KUBECTL_MAJOR}",
                f"gitMinor={_KUBECTL_MINOR}",
            )
        ),
    ),
)

# fortio, the load generator of the egress benchmark (harness/toolchain/fortio.py says why v1.68.2).
FORTIO = GoProgram(
    name="fortio",
    version="v1.68.2",
    requires=(("fortio.org/fortio", "v1.68.2"),),
    packages=("fortio.org/fortio",),
    outputs=("fortio",),
)

# The workflow linter for .github/workflows (they cannot run here: tests/test_workflows.py lints them).
ACTIONLINT = GoProgram(
    name="actionlint",
    version="v1.7.12",
    requires=(("github.com/rhysd/actionlint", "v1.7.12"),),
    packages=("github.com/rhysd/actionlint/cmd/actionlint",),
    outputs=("actionlint",),
)

ALL = (KUBERNETES_PROGRAM, KIND, CONTAINERD, CRICTL, ETCD, COREDNS, KUBE_ROUTER)
# What the local mesh runs beside Istio (harness/local/apiserver.py): `python -m harness.toolchain local-mesh`.
LOCAL_MESH = (KUBERNETES_PROGRAM, ETCD, POD_STREAMS)
BY_NAME = {p.name: p for p in (*ALL, POD_STREAMS, KUBECTL, FORTIO, ACTIONLINT)}
