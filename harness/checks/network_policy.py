"""Seed §4: a Kubernetes NetworkPolicy that stops pods from bypassing the egress gateway."""

from __future__ import annotations

import time
from functools import partial

from harness.backend import TEST_EGRESS_SLEEP
from harness.checks.hop_checks import client_saw_certificate, direct_from, statuses, verify
from harness.checks.passthrough import HOST, HTTPS_URL, STAND_IN_ISSUER, check_passthrough
from harness.curl_result import curl_command
from harness.scenario import Scenario
from harness.trace import APP_UPSTREAM

CONNECT_TIMEOUT = 2


def check_direct_before_policy(sc: Scenario) -> None:
    """test-egress/sleep has no sidecar: it reaches the stand-in directly, over its own TLS (SNI
    edition.cnn.com, the stand-in's certificate)."""
    t = sc.trace(TEST_EGRESS_SLEEP, "curl-before-policy")
    t.run(curl_command(HTTPS_URL, extra=["-v", "--connect-timeout", str(CONNECT_TIMEOUT)]))
    t.wait_upstream_requests(1)
    verify(
        t,
        statuses([200]),
        direct_from(TEST_EGRESS_SLEEP, "https", sni=HOST, hop=APP_UPSTREAM),
        client_saw_certificate(HOST, STAND_IN_ISSUER),
    )


def check_blocked_by_policy(sc: Scenario) -> float:
    """With the policy, the direct request fails: a bounded connect timeout, nothing reaches the stand-in."""
    t = sc.trace(TEST_EGRESS_SLEEP, "curl-with-policy")
    started = time.monotonic()
    t.run(curl_command(HTTPS_URL, extra=["--connect-timeout", str(CONNECT_TIMEOUT)]))
    took = time.monotonic() - started
    t.expect(
        t.result.exit_code in (7, 28) and not t.result.responses,
        APP_UPSTREAM,
        f"the policy should block the direct request (connect timeout); got {t.result.describe()}",
    )
    t.expect(took < CONNECT_TIMEOUT + 5, APP_UPSTREAM, f"the blocked request took {took:.1f}s")
    t.expect(
        not t.upstream_connections(),
        APP_UPSTREAM,
        f"the stand-in saw a connection despite the policy: {[c.summary() for c in t.upstream_connections()]}",
    )
    sc.evidence.observe(blocked=f"{t.result.describe()} after {took:.1f}s")
    return took


def run_seed_section(sc: Scenario) -> None:
    """The whole section, in the seed's order. Each change registers its undo with the scenario,
    so a failure's evidence shows the mesh as it failed, and cleanup restores it afterwards."""
    backend = sc.backend
    sc.apply("passthrough/gateway")
    policy = sc.render("network-policy") + sc.render("network-policy/destinationrule")
    with sc.step("without a sidecar, test-egress/sleep reaches the upstream directly"):
        check_direct_before_policy(sc)
    for namespace, label, value in (("istio-system", "istio", "system"), ("kube-system", "kube-system", "true")):
        backend.label_namespace(namespace, {label: value})
        sc.defer(partial(backend.label_namespace, namespace, {label: None}))
    sc.apply_extra(policy, "network-policy")
    with sc.step("the policy blocks the direct path"):
        check_blocked_by_policy(sc)
    backend.label_namespace("test-egress", {"istio-injection": "enabled"})
    sc.defer(lambda: backend.label_namespace("test-egress", {"istio-injection": None}))
    sc.defer(lambda: backend.redeploy(TEST_EGRESS_SLEEP, sidecar=False))
    backend.redeploy(TEST_EGRESS_SLEEP, sidecar=True)
    with sc.step("with a sidecar, test-egress/sleep goes through the gateway"):
        check_passthrough(sc, requests=1, source=TEST_EGRESS_SLEEP)
    sc.evidence.observe(gateway_peer=backend.pod_address(sc.gateway))
