"""Seed §3's facts and its one composite check: HTTPS the application originates, passed by SNI
through the egress gateway, not terminated (the tests are suites/test_https_passthrough.py; §4's
last step, suites/test_network_policy.py, checks the same thing from test-egress/sleep)."""

from __future__ import annotations

from harness.access_log import AccessLogEntry
from harness.checks.hop_checks import (
    Check,
    client_saw_certificate,
    counter_grew,
    statuses,
    upstream_sni,
    via_gateway,
)

HTTPS_URL = "https://edition.cnn.com/politics"
HOST = "edition.cnn.com"
STAND_IN_ISSUER = "Test Public Root CA"
CNN_443 = "outbound|443||edition.cnn.com"
CNN_443_CX = (CNN_443, "upstream_cx_total")


def is_cnn_tls(entry: AccessLogEntry) -> bool:
    """The sidecar's line of the application's TLS to edition.cnn.com (by SNI or by cluster)."""
    return entry.sni == HOST or HOST in (entry.upstream_cluster or "")


def through_gateway_by_sni(gateway_port: int) -> tuple[Check, ...]:
    """One HTTPS request passed by SNI: 200, curl saw the stand-in's own certificate, the sidecar
    sent it to the gateway, the stand-in saw SNI edition.cnn.com from the gateway, and the
    gateway's upstream_cx_total grew by exactly one."""
    return (
        statuses([200]),
        client_saw_certificate(HOST, STAND_IN_ISSUER),
        via_gateway("https", gateway_port, sidecar_entry=is_cnn_tls),
        upstream_sni(HOST),
        counter_grew(CNN_443_CX, 1),
    )
