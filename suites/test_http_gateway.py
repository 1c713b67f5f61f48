"""Seed §1: HTTP to edition.cnn.com routed sidecar → egress gateway → edition.cnn.com, in the
Istio API and (tests marked gateway_api) the Gateway API."""

from __future__ import annotations

import pytest

from harness.checks import http_gateway as checks


def test_serviceentry_only_goes_direct(scenario, mode):
    """Step 2: with only the ServiceEntry, 301 then 200, both requests straight from the pod."""
    scenario.apply("http/serviceentry")
    checks.check_direct(scenario)


@pytest.mark.gateway_api
def test_http_through_gateway(scenario, mode):
    """Steps 3–6: port 80 goes through the gateway (access log, counters, header, the hop's TLS
    per mode); port 443 still goes direct."""
    scenario.apply("http/gateway")
    checks.check_through_gateway(scenario)


@pytest.mark.gateway_api
def test_gateway_counter_counts_each_request(scenario, mode):
    """The gateway's outbound|80||edition.cnn.com counter grows by exactly the requests sent."""
    scenario.apply("http/gateway")
    checks.check_counter_counts_each_request(scenario)
