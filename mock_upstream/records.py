"""What the stand-in saw: connection and request records, kept in memory, served as JSON.

Every record is a flat JSON object with an `id` and a `kind`. Ids come from one counter shared by
both kinds, start at 1, only grow, and are never reused, not even after POST /reset; so "everything
after id N" is a stable question and a suite can take a mark before it sends traffic.

Times are Unix epoch seconds (float, microseconds). Addresses are strings as the socket reports
them ("127.0.0.1", "::1"); ports are ints.

Connection record (`kind: "connection"`), added when the TCP connection is accepted and updated
as it goes (a record's fields can change after it was first served; its id does not):

    id, kind               int, "connection"
    listener               "http" | "https" | "mtls" | "tcp": what the listener speaks; an extra
                           listener (--port PROTO:PORT) has its PROTO's name, so local_port is
                           what tells two listeners of one name apart
    state                  "handshaking" (TLS not done yet) | "open" | "closed" | "failed"
                           (failed: the TLS handshake did not complete)
    opened_at, closed_at   float, float | null
    peer_address, peer_port, local_address, local_port
    tls                    bool: this listener speaks TLS
    sni                    str | null: server name the client sent
    alpn                   str | null: protocol negotiated by ALPN
    alpn_offered           [str] | null: protocols the client offered, read from its ClientHello
                           (null: no TLS, or the ClientHello could not be read; [] none offered)
    tls_version, cipher    str | null, e.g. "TLSv1.3", "TLS_AES_256_GCM_SHA384"
    client_cert_subject    str | null, attributes in certificate order, e.g. "O=acme,CN=gw"
    client_cert_issuer     str | null
    client_cert_dns_sans   [str]
    client_cert_uri_sans   [str], e.g. ["spiffe://cluster.local/ns/istio-system/sa/egress"]
    handshake_error        str | null: why the TLS handshake failed
    error                  str | null: a protocol error after the handshake (TLS bytes on the
                           plain listener, an HTTP/2 preface, a malformed request)
    requests               int: requests served on this connection so far
    bytes_received         int, tcp listeners only: bytes read (and echoed back) so far

Only the mTLS listeners ask for a client certificate, so client_cert_* stay empty elsewhere. A tcp
connection has no TLS and no requests: its record is opened, counts bytes and is closed.

Request record (`kind: "request"`), added once the request is read and its response chosen, before
the response is written, so a client that has its response can always find the record:

    id, kind               int, "request"
    connection_id          int: the connection record this request came on
    seq                    int: 1 for the first request on its connection, 2 for the next, ...
    listener, peer_address, peer_port, local_address, local_port, tls, sni, alpn, tls_version,
    client_cert_subject, client_cert_dns_sans, client_cert_uri_sans
                           copied from the connection, so one record answers most questions
    method                 str, e.g. "GET"
    path                   str: the request target exactly as sent (with query, or absolute-form)
    host                   str | null: the Host header
    http_version           str, e.g. "HTTP/1.1"
    headers                [[name, value], ...]: every header in the order received, names as sent
    body_bytes             int: request body length
    status                 int: response status
    response_bytes         int: response body length
    received_at            float: when the request line arrived
    responded_at           float | null: when the response was written (null until then)
"""

from __future__ import annotations

import threading
import time
from typing import Any

Record = dict  # a JSON-ready dict; see the module docstring for its fields


def now() -> float:
    return round(time.time(), 6)


class RecordStore:
    """Thread-safe, append-only (until reset) list of records in id order."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._records: list[Record] = []
        self._last_id = 0

    def add(self, record: Record) -> int:
        """Give the record the next id and store it; returns the id."""
        with self._lock:
            self._last_id += 1
            record["id"] = self._last_id
            self._records.append(record)
            return self._last_id

    def update(self, record: Record, **fields: Any) -> None:
        # Under the lock so a snapshot never sees half an update.
        with self._lock:
            record.update(fields)

    def snapshot(self, kind: str | None = None, since: int = 0) -> tuple[int, list[Record]]:
        """(last id handed out, copies of the records with id > since, optionally of one kind)."""
        with self._lock:
            picked = [dict(r) for r in self._records if r["id"] > since and (kind is None or r["kind"] == kind)]
            return self._last_id, picked

    def counts(self) -> tuple[int, int, int]:
        """(last id, connection records, request records)."""
        with self._lock:
            connections = sum(1 for r in self._records if r["kind"] == "connection")
            return self._last_id, connections, len(self._records) - connections

    def reset(self) -> int:
        """Forget every record; ids go on from where they were. Returns the last id."""
        with self._lock:
            self._records.clear()
            return self._last_id
