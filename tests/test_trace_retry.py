"""When a Trace retries (harness/trace.py, Trace._no_healthy_deployed_gateway): only for the
sidecar's "no healthy upstream" (UH) toward a gateway istiod deployed, read from the sidecar's
access-log line. The line is the one a kind run recorded (tests/data/access_log/); the backend
below only hands it over: this is a unit test of reading that line, the retry itself runs in the
suites on kind."""

from __future__ import annotations

import json
from pathlib import Path

from harness.backend import GATEWAY, SLEEP
from harness.curl_result import CurlResult
from harness.evidence import Evidence
from harness.trace import Trace

LINE = json.loads((Path(__file__).parent / "data/access_log/sidecar-uh-deployed-gateway.json").read_text())[0]
DEPLOYED = "default/cnn-egress-gateway-istio-64d77d4f8d-blwpr"
ROUTE = ("", "cnn-egress-gateway-istio.default.svc.cluster.local")


class _Logs:
    """Hands the recorded line over as the sidecar's access log."""

    def __init__(self, lines: list[dict]):
        self.lines = [json.dumps(line) for line in lines]

    def has_sidecar(self, pod: str) -> bool:
        return True

    def access_log(self, pod: str) -> list[str]:
        return self.lines if pod == SLEEP else []


def _trace(lines: list[dict], gateway: str = DEPLOYED) -> Trace:
    return Trace(_Logs(lines), Evidence(), SLEEP, "curl-0", gateway=gateway, gateway_route=ROUTE)  # type: ignore[arg-type]


def _503() -> CurlResult:
    return CurlResult.parse(0, "HTTP/1.1 503 Service Unavailable\r\ncontent-length: 19\r\n\r\nno healthy upstream")


def test_uh_toward_the_deployed_gateway_is_retried():
    assert _trace([LINE])._no_healthy_deployed_gateway(_503())


def test_other_failures_are_verdicts_at_once():
    uf = dict(LINE, response_flags="UF", response_code_details="upstream_reset_before_response_started")
    assert not _trace([uf])._no_healthy_deployed_gateway(_503())
    other_cluster = dict(LINE, upstream_cluster="outbound|80||edition.cnn.com")
    assert not _trace([other_cluster])._no_healthy_deployed_gateway(_503())
    # The Istio API's gateway runs from the start: its UH is the mesh's verdict.
    assert not _trace([LINE], gateway=GATEWAY)._no_healthy_deployed_gateway(_503())
    ok = CurlResult.parse(0, "HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
    assert not _trace([LINE])._no_healthy_deployed_gateway(ok)
