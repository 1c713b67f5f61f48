"""harness/local/kube_api.py: the minimal Kubernetes API server istiod talks to, served on a real
listening socket on 127.0.0.1 and spoken to over HTTP with httpx."""

from __future__ import annotations

import json
import socket
import time
from dataclasses import dataclass

import httpx
import pytest

from harness.local.kube_api import K8S_VERSION, KubeApiServer

CM_PATH = "/api/v1/namespaces/default/configmaps"


@dataclass
class Api:
    server: KubeApiServer
    http: httpx.Client


@pytest.fixture
def api():
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    server = KubeApiServer(sock)
    server.start()
    host, port = server.address
    http = httpx.Client(base_url=f"http://{host}:{port}", trust_env=False, timeout=5)
    try:
        yield Api(server, http)
    finally:
        http.close()
        server.stop()  # idempotent enough for tests that stop it themselves
        sock.close()


def _watch_events(response: httpx.Response, n: int) -> list[dict]:
    """The first n events of a watch stream (one JSON object per line)."""
    events = []
    for line in response.iter_lines():
        if line.strip():
            events.append(json.loads(line))
            if len(events) == n:
                break
    return events


# --- discovery ----------------------------------------------------------------------------------


def test_address_is_the_socket_it_was_given(api: Api):
    host, port = api.server.address
    assert host == "127.0.0.1" and port > 0
    config = json.loads(api.server.kubeconfig())
    assert config["clusters"][0]["cluster"]["server"] == f"http://127.0.0.1:{port}"
    assert config["current-context"] == "local"


def test_version_and_discovery(api: Api):
    version = api.http.get("/version")
    assert version.status_code == 200 and version.headers["content-type"] == "application/json"
    assert version.json() == K8S_VERSION

    core = api.http.get("/api").json()
    assert core["kind"] == "APIVersions" and core["versions"] == ["v1"]

    groups = api.http.get("/apis").json()
    assert groups["kind"] == "APIGroupList"
    by_name = {g["name"]: g for g in groups["groups"]}
    assert {"apps", "discovery.k8s.io", "networking.k8s.io", "admissionregistration.k8s.io"} <= set(by_name)
    assert by_name["networking.k8s.io"]["preferredVersion"] == {"groupVersion": "networking.k8s.io/v1", "version": "v1"}

    resources = api.http.get("/api/v1").json()
    assert resources["kind"] == "APIResourceList" and resources["groupVersion"] == "v1"
    by_resource = {r["name"]: r for r in resources["resources"]}
    assert by_resource["namespaces"]["namespaced"] is False and by_resource["namespaces"]["kind"] == "Namespace"
    assert by_resource["pods"]["namespaced"] is True and "watch" in by_resource["pods"]["verbs"]

    slices = api.http.get("/apis/discovery.k8s.io/v1").json()
    assert [r["kind"] for r in slices["resources"]] == ["EndpointSlice"]


def test_unknown_path_is_a_404_status(api: Api):
    response = api.http.get("/nope")
    assert response.status_code == 404
    assert response.json()["kind"] == "Status" and response.json()["reason"] == "NotFound"


# --- namespaces ---------------------------------------------------------------------------------


def test_namespace_list_get_and_relabel(api: Api):
    empty = api.http.get("/api/v1/namespaces").json()
    assert empty["kind"] == "NamespaceList" and empty["apiVersion"] == "v1"
    assert empty["items"] == [] and empty["metadata"]["resourceVersion"].isdigit()

    api.server.set_namespace("test-egress", {"kube-system": "false"})
    api.server.set_namespace("istio-system", {"istio": "system"})
    listed = api.http.get("/api/v1/namespaces").json()
    assert [ns["metadata"]["name"] for ns in listed["items"]] == ["istio-system", "test-egress"]
    assert int(listed["metadata"]["resourceVersion"]) > int(empty["metadata"]["resourceVersion"])

    got = api.http.get("/api/v1/namespaces/istio-system")
    assert got.status_code == 200
    ns = got.json()
    assert (ns["apiVersion"], ns["kind"]) == ("v1", "Namespace")
    assert ns["metadata"]["labels"] == {"istio": "system"}
    assert ns["status"] == {"phase": "Active"}
    uid, rv = ns["metadata"]["uid"], int(ns["metadata"]["resourceVersion"])

    api.server.set_namespace("istio-system", {"istio": "system", "extra": "yes"})
    again = api.http.get("/api/v1/namespaces/istio-system").json()
    assert again["metadata"]["labels"] == {"istio": "system", "extra": "yes"}
    assert again["metadata"]["uid"] == uid  # the same object, updated
    assert int(again["metadata"]["resourceVersion"]) > rv

    missing = api.http.get("/api/v1/namespaces/nope")
    assert missing.status_code == 404 and missing.json()["message"] == 'namespaces "nope" not found'


def test_watch_streams_added_modified_and_deleted(api: Api):
    api.server.set_namespace("before", {})  # exists before the watch: not replayed
    with api.http.stream("GET", "/api/v1/namespaces", params={"watch": "1", "timeoutSeconds": "2"}) as response:
        # Headers arrive once the server has registered the watch, so changes from here on are seen.
        assert response.status_code == 200
        assert response.headers.get("transfer-encoding") == "chunked"
        api.server.set_namespace("test-egress", {})
        api.server.set_namespace("test-egress", {"istio-injection": "enabled"})
        assert api.http.delete("/api/v1/namespaces/test-egress").status_code == 200
        events = _watch_events(response, 3)
    assert [e["type"] for e in events] == ["ADDED", "MODIFIED", "DELETED"]
    assert {e["object"]["metadata"]["name"] for e in events} == {"test-egress"}
    assert events[1]["object"]["metadata"]["labels"] == {"istio-injection": "enabled"}
    versions = [int(e["object"]["metadata"]["resourceVersion"]) for e in events]
    assert versions == sorted(versions) and len(set(versions)) == 3


def test_watch_ends_at_its_timeout(api: Api):
    started = time.monotonic()
    with api.http.stream("GET", "/api/v1/namespaces", params={"watch": "true", "timeoutSeconds": "1"}) as response:
        body = response.read()
    elapsed = time.monotonic() - started
    assert body == b"" and 0.9 <= elapsed < 3, elapsed


def test_namespaced_watch_sees_only_its_namespace(api: Api):
    with api.http.stream("GET", CM_PATH, params={"watch": "1", "timeoutSeconds": "2"}) as response:
        assert api.http.post("/api/v1/namespaces/other/configmaps",
                             json={"metadata": {"name": "elsewhere"}}).status_code == 201
        assert api.http.post(CM_PATH, json={"metadata": {"name": "here"}}).status_code == 201
        [event] = _watch_events(response, 1)
    assert event["type"] == "ADDED" and event["object"]["metadata"] == {**event["object"]["metadata"],
                                                                      "name": "here", "namespace": "default"}


# --- writes -------------------------------------------------------------------------------------


def test_create_conflict_replace_patch_delete(api: Api):
    created = api.http.post(CM_PATH, json={"metadata": {"name": "cfg"}, "data": {"a": "1", "b": "2"}})
    assert created.status_code == 201
    obj = created.json()
    assert (obj["apiVersion"], obj["kind"]) == ("v1", "ConfigMap")
    assert obj["metadata"]["namespace"] == "default" and obj["metadata"]["uid"]
    rv = int(obj["metadata"]["resourceVersion"])

    duplicate = api.http.post(CM_PATH, json={"metadata": {"name": "cfg"}, "data": {}})
    assert duplicate.status_code == 409
    assert duplicate.json()["reason"] == "AlreadyExists" and duplicate.json()["code"] == 409
    assert api.http.get(f"{CM_PATH}/cfg").json()["data"] == {"a": "1", "b": "2"}  # untouched

    replaced = api.http.put(f"{CM_PATH}/cfg", json={"metadata": {"name": "cfg"}, "data": {"c": "3"}})
    assert replaced.status_code == 200
    assert replaced.json()["data"] == {"c": "3"}  # a replace, not a merge
    assert replaced.json()["metadata"]["uid"] == obj["metadata"]["uid"]
    assert int(replaced.json()["metadata"]["resourceVersion"]) > rv

    patched = api.http.patch(
        f"{CM_PATH}/cfg", content=json.dumps({"data": {"c": None, "d": "4"}, "metadata": {"labels": {"x": "y"}}}),
        headers={"Content-Type": "application/merge-patch+json"},
    )
    assert patched.status_code == 200
    assert patched.json()["data"] == {"d": "4"}  # null removes a key, others merge in
    assert patched.json()["metadata"]["labels"] == {"x": "y"}
    assert api.http.get(f"{CM_PATH}/cfg").json()["data"] == {"d": "4"}

    listed = api.http.get(CM_PATH).json()
    assert listed["kind"] == "ConfigMapList" and [o["metadata"]["name"] for o in listed["items"]] == ["cfg"]

    deleted = api.http.delete(f"{CM_PATH}/cfg")
    assert deleted.status_code == 200 and deleted.json()["metadata"]["name"] == "cfg"
    gone = api.http.get(f"{CM_PATH}/cfg")
    assert gone.status_code == 404 and gone.json()["reason"] == "NotFound"
    assert api.http.delete(f"{CM_PATH}/cfg").status_code == 404
    assert api.http.get(CM_PATH).json()["items"] == []


def test_patch_and_put_of_a_missing_object(api: Api):
    missing = api.http.patch(f"{CM_PATH}/nope", content=b'{"data": {}}',
                             headers={"Content-Type": "application/merge-patch+json"})
    assert missing.status_code == 404
    assert api.http.delete(CM_PATH).status_code == 405  # no collection delete


def test_group_resources_get_their_kind(api: Api):
    path = "/apis/networking.k8s.io/v1/namespaces/test-egress/networkpolicies"
    created = api.http.post(path, json={"metadata": {"name": "p"}, "spec": {"podSelector": {}}})
    assert created.status_code == 201
    assert (created.json()["apiVersion"], created.json()["kind"]) == ("networking.k8s.io/v1", "NetworkPolicy")
    assert api.http.get(path).json()["kind"] == "NetworkPolicyList"


# --- stopping -----------------------------------------------------------------------------------


def test_stop_ends_open_watches_promptly(api: Api):
    with api.http.stream("GET", "/api/v1/namespaces", params={"watch": "1", "timeoutSeconds": "60"}) as response:
        assert response.status_code == 200
        started = time.monotonic()
        api.server.stop()
        stopped = time.monotonic() - started
        body = response.read()  # the stream ends (terminating chunk) instead of running for 60 s
        ended = time.monotonic() - started
    assert body == b""
    assert stopped < 1.5 and ended < 2, (stopped, ended)
    # And the server no longer answers.
    with pytest.raises(httpx.TransportError):
        api.http.get("/version")


def test_watch_from_a_resource_version_replays_what_came_after():
    """client-go LISTs, then WATCHes from the list's resourceVersion: a change in between must
    still arrive."""
    from harness.local.kube_api import KubeStore

    store = KubeStore()
    store.put("v1", "namespaces", {"metadata": {"name": "a"}})
    listed_at = int(store.resource_version())
    store.put("v1", "namespaces", {"metadata": {"name": "b", "labels": {"x": "1"}}})
    w = store.watch("v1", "namespaces", None, since=listed_at)
    event = w.events.get(timeout=1)
    assert event["type"] == "ADDED" and event["object"]["metadata"]["name"] == "b"
    assert w.events.empty()
    store.close()
