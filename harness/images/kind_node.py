"""kind's base and node images, built here from Debian packages and the programs of harness/toolchain.

Base (`egress-harness/kind-base:<key>`): the steps of kind v0.33.0's images/base/Dockerfile on a
debootstrap rootfs instead of debian:trixie-slim: kind's own files (entrypoint, systemd units,
containerd config, read from the Go module cache after `go mod download sigs.k8s.io/kind@v0.33.0`),
containerd v2 + ctr + shim and crictl from harness/toolchain, Debian's runc and CNI plugins, and
`restrict_oom_score_adj = true`: on hosts without CAP_SYS_RESOURCE every pod sandbox otherwise
fails writing oom_score_adj (the setting kind uses for rootless; kind-from-source.md).

Node (`egress-harness/kind-node:<version>-<key>`): kind's node-image layout, made the cheap way
(kind's `build node-image` would fetch kindest/* images from a registry): the base runs with
`sleep`, kubeadm/kubelet/kubectl go to /usr/bin, /kind/version is written, containerd inside
imports every component image (`ctr images import --label=io.cri-containerd.pinned=pinned
--no-unpack`, kind's own command, pkg/build/nodeimage/imageimporter.go), and the container is
committed with kind's entrypoint. /kind/manifests/default-cni.yaml is the NetworkPolicy enforcer
(harness/images/components.py); the pod network itself is the static CNI config of cni.py.
"""

from __future__ import annotations

import io
import subprocess
import tarfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

from harness.backends import upstream_image
from harness.errors import HarnessError
from harness.images import cni
from harness.images.docker_build import build, content_key, has_image, log_dir, say
from harness.toolchain import programs
from harness.toolchain.gobuild import ensure_program, go_binary

if TYPE_CHECKING:
    import docker

KIND_ROOTFS_PACKAGES = (
    "systemd",
    "dbus",
    "conntrack",
    "iptables",
    "nftables",
    "ipset",
    "iproute2",
    "ethtool",
    "util-linux",
    "mount",
    "kmod",
    "libseccomp2",
    "pigz",
    "e2fsprogs",
    "bash",
    "ca-certificates",
    "curl",
    "jq",
    "procps",
    "runc",
    "containernetworking-plugins",
    "socat",
)
ROOTFS_REPO = "egress-harness/kind-rootfs"
BASE_REPO = "egress-harness/kind-base"
NODE_REPO = "egress-harness/kind-node"


def kind_files() -> Path:
    """kind's images/base/files from the Go module cache."""
    go = go_binary()
    proc = subprocess.run(
        [go, "mod", "download", "-json", f"sigs.k8s.io/kind@{programs.KIND.version}"],
        capture_output=True,
        text=True,
        cwd="/",
    )
    import json

    try:
        directory = Path(json.loads(proc.stdout)["Dir"])
    except (ValueError, KeyError):
        raise HarnessError(
            f"go mod download sigs.k8s.io/kind@{programs.KIND.version} failed: "
            f"{(proc.stderr or proc.stdout).strip()[-200:]}"
        ) from None
    return directory / "images" / "base" / "files"


def ensure_rootfs_image(client: docker.DockerClient) -> str:
    """The kind base's Debian rootfs (debootstrap, cached as a tarball) imported as an image."""
    tag = f"{ROOTFS_REPO}:{content_key(upstream_image.rootfs_key(packages=KIND_ROOTFS_PACKAGES))}"
    if has_image(client, tag):
        return tag
    tarball, _ = upstream_image.ensure_rootfs_tarball(packages=KIND_ROOTFS_PACKAGES)
    repo, version = tag.split(":")
    say(f"importing {tarball.name} as {tag}")
    client.api.import_image_from_file(str(tarball), repository=repo, tag=version)
    if not has_image(client, tag):
        raise HarnessError(f"docker import of {tarball} did not produce {tag}: remove the tarball and retry")
    return tag


_BASE_DOCKERFILE = """\
FROM {rootfs}
COPY files/usr/local/bin/ /usr/local/bin/
COPY files/kind/ /kind/
COPY files/etc/ /etc/
COPY bin/ /usr/local/bin/
RUN chmod 0755 /usr/local/bin/* /kind /kind/bin /kind/bin/* \\
    && find /lib/systemd/system/sysinit.target.wants/ -name "systemd-tmpfiles-setup.service" -delete \\
    && rm -f /lib/systemd/system/multi-user.target.wants/* /etc/systemd/system/*.wants/* \\
       /lib/systemd/system/local-fs.target.wants/* /lib/systemd/system/sockets.target.wants/*udev* \\
       /lib/systemd/system/sockets.target.wants/*initctl* /lib/systemd/system/basic.target.wants/* \\
    && echo "ReadKMsg=no" >> /etc/systemd/journald.conf \\
    && ln -sf /usr/lib/systemd/systemd /sbin/init \\
    && systemctl enable kubelet.service containerd.service undo-mount-hacks.service \\
    && systemctl mask systemd-binfmt.service \\
    && mkdir -p /etc/kubernetes/manifests /opt/cni/bin /etc/cni/net.d \\
    && ln -sf /usr/lib/cni/* /opt/cni/bin/ \\
    && ctr oci spec | jq '.hooks.createContainer[.hooks.createContainer| length] |= . + {{"path": "/kind/bin/mount-product-files.sh"}}' \\
       | jq 'del(.process.rlimits)' > /etc/containerd/cri-base.json \\
    && sed -i 's/restrict_oom_score_adj = false/restrict_oom_score_adj = true/' /etc/containerd/config.toml \\
    && grep -q 'restrict_oom_score_adj = true' /etc/containerd/config.toml \\
    && containerd --version && crictl --version && runc --version
ENV container=docker
STOPSIGNAL SIGRTMIN+3
ENTRYPOINT ["/usr/local/bin/entrypoint", "/sbin/init"]
"""


def ensure_base_image(client: docker.DockerClient) -> str:
    rootfs = ensure_rootfs_image(client)
    files = kind_files()
    bins = {
        f"bin/{name}": ensure_program(programs.CONTAINERD) / name
        for name in ("containerd", "ctr", "containerd-shim-runc-v2")
    }
    bins["bin/crictl"] = ensure_program(programs.CRICTL) / "crictl"
    dockerfile = _BASE_DOCKERFILE.format(rootfs=rootfs)
    tag = f"{BASE_REPO}:{content_key(dockerfile, files, *bins.values())}"
    return build(client, tag, dockerfile, {"files": files, **bins}, what="kind base image")


def _tar(entries: dict[str, bytes], mode: int = 0o755) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in entries.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = mode
            info.mtime = int(time.time())
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def node_tag(base: str, component_ids: list[str], default_cni: str) -> str:
    k8s = programs.KUBERNETES_PROGRAM
    key = content_key(base, k8s.key(""), k8s.version, *component_ids, default_cni, cni.conflist())
    return f"{NODE_REPO}:{k8s.version}-{key}"


def ensure_node_image(client: docker.DockerClient, components: dict[str, str], default_cni: str) -> str:
    """The node image with the component images (`ref -> local tag`) preloaded into its containerd."""
    base = ensure_base_image(client)
    ids = sorted(f"{ref}={client.images.get(tag).id}" for ref, tag in components.items())
    tag = node_tag(base, ids, default_cni)
    if has_image(client, tag):
        return tag
    k8s_bin = ensure_program(programs.KUBERNETES_PROGRAM)
    log_path = log_dir() / f"{tag.replace('/', '_').replace(':', '_')}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    import docker.errors

    say(f"building image {tag} (kind node image; log: {log_path})")
    started = time.monotonic()
    container = client.containers.run(
        base,
        entrypoint=["sleep", "infinity"],
        privileged=True,
        detach=True,
        network_mode="none",
        labels={"egress-harness": "kind-node-build"},
    )
    try:
        with log_path.open("w") as log:
            container.put_archive(
                "/usr/bin", _tar({n: (k8s_bin / n).read_bytes() for n in ("kubeadm", "kubelet", "kubectl")})
            )
            container.put_archive(
                "/kind",
                _tar(
                    {
                        "version": programs.KUBERNETES.encode() + b"\n",
                        "manifests/default-cni.yaml": default_cni.encode(),
                        "manifests/default-storage.yaml": _STORAGE.encode(),
                    },
                    0o644,
                ),
            )
            container.put_archive(
                "/etc/cni/net.d", _tar({Path(cni.CONFLIST_PATH).name: cni.conflist().encode()}, 0o644)
            )
            container.exec_run(["mkdir", "-p", "/kind/images"])
            for ref, local in components.items():
                client.images.get(local).tag(*ref.rsplit(":", 1))
                data = b"".join(client.api.get_image(ref))  # `docker save ref`: named ref in its manifest
                name = ref.replace("/", "_").replace(":", "_") + ".tar"
                container.put_archive("/kind/images", _tar({name: data}, 0o644))
                log.write(f"copied {ref} ({len(data)} bytes)\n")
            script = (
                "containerd >/var/log/containerd-build.log 2>&1 & pid=$!; "
                "i=0; until ctr version >/dev/null 2>&1; do i=$((i+1)); [ $i -gt 300 ] && exit 9; sleep 0.1; done; "
                "for f in /kind/images/*.tar; do ctr --namespace=k8s.io images import "
                '--label=io.cri-containerd.pinned=pinned --all-platforms --no-unpack --digests "$f" || exit 1; done; '
                "ctr --namespace=k8s.io images ls -q; kill $pid; wait $pid; rm -rf /kind/images /var/log/containerd-build.log"
            )
            rc, out = container.exec_run(["sh", "-c", script])
            log.write(out.decode(errors="replace"))
            if rc != 0:
                raise HarnessError(
                    f"building image {tag} failed: importing the component images exited {rc} (log: {log_path})"
                )
            repo, version = tag.split(":")
            # STOPSIGNAL and ENV come with the container's config from the base image.
            container.commit(
                repository=repo,
                tag=version,
                changes=['ENTRYPOINT ["/usr/local/bin/entrypoint", "/sbin/init"]', "CMD []"],
            )
    except docker.errors.APIError as exc:
        raise HarnessError(f"building image {tag} failed: {exc.explanation or exc} (log: {log_path})") from None
    finally:
        container.remove(force=True)
    say(f"built image {tag} in {time.monotonic() - started:.0f}s")
    return tag


# kind applies /kind/manifests/default-storage.yaml at create; its local-path provisioner image is a
# registry image, and the suites use no volumes: a StorageClass without a provisioner pod.
_STORAGE = """\
apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata:
  name: standard
  annotations:
    storageclass.kubernetes.io/is-default-class: "true"
provisioner: kubernetes.io/no-provisioner
volumeBindingMode: WaitForFirstConsumer
"""
