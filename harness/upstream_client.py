"""Client for the mock upstream's control API: what reached the stand-in edition.cnn.com.

Typical use in a suite:

    upstream = UpstreamClient(f"http://{addr}:{ports.control}")
    mark = upstream.mark()
    ... send traffic through the mesh ...
    [req] = upstream.wait_for_requests(1, since=mark)
    assert req.sni == "edition.cnn.com" and req.header("x-foo") == "bar"

Record fields mirror the JSON schema documented in mock_upstream/records.py.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from typing import Any

import httpx

from harness.errors import HarnessError
from harness.wait import poll


@dataclass(frozen=True)
class UpstreamPorts:
    """Ports the mock upstream bound (its ready line, or GET /healthz's "ports")."""

    http: int
    https: int
    mtls: int | None
    control: int

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> UpstreamPorts:
        return cls(http=data["http"], https=data["https"], mtls=data.get("mtls"), control=data["control"])


def parse_ready_line(line: str | bytes) -> UpstreamPorts:
    """Parse the JSON line `python -m mock_upstream` prints on stdout once all sockets are bound."""
    text = line.decode("utf-8", "replace") if isinstance(line, bytes) else line
    try:
        data = json.loads(text)
    except ValueError:
        data = None
    if not isinstance(data, dict) or data.get("ready") is not True:
        raise HarnessError(f"mock upstream did not print its ready line; got {text.strip()[:200]!r}")
    return UpstreamPorts.from_json(data)


def _record(cls, d: dict[str, Any]):
    """A record dataclass from its JSON: fields typed as tuples get tuples (headers: of pairs),
    counters missing from an older record read 0, everything else is taken as it is."""
    values = {}
    for f in fields(cls):
        raw = d.get(f.name)
        if f.name == "headers":
            raw = tuple((name, value) for name, value in raw or ())
        elif f.type.startswith("tuple") and raw is not None:
            raw = tuple(raw)
        elif f.type.startswith("tuple") and "None" not in f.type:
            raw = ()
        elif f.type == "int" and raw is None:
            raw = 0
        values[f.name] = raw
    return cls(**values)


@dataclass(frozen=True)
class ConnectionRecord:
    id: int
    listener: str  # "http" | "https" | "mtls"
    state: str  # "handshaking" | "open" | "closed" | "failed"
    opened_at: float
    closed_at: float | None
    peer_address: str
    peer_port: int
    local_address: str
    local_port: int
    tls: bool
    sni: str | None
    alpn: str | None
    alpn_offered: tuple[str, ...] | None
    tls_version: str | None
    cipher: str | None
    client_cert_subject: str | None
    client_cert_issuer: str | None
    client_cert_dns_sans: tuple[str, ...]
    client_cert_uri_sans: tuple[str, ...]
    handshake_error: str | None
    error: str | None
    requests: int

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> ConnectionRecord:
        return _record(cls, d)

    @property
    def client_cert_sans(self) -> tuple[str, ...]:
        """URI SANs then DNS SANs of the client certificate (mtls listener only)."""
        return self.client_cert_uri_sans + self.client_cert_dns_sans

    def summary(self) -> str:
        parts = [f"#{self.id} {self.listener} from {self.peer_address}:{self.peer_port} {self.state}"]
        if self.tls:
            parts.append(f"sni={self.sni} alpn={self.alpn} offered={list(self.alpn_offered or [])}")
        if self.handshake_error:
            parts.append(f"handshake_error={self.handshake_error!r}")
        if self.error:
            parts.append(f"error={self.error!r}")
        return " ".join(parts)


@dataclass(frozen=True)
class RequestRecord:
    id: int
    connection_id: int
    seq: int
    listener: str
    peer_address: str
    peer_port: int
    local_address: str
    local_port: int
    tls: bool
    sni: str | None
    alpn: str | None
    tls_version: str | None
    client_cert_subject: str | None
    client_cert_dns_sans: tuple[str, ...]
    client_cert_uri_sans: tuple[str, ...]
    method: str
    path: str
    host: str | None
    http_version: str
    headers: tuple[tuple[str, str], ...] = field(repr=False)
    body_bytes: int
    status: int
    response_bytes: int
    received_at: float
    responded_at: float | None

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> RequestRecord:
        return _record(cls, d)

    def header(self, name: str, default: str | None = None) -> str | None:
        """The first value of header `name` (case-insensitive), or default."""
        values = self.header_values(name)
        return values[0] if values else default

    def header_values(self, name: str) -> list[str]:
        """Every value of header `name` (case-insensitive), in the order received."""
        wanted = name.lower()
        return [value for key, value in self.headers if key.lower() == wanted]

    @property
    def client_cert_sans(self) -> tuple[str, ...]:
        return self.client_cert_uri_sans + self.client_cert_dns_sans

    def summary(self) -> str:
        tls = f" sni={self.sni}" if self.tls else ""
        return (
            f"#{self.id} {self.listener} {self.method} {self.path} host={self.host} -> {self.status}"
            f" from {self.peer_address}:{self.peer_port}{tls}"
        )


AnyRecord = ConnectionRecord | RequestRecord


def record_from_json(data: dict[str, Any]) -> AnyRecord:
    if data.get("kind") == "connection":
        return ConnectionRecord.from_json(data)
    if data.get("kind") == "request":
        return RequestRecord.from_json(data)
    raise ValueError(f"unknown record kind {data.get('kind')!r} in {data!r}")


@dataclass(frozen=True)
class _Seen:
    """One look at the records since a mark: what a wait reports when it times out."""

    connections: list[ConnectionRecord]
    requests: list[RequestRecord]

    def describe(self) -> str:
        lines = [f"{len(self.requests)} request(s), {len(self.connections)} connection(s)"]
        lines += [f"  request {r.summary()}" for r in self.requests[-10:]]
        lines += [f"  connection {c.summary()}" for c in self.connections[-10:]]
        if self.connections and not self.requests:
            lines.append("  (connections arrived but no request: look at handshake_error / error above)")
        if not self.connections:
            lines.append("  (nothing reached the upstream: the traffic stopped at an earlier hop)")
        return "\n".join(lines)


class UpstreamClient:
    """Reads and resets the mock upstream's records over its control port.

    token: the run's control token (the stand-in's $MOCK_UPSTREAM_CONTROL_TOKEN), sent as a bearer
    token on every request. check_alive: called before each request and when one fails; it raises
    (ProcessExited) when the backend knows the stand-in has exited, so that is what a test reports
    instead of "unreachable"."""

    def __init__(
        self,
        base_url: str,
        transport: httpx.BaseTransport | None = None,
        timeout: float = 5.0,
        *,
        token: str | None = None,
        check_alive: Callable[[], None] | None = None,
    ):
        self.base_url = base_url.rstrip("/")
        self._check_alive = check_alive
        # trust_env=False: a proxy from the environment must never sit between us and the stand-in.
        self._http = httpx.Client(
            base_url=self.base_url,
            transport=transport,
            timeout=timeout,
            trust_env=False,
            headers={"Authorization": f"Bearer {token}"} if token else None,
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> UpstreamClient:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def _call(self, method: str, path: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        if self._check_alive is not None:
            self._check_alive()
        try:
            response = self._http.request(method, path, params=params)
        except httpx.HTTPError as exc:
            if self._check_alive is not None:
                self._check_alive()  # it died during the request
            raise HarnessError(
                f"mock upstream control API {self.base_url}{path} unreachable ({type(exc).__name__}: {exc}); "
                "is the mock upstream running and is its --control-port reachable from here?"
            ) from exc
        if response.status_code == 401:
            raise HarnessError(
                f"mock upstream control API {method} {path} refused the harness's token (401): "
                "the stand-in was started with another MOCK_UPSTREAM_CONTROL_TOKEN than its client has"
            )
        if response.status_code != 200:
            raise HarnessError(
                f"mock upstream control API {method} {path} answered {response.status_code}: {response.text.strip()}"
            )
        return response.json()

    def _list(self, path: str, since: int | None) -> tuple[int, list[dict[str, Any]]]:
        data = self._call("GET", path, {"since": since} if since is not None else None)
        return data["last_id"], data["records"]

    def healthz(self) -> dict[str, Any]:
        """{"ok": true, "pid", "ports": {...}, "last_id", "connections", "requests"}."""
        return self._call("GET", "/healthz")

    def ports(self) -> UpstreamPorts:
        return UpstreamPorts.from_json(self.healthz()["ports"])

    def mark(self) -> int:
        """The newest record id now; pass it as `since` to see only what happens after this call."""
        return self.healthz()["last_id"]

    def records(self, since: int | None = None) -> list[AnyRecord]:
        return [record_from_json(r) for r in self._list("/records", since)[1]]

    def connections(self, since: int | None = None) -> list[ConnectionRecord]:
        return [ConnectionRecord.from_json(r) for r in self._list("/connections", since)[1]]

    def requests(self, since: int | None = None) -> list[RequestRecord]:
        return [RequestRecord.from_json(r) for r in self._list("/requests", since)[1]]

    def reset(self) -> None:
        """Forget every record (ids keep growing, so earlier marks stay valid)."""
        self._call("POST", "/reset")

    def _seen(self, since: int | None) -> _Seen:
        records = self.records(since)
        return _Seen(
            connections=[r for r in records if isinstance(r, ConnectionRecord)],
            requests=[r for r in records if isinstance(r, RequestRecord)],
        )

    def wait_for_requests(self, n: int, since: int | None = None, timeout: float = 10.0) -> list[RequestRecord]:
        """Wait until at least n requests arrived after `since`; returns all of them, oldest first."""
        seen = poll(
            f"{n} request(s) at the mock upstream {self.base_url} after record id {since or 0}",
            lambda: self._seen(since),
            ok=lambda s: len(s.requests) >= n,
            timeout=timeout,
            describe=lambda s: s.describe(),
        )
        return seen.requests

    def wait_for_connections(
        self, n: int, since: int | None = None, timeout: float = 10.0, settled: bool = True
    ) -> list[ConnectionRecord]:
        """Wait until at least n connections arrived after `since` (and, if settled, each finished
        its handshake, successfully or not); returns all of them, oldest first."""
        seen = poll(
            f"{n} connection(s) at the mock upstream {self.base_url} after record id {since or 0}",
            lambda: self._seen(since),
            ok=lambda s: (
                len(s.connections) >= n and (not settled or all(c.state != "handshaking" for c in s.connections))
            ),
            timeout=timeout,
            describe=lambda s: s.describe(),
        )
        return seen.connections
