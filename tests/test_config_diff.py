"""The semantic config diff (harness/config_diff.py) on dumps shaped like Envoy's /config_dump.

The dumps are built here (a unit test of parsing logic), with the structure and the fields a real
Istio gateway's dump has; the upgrade run diffs real dumps (harness/upgrade/).
"""

from __future__ import annotations

import copy
import json

from harness import config_diff as cd

TLS_CTX = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext"
HCM = "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"


def gateway_dump() -> dict:
    cluster = {
        "@type": "type.googleapis.com/envoy.config.cluster.v3.Cluster",
        "name": "outbound|443||edition.cnn.com",
        "type": "STRICT_DNS",
        "transport_socket": {
            "name": "envoy.transport_sockets.tls",
            "typed_config": {
                "@type": TLS_CTX,
                "sni": "edition.cnn.com",
                "common_tls_context": {
                    "validation_context": {
                        "match_subject_alt_names": [{"exact": "edition.cnn.com"}, {"exact": "*.cnn.com"}]
                    }
                },
            },
        },
        "metadata": {
            "filter_metadata": {
                "istio": {
                    "config": "/apis/networking.istio.io/v1/namespaces/istio-system/destination-rule/originate-tls-for-edition-cnn-com"
                }
            }
        },
    }
    other = {
        "@type": "type.googleapis.com/envoy.config.cluster.v3.Cluster",
        "name": "BlackHoleCluster",
        "type": "STATIC",
    }
    route = {
        "@type": "type.googleapis.com/envoy.config.route.v3.RouteConfiguration",
        "name": "http.8080",
        "virtual_hosts": [
            {
                "name": "edition.cnn.com:80",
                "domains": ["edition.cnn.com", "edition.cnn.com:*"],
                "routes": [
                    {
                        "name": "cnn",
                        "match": {"prefix": "/"},
                        "route": {"cluster": "outbound|443||edition.cnn.com"},
                        "request_headers_to_add": [{"header": {"key": "x-egress-via", "value": "istio-egressgateway"}}],
                    }
                ],
            },
            {
                "name": "blackhole:80",
                "domains": ["*"],
                "routes": [{"name": "block_all", "match": {"prefix": "/"}, "direct_response": {"status": 502}}],
            },
        ],
    }
    listener = {
        "@type": "type.googleapis.com/envoy.config.listener.v3.Listener",
        "name": "0.0.0.0_8080",
        "address": {"socket_address": {"address": "0.0.0.0", "port_value": 8080}},
        "filter_chains": [
            {
                "filters": [
                    {
                        "name": "envoy.filters.network.http_connection_manager",
                        "typed_config": {
                            "@type": HCM,
                            "stat_prefix": "outbound_0.0.0.0_8080",
                            "rds": {"route_config_name": "http.8080", "config_source": {"ads": {}}},
                            "http_filters": [{"name": "istio.stats"}, {"name": "envoy.filters.http.router"}],
                        },
                    }
                ]
            }
        ],
    }
    unrelated_listener = {
        "@type": "type.googleapis.com/envoy.config.listener.v3.Listener",
        "name": "0.0.0.0_15090",
        "address": {"socket_address": {"address": "0.0.0.0", "port_value": 15090}},
    }
    return {
        "configs": [
            {
                "@type": "type.googleapis.com/envoy.admin.v3.BootstrapConfigDump",
                "bootstrap": {"node": {"id": "router~x"}},
            },
            {
                "@type": "type.googleapis.com/envoy.admin.v3.ClustersConfigDump",
                "version_info": "2026-11-28T22:00:00Z/7",
                "dynamic_active_clusters": [
                    {
                        "version_info": "2026-11-28T22:00:00Z/7",
                        "cluster": cluster,
                        "last_updated": "2026-11-28T22:00:01.123Z",
                    },
                    {
                        "version_info": "2026-11-28T22:00:00Z/7",
                        "cluster": other,
                        "last_updated": "2026-11-28T22:00:01.123Z",
                    },
                ],
            },
            {
                "@type": "type.googleapis.com/envoy.admin.v3.ListenersConfigDump",
                "version_info": "2026-11-28T22:00:00Z/7",
                "dynamic_listeners": [
                    {
                        "name": "0.0.0.0_8080",
                        "active_state": {
                            "version_info": "x/7",
                            "listener": listener,
                            "last_updated": "2026-11-28T22:00:01Z",
                        },
                    },
                    {"name": "0.0.0.0_15090", "active_state": {"listener": unrelated_listener}},
                ],
            },
            {
                "@type": "type.googleapis.com/envoy.admin.v3.RoutesConfigDump",
                "dynamic_route_configs": [
                    {"version_info": "x/7", "route_config": route, "last_updated": "2026-11-28T22:00:01Z"}
                ],
            },
            {
                "@type": "type.googleapis.com/envoy.admin.v3.SecretsConfigDump",
                "dynamic_active_secrets": [
                    {
                        "name": "file-root:/etc/egress-trust/public-ca.pem",
                        "version_info": "abc",
                        "last_updated": "2026-11-28T22:00:01Z",
                        "secret": {
                            "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret",
                            "name": "file-root:/etc/egress-trust/public-ca.pem",
                            "validation_context": {"trusted_ca": {"inline_bytes": "LS0tLS1CRUdJTi" * 20}},
                        },
                    }
                ],
            },
        ]
    }


def _cluster(dump: dict) -> dict:
    return dump["configs"][1]["dynamic_active_clusters"][0]["cluster"]


def _route(dump: dict) -> dict:
    return dump["configs"][3]["dynamic_route_configs"][0]["route_config"]


def test_identical_dumps_give_no_changes():
    assert cd.diff_dumps(gateway_dump(), gateway_dump()) == []


def test_bookkeeping_only_changes_give_no_changes():
    b = gateway_dump()
    for config in b["configs"]:
        if "version_info" in config:
            config["version_info"] = "2026-11-29T01:02:03Z/99"
    b["configs"][1]["dynamic_active_clusters"][0]["last_updated"] = "2026-11-29T01:02:04Z"
    b["configs"][4]["dynamic_active_secrets"][0]["secret"]["validation_context"]["trusted_ca"]["inline_bytes"] = (
        "Zm9v" * 40
    )
    assert cd.diff_dumps(gateway_dump(), b) == []


def test_reordered_lists_give_no_changes():
    b = gateway_dump()
    _route(b)["virtual_hosts"].reverse()
    _route(b)["virtual_hosts"][1]["domains"].reverse()
    names = _cluster(b)["transport_socket"]["typed_config"]["common_tls_context"]["validation_context"][
        "match_subject_alt_names"
    ]
    names.reverse()
    b["configs"][1]["dynamic_active_clusters"].reverse()
    b["configs"][2]["dynamic_listeners"].reverse()
    b["configs"].reverse()
    assert cd.diff_dumps(gateway_dump(), b) == []


def test_sni_removed_is_exactly_one_line():
    b = gateway_dump()
    del _cluster(b)["transport_socket"]["typed_config"]["sni"]
    changes = cd.diff_dumps(gateway_dump(), b, proxy="gateway")
    assert [c.line() for c in changes] == [
        "gateway cluster outbound|443||edition.cnn.com: transport_socket.sni edition.cnn.com → (unset)"
    ]


def test_route_header_change_is_exactly_that_change():
    b = gateway_dump()
    _route(b)["virtual_hosts"][0]["routes"][0]["request_headers_to_add"][0]["header"]["value"] = "someone-else"
    changes = cd.diff_dumps(gateway_dump(), b)
    assert len(changes) == 1
    c = changes[0]
    assert (c.kind, c.name) == ("route", "http.8080")
    assert c.path.startswith("virtual_hosts.edition.cnn.com:80.routes.cnn.request_headers_to_add")
    assert (c.before, c.after) == ("istio-egressgateway", "someone-else")


def test_cluster_tls_mode_change_is_exactly_that_change():
    """The DestinationRule's tls.mode SIMPLE → DISABLE: the cluster loses its TLS transport socket."""
    b = gateway_dump()
    del _cluster(b)["transport_socket"]
    changes = cd.diff_dumps(gateway_dump(), b)
    assert [(c.kind, c.name, c.path, c.after) for c in changes] == [
        ("cluster", "outbound|443||edition.cnn.com", "transport_socket", cd._UNSET)
    ]
    assert "transport_socket {" in changes[0].line() and changes[0].line().endswith("→ (unset)")


def test_http_filter_inserted_is_one_order_line_and_one_filter():
    b = gateway_dump()
    hcm = b["configs"][2]["dynamic_listeners"][0]["active_state"]["listener"]["filter_chains"][0]["filters"][0][
        "typed_config"
    ]
    hcm["http_filters"].insert(0, {"name": "envoy.filters.http.fault"})
    paths = sorted(c.path for c in cd.diff_dumps(gateway_dump(), b))
    assert len(paths) == 2, paths
    assert paths[0].endswith("http_filters._order") and paths[1].endswith("http_filters.envoy.filters.http.fault")


def test_only_egress_resources_are_compared():
    b = gateway_dump()
    b["configs"][1]["dynamic_active_clusters"][1]["cluster"]["type"] = "EDS"  # BlackHoleCluster: not an egress path
    b["configs"][2]["dynamic_listeners"][1]["active_state"]["listener"]["address"]["socket_address"]["port_value"] = 1
    assert cd.diff_dumps(gateway_dump(), b) == []
    assert len(cd.diff_dumps(gateway_dump(), b, everything=True)) == 2


def test_listener_found_through_its_route_and_removed_resources_named():
    view = cd.egress_view(gateway_dump())
    assert set(view["listener"]) == {"0.0.0.0_8080"}  # mentions no host, serves route http.8080
    b = gateway_dump()
    b["configs"][3]["dynamic_route_configs"] = []
    lines = [c.line() for c in cd.diff_dumps(gateway_dump(), b)]
    assert "route http.8080: (present) → (unset)" in lines
    assert "listener 0.0.0.0_8080: (present) → (unset)" in lines


def test_nack_shows_as_error_state():
    b = gateway_dump()
    b["configs"][1]["dynamic_active_clusters"][0]["error_state"] = {
        "details": "Proto constraint validation failed",
        "last_update_attempt": "2026-11-28T22:00:02Z",
    }
    [c] = cd.diff_dumps(gateway_dump(), b)
    assert c.path == "error_state" and c.after == {"details": "Proto constraint validation failed"}


def test_stat_suffix_change_is_shown():
    a = {"cluster.outbound|443||edition.cnn.com.upstream_cx_total": 3, "server.live": 1}
    b = {"cluster.outbound|443||edition.cnn.com;.upstream_cx_total": 3, "server.live": 1}
    lines = [c.line() for c in cd.diff_stats(a, b, proxy="gateway")]
    assert lines == [
        "gateway stat cluster.outbound|443||edition.cnn.com.upstream_cx_total: (present) → (unset)",
        "gateway stat cluster.outbound|443||edition.cnn.com;.upstream_cx_total: (unset) → (present)",
    ]
    assert cd.diff_stats(a, dict(a)) == []


def test_cli_on_folders(tmp_path, capsys):
    for side, dump in (("a", gateway_dump()), ("b", gateway_dump())):
        d = tmp_path / side / "istio-system.istio-egressgateway"
        d.mkdir(parents=True)
        if side == "b":
            del _cluster(dump)["transport_socket"]["typed_config"]["sni"]
        (d / "config_dump.json").write_text(json.dumps(dump))
        (d / "stats.json").write_text(json.dumps({"cluster.outbound|443||edition.cnn.com;.upstream_cx_total": 0}))
    assert cd.main([str(tmp_path / "a"), str(tmp_path / "a")]) == 0
    assert cd.main([str(tmp_path / "a"), str(tmp_path / "b")]) == 1
    out = capsys.readouterr().out.strip().splitlines()
    assert out[-1] == (
        "istio-system.istio-egressgateway cluster outbound|443||edition.cnn.com: "
        "transport_socket.sni edition.cnn.com → (unset)"
    )


def test_cli_bad_input_is_one_line(tmp_path, capsys):
    bad = tmp_path / "x.json"
    bad.write_text("{not json")
    assert cd.main([str(bad), str(bad)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "is not JSON" in err[0]


def test_normalise_is_pure():
    dump = gateway_dump()
    before = copy.deepcopy(dump)
    cd.egress_view(dump)
    assert dump == before


def test_secrets_the_egress_clusters_use_are_compared():
    a = gateway_dump()
    tls = _cluster(a)["transport_socket"]["typed_config"]["common_tls_context"]
    tls["tls_certificate_sds_secret_configs"] = [{"name": "default", "sds_config": {"ads": {}}}]
    a["configs"][4]["dynamic_active_secrets"].append(
        {
            "name": "default",
            "secret": {"name": "default", "tls_certificate": {"certificate_chain": {"inline_bytes": "QUJD" * 40}}},
        }
    )
    assert "default" in cd.egress_view(a)["secret"]
    b = copy.deepcopy(a)
    b["configs"][4]["dynamic_active_secrets"][1]["secret"]["tls_certificate"]["certificate_chain"] = {
        "filename": "/etc/certs/cert-chain.pem"
    }
    changes = cd.diff_dumps(a, b)
    assert sorted(c.path for c in changes) == [
        "tls_certificate.certificate_chain.filename",
        "tls_certificate.certificate_chain.inline_bytes",
    ]
    assert {(c.kind, c.name) for c in changes} == {("secret", "default")}


def test_all_mode_ignores_the_harness_convergence_markers():
    def with_marker(gen: int) -> dict:
        d = gateway_dump()
        d["configs"][1]["dynamic_active_clusters"].append(
            {"cluster": {"name": f"outbound|9||sync-{gen}.egress-harness.invalid", "type": "STATIC"}}
        )
        return d

    assert cd.diff_dumps(with_marker(3), with_marker(4), everything=True) == []
