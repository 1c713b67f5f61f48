"""harness/sync.py: what the convergence wait reads in istiod's syncz and configz (parsing only:
tests/test_converge.py and the suites run it on a real mesh)."""

from __future__ import annotations

import pytest

from harness.errors import ConfigRejected
from harness.sync import (
    config_differs,
    config_key,
    expected_config,
    is_istio_config,
    is_mesh_config,
    pending_from_syncz,
    push_number,
    push_tail_unsent,
)

CDS = "type.googleapis.com/envoy.config.cluster.v3.Cluster"
LDS = "type.googleapis.com/envoy.config.listener.v3.Listener"
RDS = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration"
EDS = "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment"


def _nonce(push: int) -> str:
    """istiod's: the push version, then a UUID (what a real syncz holds; see test_converge.py)."""
    return f"2026-12-06T21:44:17Z/{push}" + "0b9f2c52-41a3-4c4e-9d0e-0c4a1f6f2d11"


def test_syncz_pending_and_rejected():
    ok = [
        {
            "proxy": "sleep.default",
            "resources": {"type.googleapis.com/envoy.config.cluster.v3.Cluster": {"sent": "a", "acked": "a"}},
        }
    ]
    assert pending_from_syncz(ok) == []
    busy = [{"proxy": "gw", "resources": {"t.Listener": {"sent": "b", "acked": "a"}}}]
    assert pending_from_syncz(busy) == ["gw Listener sent=b acked=a"]
    with pytest.raises(ConfigRejected, match="Envoy rejected Cluster"):
        pending_from_syncz([{"proxy": "gw", "resources": {"x.Cluster": {"last_error": "bad cert"}}}])


def test_istiod_must_hold_what_was_stored_before_the_marker():
    """The same name at an older resourceVersion (a previous test's object, deleted and created
    again) is still missing; a deleted object istiod still holds is still present."""
    vs = {
        "apiVersion": "networking.istio.io/v1",
        "kind": "VirtualService",
        "metadata": {"namespace": "default", "name": "cnn", "resourceVersion": "576"},
    }
    old_dr = {
        "apiVersion": "networking.istio.io/v1",
        "kind": "DestinationRule",
        "metadata": {"namespace": "default", "name": "old"},
    }
    want, gone = expected_config([vs], [old_dr, vs])
    VS, DR = "networking.istio.io/VirtualService", "networking.istio.io/DestinationRule"
    assert want == {(VS, "default", "cnn"): "576"}
    assert gone == {(DR, "default", "old")}  # re-applied objects are wanted, not gone
    stale = [dict(vs, metadata=dict(vs["metadata"], resourceVersion="540")), old_dr]
    assert config_differs(stale, want, gone) == ({(VS, "default", "cnn")}, gone)
    assert config_differs([vs], want, gone) == (set(), set())
    # istiod wrote the object's status since (a ServiceEntry's addresses): newer is as good.
    assert config_differs([dict(vs, metadata=dict(vs["metadata"], resourceVersion="590"))], want, gone) == (
        set(),
        set(),
    )
    # No resourceVersion known (an object the harness did not store itself): any version will do.
    assert config_differs(stale, {(VS, "default", "cnn"): None}, set()) == (set(), set())


def test_a_gateway_api_gateway_is_not_an_istio_gateway():
    """Same kind name, namespace and name; the group tells them apart in istiod's store."""
    istio = {
        "apiVersion": "networking.istio.io/v1",
        "kind": "Gateway",
        "metadata": {"namespace": "default", "name": "g"},
    }
    k8s = {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "Gateway",
        "metadata": {"namespace": "default", "name": "g"},
    }
    assert config_key(istio) != config_key(k8s)
    assert is_istio_config(istio) and not is_istio_config(k8s)
    assert is_mesh_config(k8s) and is_mesh_config(istio)
    assert not is_mesh_config({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}})


def test_push_number_reads_istiods_nonce():
    assert push_number(_nonce(7)) == 7
    assert push_number(_nonce(1234)) == 1234
    for other in (None, "", "a", "not-istio-but-long-enough-to-hold-a-uuid-0123456789"):
        assert push_number(other) is None, other


def test_a_push_whose_listeners_or_routes_were_not_sent_after_its_clusters_is_unsent():
    """The marker's push (clusters in push 9) is whole only where the listeners and routes were
    sent in push 9 or later; an unwatched type is not waited for, and an unknown nonce is unsent."""
    whole = {
        "proxy": "sleep.default",
        "resources": {
            CDS: {"sent": _nonce(9)},
            LDS: {"sent": _nonce(9)},
            RDS: {"sent": _nonce(10)},
            EDS: {"sent": _nonce(3)},
        },
    }
    assert push_tail_unsent([whole]) == []
    no_routes = {"proxy": "gw.istio-system", "resources": {CDS: {"sent": _nonce(9)}, LDS: {"sent": _nonce(9)}}}
    assert push_tail_unsent([no_routes]) == []
    in_flight = {"proxy": "gw.istio-system", "resources": {CDS: {"sent": _nonce(9)}, LDS: {"sent": _nonce(8)}, RDS: {}}}
    assert push_tail_unsent([whole, in_flight]) == [
        "gw.istio-system Listener sent in push 8, clusters in push 9",
        "gw.istio-system RouteConfiguration sent in push None, clusters in push 9",
    ]
    foreign = {"proxy": "x", "resources": {CDS: {"sent": "v1"}, LDS: {"sent": "v1"}}}
    assert push_tail_unsent([foreign]) == ["x Listener sent in push None, clusters in push None"]
