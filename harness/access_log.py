"""Envoy access-log entries in the JSON shape of harness.meshconfig.ACCESS_LOG_FIELDS."""

from __future__ import annotations

import json
from dataclasses import dataclass


def _dash_to_none(value):
    return None if value in ("-", "", None) else value


@dataclass(frozen=True)
class AccessLogEntry:
    raw: dict

    def get(self, key: str):
        return _dash_to_none(self.raw.get(key))

    @property
    def method(self) -> str | None:
        return self.get("method")

    @property
    def path(self) -> str | None:
        return self.get("path")

    @property
    def status(self) -> int | None:
        code = self.raw.get("response_code")
        if code is None or code in ("-", 0, "0"):
            return None
        return int(code)

    @property
    def authority(self) -> str | None:
        return self.get("authority")

    @property
    def upstream_cluster(self) -> str | None:
        return self.get("upstream_cluster")

    @property
    def sni(self) -> str | None:
        return self.get("requested_server_name")

    @property
    def is_tcp(self) -> bool:
        """A TCP proxy line: no method and no path, like Istio's `"- - -"` lines."""
        return self.method is None and self.path is None

    def summary(self) -> str:
        r = self.raw
        return (
            f'"{r.get("method")} {r.get("path")} {r.get("protocol")}" {r.get("response_code")} '
            f"{r.get('response_flags')} authority={r.get('authority')} sni={r.get('requested_server_name')} "
            f"cluster={r.get('upstream_cluster')} upstream={r.get('upstream_host')} "
            f"down_tls={r.get('downstream_tls_version')} down_peer={r.get('downstream_peer_uri_san')} "
            f"up_tls={r.get('upstream_tls_version')} up_peer={r.get('upstream_peer_uri_san')}"
        )


def parse_lines(lines: list[str]) -> list[AccessLogEntry]:
    entries = []
    for line in lines:
        line = line.strip()
        if not line.startswith("{"):
            continue
        try:
            entries.append(AccessLogEntry(json.loads(line)))
        except ValueError:
            continue
    return entries
