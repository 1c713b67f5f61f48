"""Seed §1's facts: HTTP to edition.cnn.com, direct and through the egress gateway (the tests
are suites/test_http_gateway.py)."""

from __future__ import annotations

URL = "http://edition.cnn.com/politics"
HOST = "edition.cnn.com"
CNN_80 = ("outbound|80||edition.cnn.com", "upstream_rq_total")
