"""harness/converge.py's barrier, as logic: a target scripted with istiod's syncz as a real one
reads it (tests/test_converge.py runs the same wait against a real istiod and Envoy, where the
marker's push has so far always been whole; this is the path that covers the push still being
sent). A scripted target is a stand-in for parsing istiod's answers, never evidence of a mesh."""

from __future__ import annotations

import re

from harness.converge import converge
from harness.sync import CLUSTER_TYPE, TAIL_TYPES

UUID = "e9231e89-c20f-4769-ba05-6240355d5b43"


class Scripted:
    """Two proxies; istiod's push n holds marker generation n's cluster. `tail_lag` pushes of the
    gateway's listeners are behind its clusters until a second marker is applied."""

    poll_interval = 0.001

    def __init__(self, tail_lag: int):
        self.push = 1
        self.tail_lag = tail_lag
        self.markers: list[str] = []

    def configz(self, deadline: float) -> list[dict]:
        return []

    def syncz(self, deadline: float) -> list[dict]:
        def nonce(n: int) -> str:
            return f"2026-12-06T21:58:47Z/{n}{UUID}"

        def status(proxy: str, listener_push: int) -> dict:
            resources = {CLUSTER_TYPE: {"sent": nonce(self.push), "acked": nonce(self.push)}}
            resources[TAIL_TYPES[0]] = {"sent": nonce(listener_push), "acked": nonce(listener_push)}
            return {"proxy": proxy, "resources": resources}

        return [status("sleep.default", self.push), status("gw.istio-system", self.push - self.tail_lag)]

    def apply_marker(self, marker: dict) -> None:
        self.markers.append(marker["spec"]["hosts"][0])
        self.push += 1
        if len(self.markers) > 1:  # the barrier's push: the first one was wholly sent before it
            self.tail_lag = 0

    def proxy_names(self) -> list[str]:
        return ["default/sleep", "istio-system/gw"]

    def has_cluster(self, proxy: str, name_regex: str) -> bool:
        return re.search(name_regex, f"outbound|9||{self.markers[-1]}") is not None

    def istiod_exited(self) -> None:
        pass

    def istiod_complaints(self) -> str:
        return ""


def test_a_whole_push_needs_no_barrier():
    target = Scripted(tail_lag=0)
    result = converge(target, 3, timeout=2.0)
    assert target.markers == ["sync-3.egress-harness.invalid"]
    assert result.barrier == ""


def test_listeners_behind_the_markers_push_wait_for_the_barrier_marker():
    target = Scripted(tail_lag=1)
    result = converge(target, 3, timeout=2.0)
    assert target.markers == ["sync-3.egress-harness.invalid", "sync-3b.egress-harness.invalid"]
    assert result.barrier == "gw.istio-system Listener sent in push 1, clusters in push 2"
