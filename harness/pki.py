"""Test PKI: the mesh root with Istio-shaped SPIFFE workload certificates, and a test "public" CA.

Everything is written into one per-run directory; private keys are mode 0600 and the directory is
removed by `RunPKI.cleanup()` (the mesh's teardown calls it, also after failures and Ctrl-C).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

TRUST_DOMAIN = "cluster.local"
_VALIDITY = dt.timedelta(days=2)
# Backdated so certificates are valid even if a namespace's clock view differs slightly.
_BACKDATE = dt.timedelta(hours=1)


def spiffe_id(namespace: str, service_account: str, trust_domain: str = TRUST_DOMAIN) -> str:
    return f"spiffe://{trust_domain}/ns/{namespace}/sa/{service_account}"


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.chmod(path, 0o600)  # O_CREAT's mode is masked by umask; be explicit.


def _new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


@dataclass(frozen=True)
class Issued:
    """A leaf certificate and its key, as PEM and as files."""

    cert: x509.Certificate
    cert_pem: bytes
    key_pem: bytes
    cert_path: Path
    key_path: Path
    chain_path: Path  # leaf followed by the issuing CA: what a server presents

    def dns_names(self) -> list[str]:
        return _sans(self.cert, x509.DNSName)

    def uris(self) -> list[str]:
        return _sans(self.cert, x509.UniformResourceIdentifier)


def _sans(cert: x509.Certificate, kind: type) -> list[str]:
    try:
        ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        return []
    return [str(v) for v in ext.value.get_values_for_type(kind)]


@dataclass
class CertAuthority:
    """A self-signed root CA that issues leaves into `directory`."""

    name: str
    directory: Path
    key: ec.EllipticCurvePrivateKey
    cert: x509.Certificate
    cert_path: Path

    @classmethod
    def create(
        cls, name: str, common_name: str, directory: Path, organization: str = "egress-harness"
    ) -> CertAuthority:
        directory.mkdir(parents=True, exist_ok=True)
        key = _new_key()
        subject = x509.Name(
            [
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization),
                x509.NameAttribute(NameOID.COMMON_NAME, common_name),
            ]
        )
        now = dt.datetime.now(dt.UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - _BACKDATE)
            .not_valid_after(now + dt.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    key_cert_sign=True,
                    crl_sign=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256())
        )
        cert_path = directory / f"{name}-ca.pem"
        cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        _write_private(directory / f"{name}-ca.key", _key_pem(key))
        return cls(name=name, directory=directory, key=key, cert=cert, cert_path=cert_path)

    @property
    def cert_pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    def _issue(
        self,
        file_stem: str,
        subject: x509.Name,
        sans: Sequence[x509.GeneralName],
        usages: list[x509.ObjectIdentifier],
        san_critical: bool = False,
        out_dir: Path | None = None,
    ) -> Issued:
        key = _new_key()
        now = dt.datetime.now(dt.UTC)
        builder = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(self.cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - _BACKDATE)
            .not_valid_after(now + _VALIDITY)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    key_encipherment=True,
                    content_commitment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=False,
                    crl_sign=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()), critical=False)
        )
        if sans:
            builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=san_critical)
        cert = builder.sign(self.key, hashes.SHA256())
        out = out_dir or self.directory
        out.mkdir(parents=True, exist_ok=True)
        cert_pem = cert.public_bytes(serialization.Encoding.PEM)
        key_pem = _key_pem(key)
        cert_path = out / f"{file_stem}.pem"
        key_path = out / f"{file_stem}.key"
        chain_path = out / f"{file_stem}-chain.pem"
        cert_path.write_bytes(cert_pem)
        chain_path.write_bytes(cert_pem + self.cert_pem)
        _write_private(key_path, key_pem)
        return Issued(cert, cert_pem, key_pem, cert_path, key_path, chain_path)

    def issue_server(self, file_stem: str, dns_names: Sequence[str], ips: Sequence[str] = ()) -> Issued:
        """A TLS server certificate (DNS SANs, CN = first name), as a public CA would issue."""
        sans: list[x509.GeneralName] = [x509.DNSName(n) for n in dns_names]
        sans += [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, dns_names[0])])
        return self._issue(file_stem, subject, sans, [ExtendedKeyUsageOID.SERVER_AUTH])

    def issue_client(
        self,
        file_stem: str,
        common_name: str,
        dns_names: Sequence[str] = (),
        uris: Sequence[str] = (),
        organization: str | None = None,
    ) -> Issued:
        """A TLS client certificate (for mutual TLS origination to the stand-in upstream; with an
        `organization`, a Kubernetes user's group, for the API server)."""
        sans: list[x509.GeneralName] = [x509.DNSName(n) for n in dns_names]
        sans += [x509.UniformResourceIdentifier(u) for u in uris]
        names = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization)] if organization else []
        subject = x509.Name([*names, x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
        return self._issue(file_stem, subject, sans, [ExtendedKeyUsageOID.CLIENT_AUTH])

    def issue_workload(
        self,
        namespace: str,
        service_account: str,
        out_dir: Path,
        trust_domain: str = TRUST_DOMAIN,
    ) -> Issued:
        """An Istio-shaped workload certificate: empty subject, one critical URI SAN (SPIFFE id),
        usable for both client and server auth, like istiod's CA issues."""
        sans = [x509.UniformResourceIdentifier(spiffe_id(namespace, service_account, trust_domain))]
        return self._issue(
            "workload",
            x509.Name([]),
            sans,
            [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH],
            san_critical=True,
            out_dir=out_dir,
        )


def write_istio_cert_dir(mesh_ca: CertAuthority, namespace: str, service_account: str, cert_dir: Path) -> Issued:
    """Lay out a workload's certs the way pilot-agent's FILE_MOUNTED_CERTS expects them:
    cert-chain.pem, key.pem, root-cert.pem in one directory."""
    issued = mesh_ca.issue_workload(namespace, service_account, cert_dir)
    (cert_dir / "cert-chain.pem").write_bytes(issued.cert_pem)
    _write_private(cert_dir / "key.pem", issued.key_pem)
    (cert_dir / "root-cert.pem").write_bytes(mesh_ca.cert_pem)
    return issued


@dataclass
class RunPKI:
    """All certificate material of one run: the mesh root and the test public CA."""

    directory: Path
    mesh_ca: CertAuthority = field(init=False)
    public_ca: CertAuthority = field(init=False)

    def __post_init__(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        os.chmod(self.directory, 0o700)
        self.mesh_ca = CertAuthority.create("mesh-root", "Istio mesh root (egress-harness)", self.directory / "mesh")
        self.public_ca = CertAuthority.create(
            "public", "Test Public Root CA (egress-harness)", self.directory / "public", organization="Test Public CA"
        )

    def other_public_ca(self) -> CertAuthority:
        """A CA nobody trusts: for negative tests (origination trusting the wrong CA)."""
        return CertAuthority.create("untrusted", "Untrusted Root CA (egress-harness)", self.directory / "untrusted")

    def cleanup(self) -> None:
        shutil.rmtree(self.directory, ignore_errors=True)
