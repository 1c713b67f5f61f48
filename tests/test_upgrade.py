"""The upgrade run (harness/upgrade/): a short real upgrade FROM=1.30 → TO (--egress-istio-version, 1.31 by
default) on the local mesh, one that breaks egress between phases and must be caught with its phase
and hop, and the traffic figures' arithmetic. The full run is `make upgrade`."""

from __future__ import annotations

import pytest

from harness.manifests import VIA_HEADER
from harness.trace import GATEWAY_UPSTREAM
from harness.upgrade import timeline
from harness.upgrade.flow import Sabotage, UpgradeOptions, UpgradeRun
from harness.upgrade.traffic import figures

FROM = "1.30"


def _quiet(msg: str) -> None:
    print(f"[upgrade] {msg}")


@pytest.fixture(scope="module")
def to_version(istio_version: str) -> str:
    if istio_version == FROM:
        pytest.fail(f"the upgrade smoke test goes {FROM} → --egress-istio-version; pass a version other than {FROM}")
    return istio_version


@pytest.mark.mesh
def test_upgrade_smoke(tmp_path, to_version):
    """In place and canary, two suite cases × both modes per phase, traffic through every transition."""
    report = UpgradeRun(
        UpgradeOptions(
            FROM,
            to_version,
            tmp_path,
            select=["test_http_through_gateway", "test_passthrough_by_sni"],
            snapshot_stages=("http/gateway", "passthrough/gateway"),
            window=3.0,
            precheck=False,
            say=_quiet,
        )
    ).run()
    assert not report.error, report.error
    phases = {r.phase for r in report.results}
    assert phases == {"before", "control-plane", "data-plane", "canary"}, phases
    assert not report.failures(), [(r.phase, r.case, r.mode, r.hop, r.message) for r in report.failures()]
    names = [t.transition for t in report.traffic]
    assert names[:3] == ["control-plane", "gateway", "sidecars"] and len(names) == 7, names
    for t in report.traffic:
        assert t.sent > 20 and t.by_kind["http"].sent and t.by_kind["passthrough"].sent, t.line()
        if t.held_to_threshold:  # istiod replaced, installed or removed: no request may be lost
            assert t.success_rate >= 95.0, t.line()
    assert report.passed()
    # The timeline: a panel per transition, its three marks in order after the traffic began, and
    # requests that answered after the change was applied (what "recovered" was read from). The
    # traffic may stop right after "recovered": no request need be sent after that mark.
    assert report.timeline is not None and report.timeline.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    drawn = timeline.panels(report.timeline.parent / "traffic")
    assert len(drawn) == len(names), [p.transition for p in drawn]
    for panel in drawn:
        assert [label for _, label in panel.marks] == ["change", "changed", "recovered"], panel.marks
        at = [t for t, _ in panel.marks]
        assert 0 <= at[0] <= at[1] <= at[2], (panel.transition, panel.marks)
        assert any(ok and t >= at[1] for t, _, ok in panel.points), (panel.transition, panel.marks)
    assert "traffic-timeline.png" in (report.timeline.parent / "report.md").read_text()
    # The two builds differ: the data plane runs TO's binaries after the upgrade.
    assert all(
        f"Istio {to_version}" in v for k, v in report.proxy_versions["data-plane"].items() if k != "istio-system/istiod"
    )
    assert all(
        f"Istio {FROM}" in v for k, v in report.proxy_versions["control-plane"].items() if k != "istio-system/istiod"
    )
    assert set(report.diff) == {
        "http-gateway.istio-mutual",
        "http-gateway.plaintext",
        "passthrough-gateway.istio-mutual",
        "passthrough-gateway.plaintext",
    }
    md = (tmp_path / "upgrade" / "report.md").read_text()
    assert "## Traffic continuity" in md and "## Envoy config diff" in md
    [analyze] = report.checks  # precheck skipped here: it cannot finish without a real cluster
    assert "analyze --use-kube=false" in analyze["command"] and analyze["rc"] == 0, analyze


def _tamper_route_header(objs: list[dict]) -> list[dict]:
    for o in objs:
        if o["kind"] == "VirtualService":
            for route in o["spec"].get("http", []):
                add = route.get("headers", {}).get("request", {}).get("add", {})
                if VIA_HEADER in add:
                    add[VIA_HEADER] = "tampered"
    return objs


@pytest.mark.mesh
def test_upgrade_that_breaks_egress_is_caught(tmp_path, to_version):
    """A fixture that changes between phases (the gateway's route header) fails the control-plane
    phase at the gateway → upstream hop; the phase before still passes."""
    sab = Sabotage("control-plane", _tamper_route_header, "the gateway route adds a different header value")
    report = UpgradeRun(
        UpgradeOptions(
            FROM,
            to_version,
            tmp_path,
            select=["test_http_through_gateway"],
            modes=("plaintext",),
            canary=False,
            snapshot_stages=("http/gateway",),
            sabotage=sab,
            istioctl_checks=False,
            window=2.0,
            say=_quiet,
        )
    ).run()
    assert not report.passed()
    by_phase = {r.phase: r for r in report.results}
    assert by_phase["before"].outcome == "passed"
    failed = by_phase["control-plane"]
    assert (failed.outcome, failed.hop) == ("failed", GATEWAY_UPSTREAM), failed
    md = (tmp_path / "upgrade" / "report.md").read_text()
    assert f"**FAIL** ({GATEWAY_UPSTREAM})" in md


def test_the_timeline_puts_the_marks_on_the_senders_clock(tmp_path):
    """The harness marks on the wall clock; the sender's `t` starts at its own start: a mark 2.5 s
    after the sender started is at t = 2.5 on the plot, whatever the two processes' start lag."""
    import json

    traffic = tmp_path / "traffic"
    traffic.mkdir()
    start = 1_800_000_000.0
    records = [
        {"i": i, "kind": kind, "t": i * 0.5, "wall": start + i * 0.5, "ok": i != 5, "detail": "200"}
        for i, kind in zip(range(10), ["http", "passthrough"] * 5, strict=True)
    ]
    (traffic / "traffic-gateway.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    (traffic / "traffic-gateway.marks.json").write_text(json.dumps([{"label": "change", "wall": start + 2.5}]))
    [panel] = timeline.panels(traffic)
    assert panel.transition == "gateway" and panel.kinds == ["http", "passthrough"]
    assert panel.marks == [(2.5, "change")]
    assert [(t, k) for t, k, ok in panel.points if not ok] == [(2.5, "passthrough")]
    out = timeline.draw(traffic, tmp_path / "timeline.png")
    assert out is not None and out.read_bytes()[:4] == b"\x89PNG"
    assert timeline.draw(tmp_path / "none", tmp_path / "x.png") is None


def test_traffic_figures_longest_gap_and_counts():
    recs = [
        {
            "i": i,
            "kind": "http" if i % 2 == 0 else "passthrough",
            "t": i * 0.05,
            "ok": not 20 <= i < 40,
            "detail": "301" if not 20 <= i < 40 else "ConnectionRefusedError: [Errno 111]",
        }
        for i in range(100)
    ]
    f = figures("gateway", recs, 20.0, 5.0)
    assert (f.sent, f.failed) == (100, 20)
    assert f.success_rate == 80.0
    assert f.longest_gap_s == pytest.approx(1.05)  # last success at i=19 (0.95 s), next at i=40 (2.0 s)
    assert f.by_kind["http"].errors == {"ConnectionRefusedError": 10}
    assert figures("none", [], 20.0, 1.0).sent == 0


@pytest.mark.mesh
@pytest.mark.slow
def test_upgrade_of_your_own_egress(tmp_path, to_version):
    """`make upgrade SPEC=examples/payments/egress.yaml`: the spec's seven expectations pass in every
    phase, the continuous traffic runs the spec's own gateway paths, and the config diff is of its
    hosts. A child process: the spec's pods and hosts replace the seed's tables for that process."""
    import json
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    spec = root / "examples" / "payments" / "egress.yaml"
    proc = subprocess.run(
        [sys.executable, "-m", "harness.upgrade", "--from", FROM, "--to", to_version, "--spec", str(spec)]
        + ["--window", "3", "--artifacts", str(tmp_path)],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    report = json.loads((tmp_path / "upgrade" / "report.json").read_text())
    cases = report["results"]
    phases = {c["phase"] for c in cases}
    assert phases == {"before", "control-plane", "data-plane", "canary"}, phases
    assert len(cases) == 4 * 7 and all(c["outcome"] == "passed" for c in cases), cases
    md = (tmp_path / "upgrade" / "report.md").read_text()
    assert "https-api.pay.example ok/sent" in md and "http-legacy.partner.example ok/sent" in md, md[-2000:]
    assert "edition.cnn.com" not in (tmp_path / "upgrade" / "config-diff.txt").read_text()
