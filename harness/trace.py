"""One exchange through the mesh and what every hop saw of it; hop-naming assertions.

A Trace is taken around one client command in a pod: before it, marks on the stand-in's records,
on each proxy's access log and on chosen gateway counters; after it, the client's result and every
hop's observations. Assertions name the first hop whose evidence is missing or wrong
(app → sidecar → gateway → upstream) and put that evidence in the message and the test's
evidence folder.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from functools import partial
from typing import Any, NoReturn

from harness.access_log import AccessLogEntry, parse_lines
from harness.backend import GATEWAY, GATEWAY_SPIFFE, Backend
from harness.curl_result import CurlResult
from harness.errors import HarnessFault, HopFailure
from harness.evidence import Evidence
from harness.stats import cluster_counter, seed_name
from harness.upstream_client import ConnectionRecord, RequestRecord
from harness.wait import WaitTimeout, poll

# A request to a just-deployed gateway that the sidecar answers UH is retried this long (Trace.run).
FRESH_GATEWAY_RETRY_SECONDS = 8.0
FRESH_GATEWAY_RETRY_INTERVAL = 0.2

APP_SIDECAR = "app → sidecar"
SIDECAR_GATEWAY = "sidecar → gateway"
GATEWAY_UPSTREAM = "gateway → upstream"
SIDECAR_UPSTREAM = "sidecar → upstream"
APP_UPSTREAM = "app → upstream"
CONTROL_PLANE = "istiod → proxy"  # config did not reach (or was not taken by) a proxy


@dataclass
class Trace:
    backend: Backend
    evidence: Evidence
    source: str
    label: str
    counters: list[tuple[str, str]] = field(default_factory=list)  # (cluster, stat) on the gateway
    # The egress gateway's pod: the Istio API's istio-egressgateway, or the pod istiod deployed
    # for a Gateway API Gateway (Scenario.gateway).
    gateway: str = GATEWAY
    gateway_spiffe: str = GATEWAY_SPIFFE
    # The sidecar's route to the gateway: (subset, Service host) of its cluster.
    gateway_route: tuple[str, str] = ("cnn", "istio-egressgateway.istio-system.svc.cluster.local")
    _result: CurlResult | None = field(default=None, init=False)
    _upstream_mark: int = 0
    _log_marks: dict[str, int] = field(default_factory=dict)
    _counter_before: dict[tuple[str, str], int] = field(default_factory=dict)
    _runs: int = 0  # requests run() has sent (a retry not counted)
    elapsed: float = 0.0  # seconds the last run()'s command took in the pod (a check of a timeout reads it)

    def gateway_cluster(self, port: int) -> str:
        subset, host = self.gateway_route
        return f"outbound|{port}|{subset}|{host}"

    # -------------------------------------------------------------- capture
    def begin(self) -> Trace:
        self._upstream_mark = self.backend.upstream().mark()
        for pod in self._proxied_pods():
            self._log_marks[pod] = len(self.backend.access_log(pod))
        if self.counters:
            admin = self.backend.proxy_admin(self.gateway)
            self._counter_before = {c: cluster_counter(admin, *c) for c in self.counters}
        return self

    def _proxied_pods(self) -> list[str]:
        return [self.gateway, self.source] if self.backend.has_sidecar(self.source) else [self.gateway]

    def run(self, argv: list[str], timeout: float = 30.0) -> CurlResult:
        deadline = time.monotonic() + FRESH_GATEWAY_RETRY_SECONDS
        retries = 0
        while True:
            started = time.monotonic()
            res = self.backend.exec(self.source, argv, timeout=timeout)
            self.elapsed = time.monotonic() - started
            self._result = CurlResult.parse(res.exit_code, res.stdout, res.stderr)
            text = f"$ {' '.join(argv)}  (in {self.source})\nexit {res.exit_code}\n--- stdout\n{res.stdout}\n--- stderr\n{res.stderr}"
            # Only a trace's first request: a retry takes the marks again, which would drop the
            # earlier requests of a burst from its counts.
            first = not self._runs
            if not first or time.monotonic() > deadline or not self._no_healthy_deployed_gateway(self._result):
                break
            retries += 1
            self.evidence.add_text(f"{self.label}.retry-{retries}.client.txt", text)
            self.evidence.observe(**{f"{self.label}.retried_after_UH": retries})
            time.sleep(FRESH_GATEWAY_RETRY_INTERVAL)  # the request is the signal polled
            self.begin()  # the retried request's marks: its evidence alone
        self._runs += 1
        self.evidence.add_text(
            f"{self.label}.client.txt" if self._runs == 1 else f"{self.label}.{self._runs}.client.txt", text
        )
        self.evidence.add_source(
            f"{self.label}.upstream-requests", lambda: [r.__dict__ for r in self.upstream_requests()]
        )
        self.evidence.add_source(
            f"{self.label}.upstream-connections", lambda: [c.__dict__ for c in self.upstream_connections()]
        )
        for pod in self._log_marks:
            self.evidence.add_source(f"{self.label}.{pod.replace('/', '.')}.access-log", partial(self._raw_log, pod))
        return self._result

    def _no_healthy_deployed_gateway(self, result: CurlResult) -> bool:
        """The sidecar answered "no healthy upstream" (UH) for the cluster of a gateway istiod
        deployed for a Gateway API Gateway. Seen on kind (1 to 3 of a run's 26 Gateway API tests): the first request
        after the apply got UH from the sidecar although its /clusters had shown the deployed
        pod's endpoint HEALTHY, and nothing was pushed in between. As Istio's own test framework
        retries its calls until a deadline, the request is retried until it gets past the sidecar
        or FRESH_GATEWAY_RETRY_SECONDS pass (then the UH is the verdict); every retry is in the
        evidence and the observation `<label>.retried_after_UH`."""
        if self.gateway == GATEWAY or (result.ok and 503 not in result.statuses):
            return False
        if not self.backend.has_sidecar(self.source):
            return False
        host = self.gateway_route[1]
        lines = self.wait_log(self.source, 1, timeout=2.0)
        return any("UH" in str(e.get("response_flags") or "") and host in (e.upstream_cluster or "") for e in lines)

    @property
    def result(self) -> CurlResult:
        """The client's result; reading it before run() is a bug in the check, not in the mesh."""
        if self._result is None:
            raise HarnessFault(f"trace {self.label!r}: result read before run()")
        return self._result

    # -------------------------------------------------------------- observations
    def upstream_requests(self) -> list[RequestRecord]:
        return self.backend.upstream().requests(since=self._upstream_mark)

    def from_gateway(self) -> list[RequestRecord]:
        """The requests the stand-in has recorded since the trace began whose peer is the gateway
        (its pod's address): what the gateway sent upstream, read when asked."""
        gateway_ip = self.backend.pod_address(self.gateway)
        return [r for r in self.upstream_requests() if r.peer_address == gateway_ip]

    def upstream_connections(self) -> list[ConnectionRecord]:
        return self.backend.upstream().connections(since=self._upstream_mark)

    def log(self, pod: str) -> list[AccessLogEntry]:
        return parse_lines(self.backend.access_log(pod)[self._log_marks.get(pod, 0) :])

    def _raw_log(self, pod: str) -> list[dict]:
        return [e.raw for e in self.log(pod)]

    def wait_log(self, pod: str, n: int, timeout: float = 5.0, where=lambda e: True) -> list[AccessLogEntry]:
        """Access-log lines are flushed every 0.1 s: poll for n of them (that satisfy `where`)."""

        def matching() -> list[AccessLogEntry]:
            return [e for e in self.log(pod) if where(e)]

        try:
            return poll(
                f"{n} access-log line(s) of {pod}",
                matching,
                ok=lambda e: len(e) >= n,
                timeout=timeout,
                describe=lambda e: f"{len(e)} line(s): " + "; ".join(x.summary() for x in e),
            )
        except WaitTimeout:
            return matching()

    def wait_upstream_requests(self, n: int, timeout: float = 5.0) -> list[RequestRecord]:
        try:
            return poll(
                f"{n} request(s) at the stand-in", self.upstream_requests, ok=lambda r: len(r) >= n, timeout=timeout
            )
        except WaitTimeout:
            return self.upstream_requests()

    def counter_delta(self, counter: tuple[str, str]) -> int:
        return cluster_counter(self.backend.proxy_admin(self.gateway), *counter) - self._counter_before.get(counter, 0)

    def wait_counter_delta(self, counter: tuple[str, str], at_least: int, timeout: float = 5.0) -> int:
        try:
            return poll(
                f"gateway counter {seed_name(*counter)} to grow by {at_least}",
                lambda: self.counter_delta(counter),
                ok=lambda d: d >= at_least,
                timeout=timeout,
            )
        except WaitTimeout:
            return self.counter_delta(counter)

    # -------------------------------------------------------------- assertions
    def fail(self, hop: str, message: str) -> NoReturn:
        details = [message, f"client: {self._result.describe() if self._result else 'not run'}"]
        for pod in self._log_marks:
            entries = self.log(pod)
            details.append(f"{pod} access log: " + ("; ".join(e.summary() for e in entries) or "no lines"))
        reqs = self.upstream_requests()
        details.append("stand-in requests: " + ("; ".join(r.summary() for r in reqs) or "none"))
        raise HopFailure(hop, "\n  ".join(details))

    def expect(self, condition: Any, hop: str, message: str) -> None:
        if not condition:
            self.fail(hop, message)

    def expect_statuses(self, statuses: list[int], *, exit_code: int = 0) -> None:
        r = self.result
        self.evidence.observe(**{f"{self.label}.status_chain": r.describe()})
        if r.statuses == statuses and r.exit_code == exit_code:
            return
        self.fail(self.diagnose(), f"expected statuses {statuses} and exit {exit_code}, got {r.describe()}")

    def diagnose(self) -> str:
        """The first hop that does not show the request, for a client-side surprise."""
        if self.source in self._log_marks and not self.wait_log(self.source, 1, timeout=1.0):
            return APP_SIDECAR
        gateway_lines = self.wait_log(self.gateway, 1, timeout=0.5)
        if not gateway_lines:
            return SIDECAR_GATEWAY if self.source in self._log_marks else APP_UPSTREAM
        if all(e.upstream_cluster is None for e in gateway_lines):
            # The gateway saw the connection but had no filter chain or route for it: what the
            # sidecar sends does not match what the gateway serves.
            return SIDECAR_GATEWAY
        return GATEWAY_UPSTREAM

    def expect_through_gateway(
        self, *, listener: str, count: int, sidecar_cluster_prefix: str, sidecar_entry=lambda e: e.path is not None
    ) -> list[RequestRecord]:
        """Each of `count` requests to the stand-in's `listener` (http, https, mtls) went sidecar → gateway → stand-in."""
        if self.source in self._log_marks:
            side = self.wait_log(self.source, count, where=sidecar_entry)
            self.expect(side, APP_SIDECAR, f"{self.source}'s sidecar logged no request: traffic was not intercepted")
            wrong = [e for e in side if not (e.upstream_cluster or "").startswith(sidecar_cluster_prefix)]
            self.expect(
                not wrong,
                SIDECAR_GATEWAY,
                f"the sidecar sent to {sorted({e.upstream_cluster for e in wrong}, key=str)}, not to the gateway "
                f"({sidecar_cluster_prefix}…): the mesh route does not point at the gateway",
            )
        gw = self.wait_log(self.gateway, count)
        self.expect(len(gw) >= count, SIDECAR_GATEWAY, f"the gateway logged {len(gw)} of {count} request(s)")
        reqs = [r for r in self.wait_upstream_requests(count) if r.listener == listener]
        gateway_ip = self.backend.pod_address(self.gateway)
        from_gw = [r for r in reqs if r.peer_address == gateway_ip]
        self.expect(
            len(from_gw) == count,
            GATEWAY_UPSTREAM,
            f"the stand-in saw {len(from_gw)} {listener} request(s) from the gateway ({gateway_ip}), "
            f"expected {count}; peers seen: {sorted({r.peer_address for r in reqs})}",
        )
        return from_gw
