"""The stand-in (mock_upstream) as every backend starts it: its ports and its command line, one
place for both (the local mesh runs it in the internet namespace, kind and a cluster in a container
or a pod of the image harness/backends/upstream_image.py builds)."""

from __future__ import annotations

from harness.pki import CertAuthority, Issued

UPSTREAM_PORTS = {"http": 80, "https": 443, "mtls": 8443, "control": 9901}
# The stand-in's control API answers only requests carrying this run's token (mock_upstream/control.py).
CONTROL_TOKEN_ENV = "MOCK_UPSTREAM_CONTROL_TOKEN"
# Where the image's stand-in finds its certificate, key and client CA.
CERT_DIR = "/etc/mock-upstream"
# The names on the stand-in's server certificate: exactly the one host the suites reach, not the
# real site's `*.cnn.com`. A gateway told to verify another CNN name (a DestinationRule whose sni
# and subjectAltNames say www.cnn.com) then fails verification, as it should against a server
# that is edition.cnn.com only; a wildcard would have let that wrong name through unnoticed.
UPSTREAM_CERT_NAMES = ("edition.cnn.com",)


def issue_upstream_certificate(ca: CertAuthority, file_stem: str = "edition.cnn.com") -> Issued:
    """The stand-in's server certificate (every backend's, and the benchmark's fortio upstream):
    issued by the test public CA for exactly UPSTREAM_CERT_NAMES."""
    return ca.issue_server(file_stem, list(UPSTREAM_CERT_NAMES))


def upstream_command(
    *,
    cert: str = f"{CERT_DIR}/cert.pem",
    key: str = f"{CERT_DIR}/key.pem",
    client_ca: str = f"{CERT_DIR}/client-ca.pem",
    control_listen: str | None = None,
) -> list[str]:
    """mock_upstream's arguments, in every backend: its ports, its certificate chain and key, and
    the CA whose client certificates its mutual-TLS port accepts (the container's paths by
    default; the local mesh passes the run's files). control_listen: the control API's own
    address (the local mesh: 127.0.0.1, which only the stand-in's namespace reaches; a container
    keeps 0.0.0.0, where Docker's published port and a port-forward arrive). Every backend also
    gives it a per-run control token (CONTROL_TOKEN_ENV), which the harness's client sends."""
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
    ]
