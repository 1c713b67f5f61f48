"""What an egress spec says, once read and checked (harness/spec/load.py reads it; README's "Test
your own egress" documents the format).

Every object keeps the line it came from, so a later refusal (a manifest Istio rejects, an
expectation that cannot be checked on this backend) still names the file and the line.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

# A host port's protocol as the spec says it (Istio's words) → the stand-in's listener for it.
PROTOCOLS = ("HTTP", "HTTPS", "TLS", "TCP")
DEFAULT_GATEWAY = "istio-system/istio-egressgateway"
VIA = ("gateway", "direct")
TLS_BY = ("app", "sidecar", "gateway")
# What refused an exchange, and what the harness then checks.
REFUSALS = {
    "registry-only": "the source's sidecar knows no route (REGISTRY_ONLY): 502 or a reset, nothing leaves",
    "authorization-policy": "an AuthorizationPolicy at the gateway answered 403, nothing reached the host",
    "network-policy": "a NetworkPolicy dropped the packets: the client timed out, nothing reached anyone",
}
SECRET_HOLDS = {
    "ca": "cacert: the test public CA, which signed every host's certificate",
    "client-certificate": "tls.crt, tls.key, ca.crt: a client certificate the hosts' mutual-TLS ports accept",
    "untrusted-ca": "cacert: a CA that signed nothing here (a negative)",
}


@dataclass(frozen=True)
class Where:
    file: Path
    line: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}"


@dataclass(frozen=True)
class Host:
    name: str  # a DNS name or a wildcard `*.example.net`
    ports: dict[int, str]  # port -> protocol (PROTOCOLS)
    names: tuple[str, ...]  # the concrete names that resolve to the stand-in
    certificate: tuple[str, ...]  # the stand-in certificate's SANs for it
    client_certificate: bool  # its TLS ports require a client certificate
    where: Where

    @property
    def wildcard(self) -> bool:
        return self.name.startswith("*.")

    def matches(self, name: str) -> bool:
        if self.wildcard:
            return name.endswith(self.name[1:]) and "." not in name[: -len(self.name) + 1]
        return name == self.name

    def stand_in_protocol(self, port: int) -> str:
        """The stand-in's listener for `port`: http, https, mtls (a client certificate required) or tcp."""
        proto = self.ports[port]
        if proto in ("HTTPS", "TLS"):
            return "mtls" if self.client_certificate else "https"
        return proto.lower()


@dataclass(frozen=True)
class Source:
    namespace: str
    name: str
    service_account: str
    labels: dict[str, str]
    sidecar: bool
    where: Where

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"


@dataclass(frozen=True)
class SecretSpec:
    namespace: str
    name: str
    holds: str  # SECRET_HOLDS
    where: Where


@dataclass(frozen=True)
class Target:
    """Where an expectation's client goes: a URL (http, https) or tcp://host:port."""

    scheme: str
    host: str
    port: int
    path: str

    @classmethod
    def parse(cls, text: str) -> Target:
        parts = urlsplit(text)
        if parts.scheme not in ("http", "https", "tcp") or not parts.hostname:
            raise ValueError(f"{text!r} is no http://, https:// or tcp:// URL with a host")
        default = {"http": 80, "https": 443}.get(parts.scheme)
        port = parts.port or default
        if port is None:
            raise ValueError(f"{text!r}: tcp:// needs a port (tcp://host:5432)")
        return cls(parts.scheme, parts.hostname, port, parts.path or "/")

    def __str__(self) -> str:
        default = {"http": 80, "https": 443}.get(self.scheme)
        port = "" if self.port == default else f":{self.port}"
        path = "" if self.scheme == "tcp" else self.path
        return f"{self.scheme}://{self.host}{port}{path}"


@dataclass(frozen=True)
class Expectation:
    source: str  # "namespace/name" of a declared source
    target: Target
    host: Host
    where: Where
    name: str | None = None
    status: int | None = None  # None: 200 unless refused (not checked for tcp://)
    via: str | None = None  # "gateway", "direct", or None (not checked)
    gateway: str = DEFAULT_GATEWAY
    sni: str | None = None
    tls_by: str | None = None
    hop_mtls: bool | None = None
    client_certificate: bool | None = None
    counters: bool = False  # the host's counters grew on the proxy that sent it out
    refused: str | None = None  # REFUSALS

    @property
    def id(self) -> str:
        what = f"{self.source} -> {self.target}"
        if self.refused:
            what += f" refused ({self.refused})"
        return self.name or what

    @property
    def expected_status(self) -> int | None:
        if self.target.scheme == "tcp":
            return None
        if self.status is not None:
            return self.status
        return {"authorization-policy": 403}.get(self.refused or "", 200 if not self.refused else None)


@dataclass(frozen=True)
class Spec:
    file: Path
    hosts: list[Host]
    manifests: list[Path]  # files, in the order they are applied
    secrets: list[SecretSpec]
    sources: dict[str, Source]
    gateways: list[str]
    expectations: list[Expectation] = field(default_factory=list)

    def host_for(self, name: str) -> Host | None:
        exact = [h for h in self.hosts if not h.wildcard and h.matches(name)]
        matching = exact or [h for h in self.hosts if h.wildcard and h.matches(name)]
        return matching[0] if matching else None
