"""EnvoyAdmin against a real Envoy started here on 127.0.0.1 with a static bootstrap plus
file-based LDS/CDS (one good and one broken resource each, so config_dump has error_state)."""

from __future__ import annotations

import datetime
import json
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from harness.envoy_admin import (
    EnvoyAdmin,
    EnvoyAdminError,
    RejectedResource,
    cluster_names,
    exact_stat_regex,
    listener_names,
    rejected_resources,
)
from harness.envoy_binary import ENVOY_ENV_VAR, envoy_version, find_envoy_binary, parse_envoy_version
from harness.errors import HarnessError
from harness.wait import WaitTimeout
from tests.helpers.envoy_process import running_envoy

pytestmark = pytest.mark.envoy

DEAD_CLUSTER = "outbound|443||edition.cnn.com"  # points at 127.0.0.1:1, where nothing listens
DECOY_CLUSTER = "outbound|443||editionXcnnXcom"  # what "edition.cnn.com" matches if '.' is left unescaped
EGRESS_SPIFFE = "spiffe://cluster.local/ns/istio-system/sa/istio-egressgateway-service-account"
LOCALHOST = "127.0.0.1"
HCM_TYPE = "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"


@dataclass
class RunningEnvoy:
    admin: EnvoyAdmin
    binary: Path
    http_url: str  # the "direct" listener
    cert_file: Path
    cert: x509.Certificate


def _address(port: int) -> dict:
    return {"socket_address": {"address": LOCALHOST, "port_value": port}}


def _static_cluster(name: str, port: int, ip: str = LOCALHOST) -> dict:
    endpoint = {"address": {"socket_address": {"address": ip, "port_value": port}}}
    return {
        "name": name,
        "type": "STATIC",
        "connect_timeout": "1s",
        "load_assignment": {"cluster_name": name, "endpoints": [{"lb_endpoints": [{"endpoint": endpoint}]}]},
    }


def _tcp_proxy(cluster: str) -> dict:
    return {
        "name": "envoy.filters.network.tcp_proxy",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy",
            "stat_prefix": "tcp",
            "cluster": cluster,
        },
    }


def _http_listener() -> dict:
    routes = [
        {"match": {"prefix": "/dead"}, "route": {"cluster": DEAD_CLUSTER}},
        {"match": {"prefix": "/"}, "direct_response": {"status": 200, "body": {"inline_string": "hello\n"}}},
    ]
    hcm = {
        "@type": HCM_TYPE,
        "stat_prefix": "direct_in",
        "route_config": {"virtual_hosts": [{"name": "all", "domains": ["*"], "routes": routes}]},
        "http_filters": [
            {
                "name": "envoy.filters.http.router",
                "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"},
            }
        ],
    }
    return {
        "name": "direct",
        "address": _address(0),
        "filter_chains": [
            {"filters": [{"name": "envoy.filters.network.http_connection_manager", "typed_config": hcm}]}
        ],
    }


def _tls_listener(cert_file: Path, key_file: Path) -> dict:
    tls = {
        "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext",
        "common_tls_context": {
            "tls_certificates": [
                {"certificate_chain": {"filename": str(cert_file)}, "private_key": {"filename": str(key_file)}}
            ]
        },
    }
    return {
        "name": "tls",
        "address": _address(0),
        "filter_chains": [
            {
                "transport_socket": {"name": "envoy.transport_sockets.tls", "typed_config": tls},
                "filters": [_tcp_proxy(DEAD_CLUSTER)],
            }
        ],
    }


def _xds_file(resources: list[dict], type_url: str) -> str:
    return json.dumps({"resources": [{"@type": type_url, **resource} for resource in resources]})


def _write_egress_cert(workdir: Path) -> tuple[Path, Path, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "egress-harness test")])
    now = datetime.datetime.now(datetime.UTC)
    sans = [x509.UniformResourceIdentifier(EGRESS_SPIFFE), x509.DNSName("edition.cnn.com")]
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = workdir / "egress-cert.pem", workdir / "egress-key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_file, key_file, cert


def _write_config(workdir: Path) -> tuple[Path, Path, x509.Certificate]:
    cert_file, key_file, cert = _write_egress_cert(workdir)
    # Envoy watches the directory of an xDS file; its log must not live there.
    xds = workdir / "xds"
    xds.mkdir()
    listener_type = "type.googleapis.com/envoy.config.listener.v3.Listener"
    # Two filter chains with the same (empty) match: passes proto validation, rejected when added.
    bad_listener = {
        "name": "dyn_bad",
        "address": _address(0),
        "filter_chains": [{"filters": [_tcp_proxy("c1")]}, {"filters": [_tcp_proxy("c2")]}],
    }
    good_listener = {
        "name": "dyn_ok",
        "address": _address(0),
        "filter_chains": [{"filters": [_tcp_proxy(DEAD_CLUSTER)]}],
    }
    (xds / "lds.json").write_text(_xds_file([good_listener, bad_listener], listener_type))
    # A STATIC cluster needs IP endpoints: passes proto validation, rejected when added.
    bad_cluster = _static_cluster("dyn_cluster_bad", 2, ip="not-an-ip")
    cluster_type = "type.googleapis.com/envoy.config.cluster.v3.Cluster"
    (xds / "cds.json").write_text(_xds_file([_static_cluster("dyn_cluster_ok", 2), bad_cluster], cluster_type))
    bootstrap = {
        "admin": {"address": _address(0)},
        "node": {"id": "egress-harness-test", "cluster": "test"},
        "static_resources": {
            "listeners": [_http_listener(), _tls_listener(cert_file, key_file)],
            "clusters": [_static_cluster(DEAD_CLUSTER, 1), _static_cluster(DECOY_CLUSTER, 1)],
        },
        "dynamic_resources": {
            "lds_config": {"path_config_source": {"path": str(xds / "lds.json")}, "resource_api_version": "V3"},
            "cds_config": {"path_config_source": {"path": str(xds / "cds.json")}, "resource_api_version": "V3"},
        },
    }
    bootstrap_file = workdir / "bootstrap.json"
    bootstrap_file.write_text(json.dumps(bootstrap))
    return bootstrap_file, cert_file, cert


@pytest.fixture(scope="module")
def envoy():
    binary = find_envoy_binary()
    workdir = Path(tempfile.mkdtemp(prefix="egress-harness-envoy-admin-"))
    try:
        bootstrap_file, cert_file, cert = _write_config(workdir)
        with running_envoy(bootstrap_file, workdir) as (_, admin):
            host, port = admin.listener_addresses()["direct"]
            yield RunningEnvoy(admin, binary, f"http://{host}:{port}", cert_file, cert)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture(scope="module")
def client():
    with httpx.Client(trust_env=False, timeout=5) as http:
        yield http


# --- server ---


def test_ready_and_server_info(envoy):
    assert envoy.admin.ready() is True
    info = envoy.admin.server_info()
    assert info["state"] == "LIVE"
    assert info["command_line_options"]["concurrency"] == 1  # it is the Envoy this module started
    assert envoy.admin.server_version() == envoy_version(envoy.binary)


def test_listener_addresses_show_the_real_ports(envoy):
    addresses = envoy.admin.listener_addresses()
    assert {"direct", "tls", "dyn_ok"} <= set(addresses)
    assert "dyn_bad" not in addresses
    host, port = addresses["direct"]
    assert host == LOCALHOST and port > 0
    assert [status["name"] for status in envoy.admin.listeners()].count("direct") == 1


# --- stats ---


def test_downstream_requests_are_counted(envoy, client):
    name = "http.direct_in.downstream_rq_total"
    before = envoy.admin.counter(name)
    response = client.get(f"{envoy.http_url}/")
    assert (response.status_code, response.text) == (200, "hello\n")
    assert envoy.admin.wait_for_counter(name, at_least=before + 1, timeout=5) >= before + 1


def test_dead_upstream_counts_connect_failures(envoy, client):
    connect_fail = f"cluster.{DEAD_CLUSTER}.upstream_cx_connect_fail"
    before = envoy.admin.counter(connect_fail)
    response = client.get(f"{envoy.http_url}/dead")
    assert response.status_code == 503
    assert "upstream connect error" in response.text
    assert envoy.admin.wait_for_counter(connect_fail, at_least=before + 1, timeout=5) >= before + 1
    assert envoy.admin.counter(f"cluster.{DEAD_CLUSTER}.upstream_cx_total") >= 1
    assert envoy.admin.counter(f"cluster.{DECOY_CLUSTER}.upstream_cx_total") == 0


def test_exact_stat_regex_isolates_one_stat(envoy):
    name = f"cluster.{DEAD_CLUSTER}.upstream_cx_total"
    assert exact_stat_regex(name) == r"^cluster\.outbound\|443\|\|edition\.cnn\.com\.upstream_cx_total$"
    assert list(envoy.admin.stats(exact_stat_regex(name))) == [name]
    # Unescaped, "|" is alternation with an empty branch: the filter matches every stat.
    naive = envoy.admin.stats(f"^{name}$")
    assert f"cluster.{DECOY_CLUSTER}.upstream_cx_total" in naive
    assert len(naive) > 100


def test_all_stats_and_no_histograms(envoy):
    everything = envoy.admin.stats()
    assert everything["server.state"] == 0  # a gauge: 0 is LIVE
    assert "cluster_manager.cds.update_duration" not in everything  # a histogram
    assert all(isinstance(value, int) for value in everything.values())


def test_missing_counter_reads_zero(envoy):
    assert envoy.admin.counter("cluster.outbound|80||edition.cnn.com.upstream_cx_total") == 0


def test_wait_for_counter_timeout_names_value_and_neighbours(envoy):
    name = f"cluster.{DEAD_CLUSTER}.upstream_cx_total"
    current = envoy.admin.counter(name)
    with pytest.raises(WaitTimeout) as caught:
        envoy.admin.wait_for_counter(name, at_least=1_000_000, timeout=0.2)
    message = str(caught.value)
    assert f"{name} >= 1000000" in message
    assert f"last seen: {current};" in message
    assert "stats ending in .upstream_cx_total: " in message
    assert f"cluster.{DECOY_CLUSTER}.upstream_cx_total=0" in message
    assert "cluster.dyn_cluster_ok.upstream_cx_total=0" in message


def test_wait_for_missing_counter_says_it_does_not_exist(envoy):
    name = "cluster.outbound|80||edition.cnn.com.upstream_cx_total"
    with pytest.raises(WaitTimeout) as caught:
        envoy.admin.wait_for_counter(name, at_least=1, timeout=0.2)
    message = str(caught.value)
    assert "last seen: 0 (no such stat)" in message
    assert f"cluster.{DEAD_CLUSTER}.upstream_cx_total=" in message


def test_wait_for_misspelled_counter_lists_the_same_prefix(envoy):
    name = f"cluster.{DEAD_CLUSTER}.upstream_cx_totl"
    with pytest.raises(WaitTimeout) as caught:
        envoy.admin.wait_for_counter(name, at_least=1, timeout=0.2)
    message = str(caught.value)
    assert f"stats starting with cluster.{DEAD_CLUSTER}.: " in message
    assert "more)" in message  # a cluster has far more stats than are listed


def test_rejected_updates_are_counted(envoy):
    assert envoy.admin.update_rejected_counters() == {
        "listener_manager.lds.update_rejected": 1,
        "cluster_manager.cds.update_rejected": 1,
    }


# --- config_dump ---


def test_active_listener_and_cluster_names(envoy):
    listeners = envoy.admin.active_listener_names()
    assert {"direct", "tls", "dyn_ok"} == set(listeners)
    clusters = envoy.admin.active_cluster_names()
    assert {DEAD_CLUSTER, DECOY_CLUSTER, "dyn_cluster_ok"} == set(clusters)


def test_rejected_listener_is_reported_once(envoy):
    rejected = envoy.admin.rejected_resources()
    assert [(r.type, r.name) for r in rejected] == [("listener", "dyn_bad")]
    assert isinstance(rejected[0], RejectedResource)
    assert "has the same matching rules" in rejected[0].details


def test_config_dump_of_one_resource_with_mask(envoy):
    dump = envoy.admin.config_dump("dynamic_active_clusters", mask="cluster.name")
    assert [config["cluster"] for config in dump["configs"]] == [
        {"@type": "type.googleapis.com/envoy.config.cluster.v3.Cluster", "name": "dyn_cluster_ok"}
    ]


def test_config_dump_name_regex(envoy):
    dump = envoy.admin.config_dump("static_clusters", name_regex=exact_stat_regex(DEAD_CLUSTER))
    assert [config["cluster"]["name"] for config in dump["configs"]] == [DEAD_CLUSTER]
    # Unlike the stats filter, name_regex must match the whole name; no match is an empty object.
    assert envoy.admin.config_dump("static_clusters", name_regex="outbound") == {}
    assert cluster_names({}) == [] and listener_names({}) == [] and rejected_resources({}) == []


def test_config_dump_eds_only_when_asked(envoy):
    def dump_types(dump: dict) -> set[str]:
        return {config["@type"].rsplit(".", 1)[-1] for config in dump["configs"]}

    assert "EndpointsConfigDump" not in dump_types(envoy.admin.config_dump())
    assert "EndpointsConfigDump" in dump_types(envoy.admin.config_dump(include_eds=True))
    assert {"ListenersConfigDump", "ClustersConfigDump", "BootstrapConfigDump"} <= dump_types(envoy.admin.config_dump())


def test_clusters_json(envoy):
    statuses = {status["name"]: status for status in envoy.admin.clusters_json()["cluster_statuses"]}
    assert {DEAD_CLUSTER, DECOY_CLUSTER, "dyn_cluster_ok"} <= set(statuses)
    assert statuses["dyn_cluster_ok"].get("added_via_api") is True
    assert not statuses[DEAD_CLUSTER].get("added_via_api", False)


# --- certificates ---


def test_cert_sans(envoy):
    [sans] = envoy.admin.cert_sans()
    assert sans.path == str(envoy.cert_file)
    # Envoy prints the serial as whole bytes: a leading zero nibble stays ("05…").
    assert int(sans.serial_number, 16) == envoy.cert.serial_number
    assert sans.uris == (EGRESS_SPIFFE,)
    assert sans.dns == ("edition.cnn.com",)
    assert envoy.admin.certs()["certificates"][0]["cert_chain"][0]["path"] == str(envoy.cert_file)


# --- transport and errors ---


class RecordingTransport(httpx.BaseTransport):
    """A real HTTP transport that remembers what it sent, as a netns transport would be handed in."""

    def __init__(self) -> None:
        self.inner = httpx.HTTPTransport()
        self.urls: list[httpx.URL] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.urls.append(request.url)
        return self.inner.handle_request(request)

    def close(self) -> None:
        self.inner.close()


def test_custom_transport_carries_every_call(envoy):
    transport = RecordingTransport()
    name = f"cluster.{DEAD_CLUSTER}.upstream_cx_total"
    with EnvoyAdmin(envoy.admin.base_url, transport=transport) as admin:
        assert admin.counter(name) >= 1
        assert admin.ready()
    stats_url, ready_url = transport.urls
    assert stats_url.path == "/stats"
    assert parse_qs(urlsplit(str(stats_url)).query) == {"format": ["json"], "filter": [exact_stat_regex(name)]}
    assert ready_url.path == "/ready"


def test_bad_regex_is_an_admin_error(envoy):
    with pytest.raises(EnvoyAdminError, match=r"answered 400: Invalid re2 regex"):
        envoy.admin.stats("(unclosed")


def test_unreachable_admin():
    with EnvoyAdmin("http://127.0.0.1:1", timeout=1) as admin:
        assert admin.ready() is False
        with pytest.raises(EnvoyAdminError, match=r"http://127\.0\.0\.1:1/stats unreachable: ConnectError"):
            admin.counter("server.state")
        with pytest.raises(WaitTimeout, match=r"Envoy at http://127\.0\.0\.1:1 to be ready.*ConnectError"):
            admin.wait_ready(timeout=0.2)


# --- the binary ---


def test_envoy_binary_from_wheel_and_override(monkeypatch, tmp_path):
    monkeypatch.delenv(ENVOY_ENV_VAR, raising=False)
    wheel_binary = find_envoy_binary()
    assert wheel_binary.name == "envoy" and wheel_binary.is_file()
    link = tmp_path / "my-envoy"
    link.symlink_to(wheel_binary)
    monkeypatch.setenv(ENVOY_ENV_VAR, str(link))
    assert find_envoy_binary() == link
    monkeypatch.setenv(ENVOY_ENV_VAR, str(tmp_path / "missing"))
    with pytest.raises(HarnessError, match=f"{ENVOY_ENV_VAR}=.*missing is not an executable file"):
        find_envoy_binary()


def test_envoy_version(envoy):
    version = envoy_version(envoy.binary)
    assert version.count(".") == 2 and all(part.isdigit() for part in version.split("."))
    cli = "envoy  version: 0ebfcfe5b0484b89ca85b761da9e05ce75dbda8d/1.38.3/Modified/RELEASE/BoringSSL"
    assert parse_envoy_version(cli) == "1.38.3"
    assert parse_envoy_version("6eb0d2d97489ec1b4e1584a004f5de443d97a41b/1.39.3/Clean/RELEASE/BoringSSL") == "1.39.3"
    assert parse_envoy_version("no version here") is None
    with pytest.raises(HarnessError, match="--version"):
        envoy_version("/bin/false")
