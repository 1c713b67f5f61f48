"""TLS contexts for the https and mtls listeners (a certificate per SNI name), and what a handshake
tells about the client."""

from __future__ import annotations

import re
import ssl
from collections.abc import Sequence
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


def _context(cert: str, key: str, client_ca: str | None, cert_flag: str, key_flag: str) -> ssl.SSLContext:
    """One certificate's context; the flags name where cert and key came from in error messages."""
    _read_pem(cert_flag, cert, b"-----BEGIN CERTIFICATE-----", "certificate")
    _read_pem(key_flag, key, b"PRIVATE KEY-----", "private key")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        ctx.load_cert_chain(cert, key)
    except ssl.SSLError as exc:
        if "KEY_VALUES_MISMATCH" in str(exc):
            raise StartupError(f"{key_flag} {key} is not the key of the certificate in {cert_flag} {cert}") from None
        raise StartupError(f"cannot load {cert_flag} {cert} with {key_flag} {key}: {_ssl_reason(exc)}") from None
    ctx.set_alpn_protocols(ALPN_PROTOCOLS)
    if client_ca is not None:
        _read_pem("--client-ca", client_ca, b"-----BEGIN CERTIFICATE-----", "CA certificate")
        try:
            ctx.load_verify_locations(cafile=client_ca)
        except ssl.SSLError as exc:
            raise StartupError(f"cannot load --client-ca {client_ca}: {_ssl_reason(exc)}") from None
        ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


class SiteCert:
    """One --site-cert: a DNS name or a one-label wildcard (`*.example.net`), a chain and its key."""

    def __init__(self, name: str, cert: str, key: str):
        self.name = name
        self.cert = cert
        self.key = key


def server_context(cert: str, key: str, client_ca: str | None = None, sites: Sequence[SiteCert] = ()) -> ssl.SSLContext:
    """A server context presenting `cert` (a leaf, or a leaf followed by its chain).

    With client_ca, the client must present a certificate signed by it. With sites, a client whose
    SNI names one of them gets that site's certificate instead (see SiteChooser).
    """
    default = _context(cert, key, client_ca, "--cert", "--key")
    chooser = SiteChooser(default)
    for site in sites:
        flag = f"--site-cert {site.name}"
        # The listener's settings again: after the switch OpenSSL keeps the verify mode it had but
        # takes ALPN and the trusted client CAs from the site's context.
        chooser.add(site.name, _context(site.cert, site.key, client_ca, flag, flag))
    for ctx in chooser.contexts():
        ctx.sni_callback = chooser.callback
    return default


class SiteChooser:
    """Picks a listener's server certificate by the SNI the client sent.

    An exact name first, then a wildcard for the name's first label (`*.example.net` covers
    `a.example.net`, not `a.b.example.net` nor `example.net`, as a certificate's wildcard does);
    no match, or no SNI, keeps the default (--cert).
    """

    def __init__(self, default: ssl.SSLContext):
        self.default = default
        self._exact: dict[str, ssl.SSLContext] = {}
        self._wildcard: dict[str, ssl.SSLContext] = {}  # keyed by the suffix after "*."

    def add(self, name: str, ctx: ssl.SSLContext) -> None:
        name = name.lower()
        if name.startswith("*."):
            self._wildcard[name[2:]] = ctx
        else:
            self._exact[name] = ctx

    def contexts(self) -> list[ssl.SSLContext]:
        return [self.default, *self._exact.values(), *self._wildcard.values()]

    def pick(self, server_name: str | None) -> ssl.SSLContext:
        if not server_name:
            return self.default
        name = server_name.lower()  # the ssl module hands IDNs over as A-labels, so ASCII
        exact = self._exact.get(name)
        if exact is not None:
            return exact
        first, _, rest = name.partition(".")
        if first and rest:
            return self._wildcard.get(rest, self.default)
        return self.default

    def callback(self, sslsock: ssl.SSLSocket | ssl.SSLObject, server_name: str | None, ctx: ssl.SSLContext) -> None:
        _remember_sni(sslsock, server_name, ctx)
        chosen = self.pick(server_name)
        if chosen is not ctx:
            # OpenSSL asks for the certificate after this callback, from the context set here.
            sslsock.context = chosen
        return None


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
