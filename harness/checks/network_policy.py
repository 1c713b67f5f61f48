"""Seed §4's facts: a Kubernetes NetworkPolicy that stops pods from bypassing the egress gateway
(the test is suites/test_network_policy.py)."""

from __future__ import annotations

CONNECT_TIMEOUT = 2  # curl's --connect-timeout for the direct request the policy blocks
# The namespaces the policy's egress rule lets through, and the labels it selects them by (seed §4).
ALLOWED_NAMESPACES = (("istio-system", "istio", "system"), ("kube-system", "kube-system", "true"))
