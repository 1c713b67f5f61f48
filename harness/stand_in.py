"""The stand-in (mock_upstream) as every backend starts it: its ports and its command line, one
place for both (the local mesh runs it in the internet namespace, kind and a cluster in a container
or a pod of the image harness/backends/upstream_image.py builds)."""

from __future__ import annotations

from collections.abc import Sequence

from harness import sites
from harness.pki import CertAuthority, Issued

UPSTREAM_PORTS = {"http": 80, "https": 443, "mtls": 8443, "control": 9901}
# The fixed listeners that serve traffic, by port: a site needs no extra listener for these.
FIXED_LISTENERS = {port: proto for proto, port in UPSTREAM_PORTS.items() if proto != "control"}
# The stand-in's control API answers only requests carrying this run's token (mock_upstream/control.py).
CONTROL_TOKEN_ENV = "MOCK_UPSTREAM_CONTROL_TOKEN"
# Where the image's stand-in finds its certificate, key and client CA.
CERT_DIR = "/etc/mock-upstream"


def issue_upstream_certificate(ca: CertAuthority, file_stem: str = "edition.cnn.com") -> Issued:
    """The seed site's server certificate (the benchmark's fortio upstream): issued by the test
    public CA for exactly the seed's name (harness/sites.py says why no wildcard)."""
    return ca.issue_server(file_stem, list(sites.SEED_SITE.cert_names))


def site_certificates(ca: CertAuthority) -> list[tuple[sites.Site, Issued]]:
    """A certificate per site of the table; the first is the stand-in's default (no SNI match)."""
    return sites.issue_certificates(ca)


def container_site_files(
    issued: Sequence[tuple[sites.Site, Issued]],
) -> tuple[dict[str, bytes], list[tuple[str, str, str]]]:
    """The files a container's CERT_DIR holds for the sites after the first (the default site's
    are cert.pem/key.pem), and the (name, cert, key) triples naming them inside the container."""
    files: dict[str, bytes] = {}
    triples = []
    for i, (site, cert) in enumerate(issued[1:], start=1):
        files[f"site-{i}.pem"] = cert.chain_path.read_bytes()
        files[f"site-{i}.key"] = cert.key_pem
        triples.append((site.name, f"{CERT_DIR}/site-{i}.pem", f"{CERT_DIR}/site-{i}.key"))
    return files, triples


def upstream_command(
    *,
    cert: str = f"{CERT_DIR}/cert.pem",
    key: str = f"{CERT_DIR}/key.pem",
    client_ca: str = f"{CERT_DIR}/client-ca.pem",
    control_listen: str | None = None,
    site_certs: Sequence[tuple[str, str, str]] = (),
) -> list[str]:
    """mock_upstream's arguments, in every backend: its ports, its certificate chain and key, and
    the CA whose client certificates its mutual-TLS port accepts (the container's paths by
    default; the local mesh passes the run's files). control_listen: the control API's own
    address (the local mesh: 127.0.0.1, which only the stand-in's namespace reaches; a container
    keeps 0.0.0.0, where Docker's published port and a port-forward arrive). Every backend also
    gives it a per-run control token (CONTROL_TOKEN_ENV), which the harness's client sends.
    site_certs: (name, cert, key) of every site but the default, chosen by SNI; the sites' extra
    ports (harness/sites.py) become listeners of their protocol."""
    extra = [a for name, c, k in site_certs for a in ("--site-cert", f"{name}={c},{k}")]
    extra += [a for port, proto in sites.extra_ports().items() for a in ("--port", f"{proto}:{port}")]
    return [
        "--listen",
        "0.0.0.0",
        "--http-port",
        str(UPSTREAM_PORTS["http"]),
        "--https-port",
        str(UPSTREAM_PORTS["https"]),
        "--mtls-port",
        str(UPSTREAM_PORTS["mtls"]),
        "--client-ca",
        client_ca,
        "--control-port",
        str(UPSTREAM_PORTS["control"]),
        *(["--control-listen", control_listen] if control_listen else []),
        "--cert",
        cert,
        "--key",
        key,
        *extra,
    ]
