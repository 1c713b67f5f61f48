"""The control API (plain HTTP, JSON) that suites use to read what the stand-in saw.

    GET  /healthz                {"ok": true, "pid": 123, "ports": {"http": 80, "https": 443,
                                  "mtls": 8443 | null, "control": 9901,
                                  "extra": [{"proto": "tcp", "port": 9000}, ...]},
                                  "last_id": 42, "connections": 3, "requests": 5}
    GET  /records[?since=N]      {"last_id": 42, "records": [<connection or request record>, ...]}
    GET  /connections[?since=N]  {"last_id": 42, "records": [<connection record>, ...]}
    GET  /requests[?since=N]     {"last_id": 42, "records": [<request record>, ...]}
    POST /reset                  {"ok": true, "last_id": 42}

Lists hold records with id > since (all without since), oldest first. `last_id` is the newest id
handed out when the list was taken: pass it as the next `since` to see only what came after.
Record fields are described in mock_upstream.records. Errors answer {"error": "..."} with 4xx.

With a token ($MOCK_UPSTREAM_CONTROL_TOKEN, which the harness sets to a random one per run),
every request must carry `Authorization: Bearer <token>`, or it is answered 401 and does nothing:
a pod that reaches the control port cannot reset or read the records a test is about to read.
"""

from __future__ import annotations

import hashlib
import os
from urllib.parse import parse_qs

from .http1 import Request, Response
from .jsonout import dumps
from .records import RecordStore
from .routes import origin_path

JSON = "application/json"

_LISTS = {"/records": None, "/connections": "connection", "/requests": "request"}


def _json(status: int, value: object) -> Response:
    return Response(status, (dumps(value) + "\n").encode("ascii"), JSON)


TOKEN_ENV = "MOCK_UPSTREAM_CONTROL_TOKEN"


def _digest(text: str) -> bytes:
    # Compared as digests: the time a mismatch takes says nothing about the token (python3-minimal
    # has no hmac.compare_digest).
    return hashlib.sha256(text.encode("utf-8", "replace")).digest()


def authorized(request: Request, token: str | None) -> bool:
    if not token:
        return True
    given = request.header("authorization") or ""
    scheme, _, value = given.partition(" ")
    return scheme.lower() == "bearer" and _digest(value.strip()) == _digest(token)


def handle(request: Request, store: RecordStore, ports: dict, token: str | None = None) -> Response:
    if not authorized(request, token):
        return _json(401, {"error": "the control API needs the run's token: Authorization: Bearer <token>"})
    path, _, query = origin_path(request.target).partition("?")
    params = parse_qs(query)
    if path in _LISTS:
        if request.method != "GET":
            return _json(405, {"error": f"{path} takes GET"})
        since_values = params.get("since", ["0"])
        try:
            since = int(since_values[-1])
        except ValueError:
            return _json(400, {"error": f"since must be an integer record id, got {since_values[-1]!r}"})
        last_id, records = store.snapshot(_LISTS[path], since)
        return _json(200, {"last_id": last_id, "records": records})
    if path == "/reset":
        if request.method != "POST":
            return _json(405, {"error": "/reset takes POST"})
        return _json(200, {"ok": True, "last_id": store.reset()})
    if path == "/healthz":
        last_id, connections, requests = store.counts()
        return _json(
            200,
            {
                "ok": True,
                "pid": os.getpid(),
                "ports": ports,
                "last_id": last_id,
                "connections": connections,
                "requests": requests,
            },
        )
    return _json(
        404, {"error": f"no such endpoint {path}; see GET /healthz, /records, /connections, /requests, POST /reset"}
    )
