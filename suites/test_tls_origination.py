"""Seed §2: the application speaks HTTP, the egress gateway originates TLS to edition.cnn.com, in the
Istio API and (tests marked gateway_api) the Gateway API."""

from __future__ import annotations

import pytest

from harness.checks import origination as checks


def test_before_origination_301_then_exit_35(scenario, mode):
    scenario.apply("origination/serviceentry")
    checks.check_before_origination(scenario)


@pytest.mark.gateway_api
def test_gateway_originates_tls(scenario, mode):
    scenario.apply("origination/simple")
    checks.check_origination(scenario)


@pytest.mark.gateway_api
def test_origination_trusting_wrong_ca_fails(scenario, mode):
    scenario.apply("origination/wrong-ca")
    checks.check_wrong_ca(scenario)


@pytest.mark.gateway_api
def test_mutual_tls_origination(scenario, mode):
    scenario.apply("origination/mutual")
    checks.check_mutual_origination(scenario)


@pytest.mark.gateway_api
def test_mutual_tls_origination_without_client_cert_fails(scenario, mode):
    scenario.apply("origination/mutual-without-client-cert")
    checks.check_mutual_origination_without_client_cert(scenario)
