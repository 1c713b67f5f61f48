"""harness/pki.py: the mesh root with Istio-shaped workload certificates and the test public CA,
checked with cryptography and with a real TLS handshake through Python's ssl module."""

from __future__ import annotations

import socket
import ssl
import stat
import threading
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from harness import stand_in
from harness.pki import RunPKI, spiffe_id, write_istio_cert_dir

HOST = "edition.cnn.com"


@pytest.fixture
def pki(tmp_path: Path):
    run = RunPKI(tmp_path / "pki")
    yield run
    run.cleanup()


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _verify_signed_by(cert: x509.Certificate, ca: x509.Certificate) -> None:
    """Raises unless `cert` was issued by `ca` (name, signature, validity)."""
    cert.verify_directly_issued_by(ca)


def test_spiffe_id_format():
    assert spiffe_id("default", "sleep") == "spiffe://cluster.local/ns/default/sa/sleep"
    assert spiffe_id("a", "b", trust_domain="example.org") == "spiffe://example.org/ns/a/sa/b"


def test_workload_certificate_is_shaped_like_istios(pki: RunPKI, tmp_path: Path):
    issued = pki.mesh_ca.issue_workload("istio-system", "istio-egressgateway-service-account", tmp_path / "wl")
    cert = issued.cert

    assert cert.subject == x509.Name([])  # Istio's workload certificates have an empty subject
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    assert san.critical is True  # required when the subject is empty (RFC 5280 4.2.1.6)
    assert san.value.get_values_for_type(x509.UniformResourceIdentifier) == [
        "spiffe://cluster.local/ns/istio-system/sa/istio-egressgateway-service-account"
    ]
    assert san.value.get_values_for_type(x509.DNSName) == []
    assert issued.uris() == ["spiffe://cluster.local/ns/istio-system/sa/istio-egressgateway-service-account"]

    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert set(eku) == {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH}
    basic = cert.extensions.get_extension_for_class(x509.BasicConstraints)
    assert basic.critical and basic.value.ca is False
    assert isinstance(cert.public_key(), ec.EllipticCurvePublicKey)

    # Chains to the mesh root, not to the public CA.
    assert cert.issuer == pki.mesh_ca.cert.subject
    _verify_signed_by(cert, pki.mesh_ca.cert)
    with pytest.raises(ValueError, match="[Ii]ssuer"):
        _verify_signed_by(cert, pki.public_ca.cert)
    root_basic = pki.mesh_ca.cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    assert root_basic.ca is True and pki.mesh_ca.cert.issuer == pki.mesh_ca.cert.subject


def test_write_istio_cert_dir_lays_out_pilot_agent_files(pki: RunPKI, tmp_path: Path):
    cert_dir = tmp_path / "etc-certs"
    issued = write_istio_cert_dir(pki.mesh_ca, "default", "sleep", cert_dir)

    chain = x509.load_pem_x509_certificates((cert_dir / "cert-chain.pem").read_bytes())
    assert [c.serial_number for c in chain] == [issued.cert.serial_number]
    assert chain[0].extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(
        x509.UniformResourceIdentifier
    ) == ["spiffe://cluster.local/ns/default/sa/sleep"]
    [root] = x509.load_pem_x509_certificates((cert_dir / "root-cert.pem").read_bytes())
    assert root == pki.mesh_ca.cert
    _verify_signed_by(chain[0], root)

    key_path = cert_dir / "key.pem"
    assert _mode(key_path) == 0o600
    assert key_path.read_bytes() == issued.key_pem
    # The key matches the certificate.
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    key = load_pem_private_key(key_path.read_bytes(), password=None)
    assert key.public_key().public_numbers() == chain[0].public_key().public_numbers()


def test_private_keys_are_0600_and_the_run_dir_0700(pki: RunPKI, tmp_path: Path):
    pki.public_ca.issue_server("edition-cnn", [HOST])
    pki.public_ca.issue_client("client", "egress-gateway")
    pki.mesh_ca.issue_workload("default", "sleep", tmp_path / "wl")
    keys = sorted(pki.directory.rglob("*.key")) + sorted((tmp_path / "wl").glob("*.key"))
    names = {k.name for k in keys}
    assert {"mesh-root-ca.key", "public-ca.key", "edition-cnn.key", "client.key", "workload.key"} <= names
    assert {str(k): _mode(k) for k in keys} == {str(k): 0o600 for k in keys}
    assert _mode(pki.directory) == 0o700


def test_server_certificate_has_dns_sans_and_verifies_against_the_public_ca(pki: RunPKI):
    issued = pki.public_ca.issue_server("edition-cnn", [HOST, "www.edition.cnn.com"], ips=["127.0.0.1"])
    cert = issued.cert
    assert issued.dns_names() == [HOST, "www.edition.cnn.com"]
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == HOST
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert [str(ip) for ip in san.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
    assert list(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value) == [
        ExtendedKeyUsageOID.SERVER_AUTH
    ]
    _verify_signed_by(cert, pki.public_ca.cert)

    # chain_path is what a server presents: leaf then the CA.
    chain = x509.load_pem_x509_certificates(issued.chain_path.read_bytes())
    assert chain == [cert, pki.public_ca.cert]

    # cryptography's own path builder (RFC 5280 checks, including the SAN) accepts it.
    from cryptography.x509.verification import PolicyBuilder, Store

    verifier = PolicyBuilder().store(Store([pki.public_ca.cert])).build_server_verifier(x509.DNSName(HOST))
    built = verifier.verify(cert, [])
    assert built[-1] == pki.public_ca.cert


def _handshake(server_ctx: ssl.SSLContext, client_ctx: ssl.SSLContext, server_name: str) -> dict:
    """A real TLS handshake over a socketpair; returns the client's view of the peer certificate."""
    left, right = socket.socketpair()
    left.settimeout(5)
    right.settimeout(5)
    errors: list[BaseException] = []

    def serve():
        try:
            with server_ctx.wrap_socket(right, server_side=True) as tls:
                tls.recv(1)
        except (ssl.SSLError, OSError) as exc:
            errors.append(exc)

    thread = threading.Thread(target=serve)
    thread.start()
    try:
        with client_ctx.wrap_socket(left, server_hostname=server_name) as tls:
            peer = tls.getpeercert()
            tls.sendall(b"x")
            return peer
    finally:
        left.close()  # also when the handshake failed and wrap_socket gave nothing to close
        thread.join(5)
        right.close()


def test_server_certificate_passes_pythons_ssl_verification(pki: RunPKI):
    issued = pki.public_ca.issue_server("edition-cnn", [HOST])
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(str(issued.chain_path), str(issued.key_path))

    trusting = ssl.create_default_context(cafile=str(pki.public_ca.cert_path))
    peer = _handshake(server_ctx, trusting, HOST)
    assert ("DNS", HOST) in peer["subjectAltName"]

    # Another CA does not verify it, and neither does a name it was not issued for.
    other = ssl.create_default_context(cafile=str(pki.other_public_ca().cert_path))
    # (the served chain ends in the public CA, which `other` does not hold: a self-signed root it refuses)
    with pytest.raises(ssl.SSLCertVerificationError, match="self-signed certificate in certificate chain"):
        _handshake(server_ctx, other, HOST)
    with pytest.raises(ssl.SSLCertVerificationError, match="Hostname mismatch"):
        _handshake(server_ctx, trusting, "www.example.com")


def test_the_stand_ins_certificate_names_only_edition_cnn_com(pki: RunPKI):
    """No wildcard: a client verifying another CNN name (a wrong sni with matching SANs) fails."""
    issued = stand_in.issue_upstream_certificate(pki.public_ca)
    assert issued.dns_names() == [HOST] and issued.uris() == []
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(str(issued.chain_path), str(issued.key_path))
    trusting = ssl.create_default_context(cafile=str(pki.public_ca.cert_path))
    assert ("DNS", HOST) in _handshake(server_ctx, trusting, HOST)["subjectAltName"]
    with pytest.raises(ssl.SSLCertVerificationError, match="Hostname mismatch"):
        _handshake(server_ctx, trusting, "www.cnn.com")


def test_client_certificate_has_client_auth_and_sans(pki: RunPKI):
    uri = spiffe_id("istio-system", "istio-egressgateway-service-account")
    issued = pki.public_ca.issue_client("gw", "egress-gateway", ["gw.example"], [uri])
    assert issued.dns_names() == ["gw.example"] and issued.uris() == [uri]
    assert list(issued.cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value) == [
        ExtendedKeyUsageOID.CLIENT_AUTH
    ]
    _verify_signed_by(issued.cert, pki.public_ca.cert)


def test_other_public_ca_is_a_distinct_root(pki: RunPKI):
    other = pki.other_public_ca()
    assert other.cert.subject != pki.public_ca.cert.subject
    assert other.cert.public_key().public_numbers() != pki.public_ca.cert.public_key().public_numbers()
    assert other.cert_path.is_relative_to(pki.directory)


def test_cleanup_removes_the_directory(tmp_path: Path):
    run = RunPKI(tmp_path / "run")
    run.public_ca.issue_server("edition-cnn", [HOST])
    run.other_public_ca()
    assert any(run.directory.rglob("*.key"))
    run.cleanup()
    assert not run.directory.exists()
    run.cleanup()  # idempotent: teardown may run it twice
