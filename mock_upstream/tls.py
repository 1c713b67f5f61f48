"""TLS contexts for the https and mtls listeners, and what a handshake tells about the client."""

from __future__ import annotations

import re
import ssl
from typing import Any

from .errors import StartupError

ALPN_PROTOCOLS = ["http/1.1"]

# Short names as in OpenSSL's one-line form; getpeercert() gives the long ones.
_SHORT_ATTR = {
    "commonName": "CN",
    "organizationName": "O",
    "organizationalUnitName": "OU",
    "countryName": "C",
    "stateOrProvinceName": "ST",
    "localityName": "L",
    "domainComponent": "DC",
    "userId": "UID",
}


def _read_pem(flag: str, path: str, marker: bytes, what: str) -> None:
    """Fail with a one-line message naming the flag and file, before OpenSSL's vaguer one."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as exc:
        raise StartupError(f"cannot read {flag} {path}: {exc.strerror or exc}") from None
    if marker not in data:
        raise StartupError(f"{flag} {path} holds no PEM {what}")


def _ssl_reason(exc: BaseException) -> str:
    return getattr(exc, "reason", None) or describe_error(exc)


def server_context(cert: str, key: str, client_ca: str | None = None) -> ssl.SSLContext:
    """A server context presenting `cert` (a leaf, or a leaf followed by its chain).

    With client_ca, the client must present a certificate signed by it.
    """
    _read_pem("--cert", cert, b"-----BEGIN CERTIFICATE-----", "certificate")
    _read_pem("--key", key, b"PRIVATE KEY-----", "private key")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        ctx.load_cert_chain(cert, key)
    except ssl.SSLError as exc:
        if "KEY_VALUES_MISMATCH" in str(exc):
            raise StartupError(f"--key {key} is not the key of the certificate in --cert {cert}") from None
        raise StartupError(f"cannot load --cert {cert} with --key {key}: {_ssl_reason(exc)}") from None
    ctx.set_alpn_protocols(ALPN_PROTOCOLS)
    if client_ca is not None:
        _read_pem("--client-ca", client_ca, b"-----BEGIN CERTIFICATE-----", "CA certificate")
        try:
            ctx.load_verify_locations(cafile=client_ca)
        except ssl.SSLError as exc:
            raise StartupError(f"cannot load --client-ca {client_ca}: {_ssl_reason(exc)}") from None
        ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.sni_callback = _remember_sni
    return ctx


_SNI_ATTR = "mock_upstream_sni"


def _remember_sni(sslsock: ssl.SSLSocket | ssl.SSLObject, server_name: str | None, _ctx: ssl.SSLContext) -> None:
    # The ssl module hands the server name only to this callback; park it on the socket (a plain
    # Python object) for the connection's thread to pick up after the handshake, failed or not.
    # (wrap_socket passes the SSLSocket; typeshed names only SSLObject, and the name can be None.)
    setattr(sslsock, _SNI_ATTR, server_name)
    return None


def received_sni(sslsock: ssl.SSLSocket) -> str | None:
    return getattr(sslsock, _SNI_ATTR, None)


def _name(rdns: tuple) -> str:
    parts = []
    for rdn in rdns:
        for attr, value in rdn:
            parts.append(f"{_SHORT_ATTR.get(attr, attr)}={value}")
    return ",".join(parts)


def peer_certificate(sslsock: ssl.SSLSocket) -> dict:
    """Subject, issuer and SANs of a verified client certificate (empty fields if there is none).

    getpeercert() only decodes a certificate the handshake verified, which is the mtls listener's.
    """
    # Any: each field has its own shape, and typeshed's one str | tuple value type fits none of them.
    cert: dict[str, Any] = sslsock.getpeercert() or {}
    sans = cert.get("subjectAltName", ())
    return {
        "client_cert_subject": _name(cert["subject"]) if "subject" in cert else None,
        "client_cert_issuer": _name(cert["issuer"]) if "issuer" in cert else None,
        "client_cert_dns_sans": [v for k, v in sans if k == "DNS"],
        "client_cert_uri_sans": [v for k, v in sans if k == "URI"],
    }


_SOURCE_SUFFIX = re.compile(r"\s*\(_ssl\.c:\d+\)$")


def describe_error(exc: BaseException) -> str:
    """One line for a record: OpenSSL's words without the CPython source location."""
    text = str(exc) or type(exc).__name__
    if isinstance(exc, (TimeoutError, ConnectionError)) and not str(exc):
        text = type(exc).__name__
    return _SOURCE_SUFFIX.sub("", text)
