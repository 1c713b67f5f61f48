"""A client for one Envoy's admin API: stats, config_dump, certs, readiness.

An Istio proxy's admin API listens on localhost inside the pod's network namespace, so the caller
may hand in an httpx transport that reaches it there; everything goes through one httpx.Client.
The functions on parsed config_dump / certs JSON are separate so they work on saved dumps too.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, NamedTuple

import httpx

from harness.envoy_binary import parse_envoy_version
from harness.wait import WaitTimeout, poll

# RE2 metacharacters; Envoy's stats filter is RE2 and rejects escapes of ordinary characters.
_RE2_SPECIAL = set("\\.+*?()|[]{}^$")

# config_dump's top-level message for each resource type, as named in its "@type".
_DUMP_RESOURCE_TYPES = {
    "ListenersConfigDump": "listener",
    "ClustersConfigDump": "cluster",
    "RoutesConfigDump": "route",
    "ScopedRoutesConfigDump": "scoped_route",
    "SecretsConfigDump": "secret",
    "EndpointsConfigDump": "endpoint",
}

# Where config_dump keeps clusters in use: fields of a whole dump, message names of a ?resource= one.
_ACTIVE_CLUSTER_PLACES = ("static_clusters", "dynamic_active_clusters", "StaticCluster", "DynamicCluster")

_SIMILAR_STATS_SHOWN = 10


def stat_values(body: dict) -> dict[str, int]:
    """Envoy's `/stats?format=json` as {name: value}: counters and gauges; histograms (which come
    as {"histograms": ...}) and text readouts (string values) are left out."""
    values: dict[str, int] = {}
    for entry in body.get("stats", []):
        value = entry.get("value")
        if "name" in entry and isinstance(value, int) and not isinstance(value, bool):
            values[entry["name"]] = value
    return values


class EnvoyAdminError(RuntimeError):
    """The admin API could not be reached or answered with an error."""


class RejectedResource(NamedTuple):
    type: str  # "listener", "cluster", ...
    name: str
    details: str  # Envoy's reason, e.g. "error adding listener '0.0.0.0:8080': ..."


@dataclass(frozen=True)
class CertSans:
    """Subject alternative names of one certificate Envoy holds (a leaf of some cert_chain)."""

    path: str  # file path, or "<inline>" for certificates pushed over SDS or given inline
    serial_number: str
    uris: tuple[str, ...]
    dns: tuple[str, ...]


def exact_stat_regex(name: str) -> str:
    """An anchored RE2 matching exactly the stat `name`; Envoy's filter otherwise matches substrings.

    Istio cluster names are full of metacharacters: cluster.outbound|443||edition.cnn.com.upstream_cx_total
    """
    return "^" + _re2_escape(name) + "$"


def _re2_escape(text: str) -> str:
    return "".join("\\" + char if char in _RE2_SPECIAL else char for char in text)


class EnvoyAdmin:
    def __init__(self, base_url: str, *, transport: httpx.BaseTransport | None = None, timeout: float = 5.0):
        self.base_url = base_url.rstrip("/")
        # trust_env=False: the admin API is never behind an HTTP(S)_PROXY from the environment.
        self._client = httpx.Client(base_url=self.base_url, transport=transport, timeout=timeout, trust_env=False)

    def close(self) -> None:
        self._client.close()

    def get(self, path: str) -> httpx.Response:
        """GET an admin path as pilot-agent's `request GET` takes it ("stats?format=json")."""
        return self._client.get("/" + path.lstrip("/"))

    def __enter__(self) -> EnvoyAdmin:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"EnvoyAdmin({self.base_url!r})"

    # --- stats ---

    def stats(self, filter_regex: str = "") -> dict[str, int]:
        """Counters and gauges whose names contain a match of the RE2 `filter_regex` ("" for all);
        histograms and text readouts are left out."""
        params = {"format": "json"}
        if filter_regex:
            params["filter"] = filter_regex
        return stat_values(self._get_json("/stats", params))

    def counter(self, name: str) -> int:
        """The value of the stat `name`; 0 if Envoy has no such stat (yet)."""
        return self.stats(exact_stat_regex(name)).get(name, 0)

    def wait_for_counter(self, name: str, *, at_least: int, timeout: float = 10.0) -> int:
        """Poll until the stat `name` reaches `at_least`; return its value.

        On timeout the message names the stat, the expected and last values, and the stats with the
        same last name segment (failing that, the same prefix), since a wrong cluster or listener
        name is the usual cause.
        """
        try:
            found = poll(
                f"Envoy stat {name} >= {at_least} at {self.base_url}",
                lambda: self.stats(exact_stat_regex(name)),
                ok=lambda values: values.get(name, 0) >= at_least,
                timeout=timeout,
                describe=lambda values: str(values[name]) if name in values else "0 (no such stat)",
            )
        except WaitTimeout as exc:
            raise WaitTimeout(f"{exc}; {self._similar_stats(name)}") from None
        return found.get(name, 0)

    def update_rejected_counters(self) -> dict[str, int]:
        """Non-zero `*.update_rejected` stats: xDS updates Envoy refused (lds, cds, rds, ...).

        Envoy records error_state in config_dump for rejected listeners but not for rejected
        clusters, so this is the only place a refused CDS push shows.
        """
        return {name: value for name, value in self.stats(r"\.update_rejected$").items() if value}

    def _similar_stats(self, name: str) -> str:
        stem, _, suffix = name.rpartition(".")
        try:
            similar = self.stats(r"\." + _re2_escape(suffix) + "$") if suffix else {}
            what = f"stats ending in .{suffix}"
            if not similar and stem:
                similar = self.stats("^" + _re2_escape(stem + "."))
                what = f"stats starting with {stem}."
        except EnvoyAdminError as exc:
            return f"could not list similar stats: {exc}"
        if not similar:
            return f"no stat ends in .{suffix} or starts with {stem}."
        shown = sorted(similar.items())[:_SIMILAR_STATS_SHOWN]
        more = len(similar) - len(shown)
        listing = ", ".join(f"{key}={value}" for key, value in shown) + (f" (+{more} more)" if more > 0 else "")
        return f"{what}: {listing}"

    # --- config ---

    def config_dump(
        self,
        resource: str | None = None,
        *,
        mask: str | None = None,
        name_regex: str | None = None,
        include_eds: bool = False,
    ) -> dict:
        """/config_dump, whole or one `resource` ("dynamic_active_clusters"); `mask` is a field mask
        ("cluster.name"); `name_regex` is an RE2 that must match a resource's whole name, unlike the
        stats filter (exact_stat_regex escapes one). Nothing matching gives {}, with no "configs"."""
        params: dict[str, str] = {}
        if resource:
            params["resource"] = resource
        if mask:
            params["mask"] = mask
        if name_regex:
            params["name_regex"] = name_regex
        if include_eds:
            # Envoy checks only that the parameter is present: include_eds=false would include EDS too.
            params["include_eds"] = "true"
        return self._get_json("/config_dump", params)

    def active_listener_names(self) -> list[str]:
        return listener_names(self.config_dump())

    def active_cluster_names(self) -> list[str]:
        return cluster_names(self.config_dump())

    def rejected_resources(self) -> list[RejectedResource]:
        return rejected_resources(self.config_dump())

    def listeners(self) -> list[dict]:
        """/listeners: one {"name", "local_address", ...} per listener that is bound."""
        return self._get_json("/listeners", {"format": "json"}).get("listener_statuses", [])

    def listener_addresses(self) -> dict[str, tuple[str, int]]:
        """Listener name → the (ip, port) it is bound to; shows the real port of a port-0 listener."""
        addresses = {}
        for status in self.listeners():
            socket = status.get("local_address", {}).get("socket_address")
            if socket:
                addresses[status["name"]] = (socket["address"], int(socket.get("port_value", 0)))
        return addresses

    def clusters_json(self) -> dict:
        return self._get_json("/clusters", {"format": "json"})

    # --- certificates ---

    def certs(self) -> dict:
        return self._get_json("/certs")

    def cert_sans(self) -> list[CertSans]:
        return cert_sans(self.certs())

    # --- server ---

    def ready(self) -> bool:
        """True when /ready answers 200 LIVE; False when not yet, or not reachable."""
        try:
            response = self._get("/ready", check=False)
        except EnvoyAdminError:
            return False
        return _is_live(response)

    def wait_ready(self, timeout: float = 10.0) -> None:
        poll(
            f"Envoy at {self.base_url} to be ready (/ready → 200 LIVE)",
            lambda: self._get("/ready", check=False),
            ok=_is_live,
            timeout=timeout,
            describe=lambda response: f"HTTP {response.status_code} {response.text.strip()[:80]}",
        )

    def server_info(self) -> dict:
        return self._get_json("/server_info")

    def server_version(self) -> str:
        """The release Envoy reports ("1.38.3"), for comparing with the binary or Istio's pin."""
        reported = self.server_info().get("version", "")
        version = parse_envoy_version(reported)
        if version is None:
            raise EnvoyAdminError(f"{self.base_url}/server_info has no release number in version {reported!r}")
        return version

    # --- transport ---

    def _get(self, path: str, params: dict[str, str] | None = None, *, check: bool = True) -> httpx.Response:
        try:
            response = self._client.get(path, params=params)
        except httpx.HTTPError as exc:
            raise EnvoyAdminError(
                f"Envoy admin {self.base_url}{path} unreachable: {type(exc).__name__}: {exc}"
            ) from None
        if check and response.status_code != 200:
            raise EnvoyAdminError(
                f"Envoy admin {response.request.url} answered {response.status_code}: {response.text.strip()[:300]}"
            )
        return response

    def _get_json(self, path: str, params: dict[str, str] | None = None) -> Any:
        response = self._get(path, params)
        try:
            return response.json()
        except ValueError:
            raise EnvoyAdminError(
                f"Envoy admin {response.request.url} did not answer JSON: {response.text.strip()[:200]}"
            ) from None


def _is_live(response: httpx.Response) -> bool:
    return response.status_code == 200 and response.text.strip() == "LIVE"


# --- reading config_dump and /certs JSON ---


def _dump_entries(dump: dict) -> Iterator[tuple[str, str, dict]]:
    """(resource type, where, entry) for each resource entry of a config_dump.

    A whole dump nests entries in lists ("static_listeners", "dynamic_active_clusters", ...): `where`
    is that field. A `?resource=` dump lists the entries themselves: `where` is their message name
    ("DynamicListener").
    """
    for config in dump.get("configs", []):
        message = config.get("@type", "").rsplit("/", 1)[-1].split(".")
        if message[-1] in _DUMP_RESOURCE_TYPES:
            kind = _DUMP_RESOURCE_TYPES[message[-1]]
            for where, entries in config.items():
                if isinstance(entries, list):
                    for entry in entries:
                        if isinstance(entry, dict):
                            yield kind, where, entry
        elif len(message) >= 2 and message[-2] in _DUMP_RESOURCE_TYPES:
            yield _DUMP_RESOURCE_TYPES[message[-2]], message[-1], config


def listener_names(dump: dict) -> list[str]:
    """Listeners Envoy is serving: static ones and dynamic ones with an active_state (not warming)."""
    names = []
    for kind, _where, entry in _dump_entries(dump):
        if kind != "listener":
            continue
        if "listener" in entry:  # static_listeners / StaticListener
            names.append(entry["listener"].get("name", ""))
        elif "active_state" in entry:
            names.append(entry.get("name") or entry["active_state"].get("listener", {}).get("name", ""))
    return names


def cluster_names(dump: dict) -> list[str]:
    """Clusters Envoy is using: static and dynamic active ones (warming clusters are left out)."""
    names = []
    for kind, where, entry in _dump_entries(dump):
        if kind == "cluster" and where in _ACTIVE_CLUSTER_PLACES:
            names.append(entry.get("cluster", {}).get("name", ""))
    return names


def rejected_resources(dump: dict) -> list[RejectedResource]:
    """Resources whose last update Envoy refused, from the error_state entries of a config_dump.

    Envoy may list one rejection twice (with and without the resource name); it is reported once.
    """
    found: list[RejectedResource] = []
    for kind, _where, entry in _dump_entries(dump):
        error = entry.get("error_state")
        if not isinstance(error, dict):
            continue
        failed = error.get("failed_configuration", {})
        name = entry.get("name") or failed.get("name") or failed.get("cluster_name") or "<unnamed>"
        rejected = RejectedResource(kind, name, error.get("details", ""))
        if rejected not in found:
            found.append(rejected)
    return found


def cert_sans(certs: dict) -> list[CertSans]:
    """SANs of every certificate in the cert chains of /certs (CA certificates are left out)."""
    result = []
    for certificate in certs.get("certificates", []):
        for cert in certificate.get("cert_chain", []) or []:
            sans = cert.get("subject_alt_names", []) or []
            result.append(
                CertSans(
                    path=cert.get("path", ""),
                    serial_number=cert.get("serial_number", ""),
                    uris=tuple(san["uri"] for san in sans if "uri" in san),
                    dns=tuple(san["dns"] for san in sans if "dns" in san),
                )
            )
    return result
