"""What makes a network namespace a pod of the pocket cluster: its identity, its /etc files,
and the trust files the egress gateway reads."""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from harness.local.netns import Netns

if TYPE_CHECKING:
    from harness.local.proxy import IstioProxy
    from harness.pki import RunPKI

UPSTREAM_HOST = "edition.cnn.com"  # the seed's site (harness/sites.py), the benchmark's upstream
PROXY_UID = 1337


@dataclass
class Pod:
    namespace: str
    name: str
    labels: dict[str, str]
    service_account: str
    netns: Netns
    address: str
    hub_ifname: str
    proxy: IstioProxy | None = None
    container: str = ""  # the application container (kubectl logs), beside istio-proxy

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"


def write_pod_etc(
    ns: Netns, name: str, address: str, upstream_address: str, public_ca_pem: bytes, upstream_names: list[str]
) -> None:
    """/etc/netns/<ns>/ files, bind-mounted over /etc by `ip netns exec`:
    - hosts: every name of the sites table (edition.cnn.com for the seed) is the stand-in, as
      cluster DNS would say on kind;
    - resolv.conf: a nameserver that answers nothing, so no lookup leaves the pod;
    - ssl/: the test "public" CA in the system trust store, as a real public CA is for real pods,
      so the seed's plain `curl https://edition.cnn.com/...` verifies the stand-in."""
    hosts = "".join(f"{upstream_address} {n}\n" for n in upstream_names)
    ns.write_etc("hosts", f"127.0.0.1 localhost\n{address} {name}\n{hosts}")
    ns.write_etc("resolv.conf", "nameserver 127.0.0.1\noptions timeout:1 attempts:1\n")
    ssl_dir = ns.etc_dir / "ssl"
    (ssl_dir / "certs").mkdir(parents=True, exist_ok=True)
    host_bundle = Path("/etc/ssl/certs/ca-certificates.crt")
    bundle = public_ca_pem + (host_bundle.read_bytes() if host_bundle.exists() else b"")
    (ssl_dir / "certs" / "ca-certificates.crt").write_bytes(bundle)
    if Path("/etc/ssl/openssl.cnf").exists():
        shutil.copyfile("/etc/ssl/openssl.cnf", ssl_dir / "openssl.cnf")
    for sub in ("certs", ""):
        os.chmod(ssl_dir / sub, 0o755)


def stage_gateway_trust(pki: RunPKI, directory: Path) -> dict:
    """Files the gateway's Envoy (uid 1337) reads for TLS origination: the CA that signed the
    stand-in, a CA that did not, and a client certificate the stand-in's mutual-TLS port accepts.
    Returns them as the manifests' `trust` values (file paths, where Kubernetes uses credentialName)."""
    directory.mkdir(parents=True, exist_ok=True)
    client = pki.public_ca.issue_client(
        "gateway-client",
        "istio-egressgateway.egress-harness",
        dns_names=["istio-egressgateway.istio-system.svc.cluster.local"],
    )
    files = {
        "public-ca.pem": pki.public_ca.cert_pem,
        "untrusted-ca.pem": pki.other_public_ca().cert_pem,
        "client.pem": client.chain_path.read_bytes(),
        "client.key": client.key_pem,
    }
    for name, data in files.items():
        (directory / name).write_bytes(data)
        os.chown(directory / name, PROXY_UID, PROXY_UID)
        os.chmod(directory / name, 0o600 if name.endswith(".key") else 0o644)
    os.chown(directory, PROXY_UID, PROXY_UID)
    return {
        "trust": {"ca_certificates": str(directory / "public-ca.pem")},
        "wrong_trust": {"ca_certificates": str(directory / "untrusted-ca.pem")},
        "client": {"client_certificate": str(directory / "client.pem"), "private_key": str(directory / "client.key")},
    }
