"""`python -m harness.upgrade --from 1.30 --to 1.31`: the upgrade run of flow.py, report in
<artifacts>/upgrade/report.md. Run it as root or through `python -m harness.rootless` (make upgrade)."""

from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path

from harness.console import description
from harness.errors import HarnessError

SMOKE_CASES = ["test_http_through_gateway", "test_passthrough_by_sni"]


def main(argv: list[str] | None = None) -> int:
    from harness.upgrade.flow import UpgradeOptions, UpgradeRun

    p = argparse.ArgumentParser(prog="python -m harness.upgrade", description=description(__doc__))
    p.add_argument("--from", dest="frm", required=True, help="Istio version before (e.g. 1.30)")
    p.add_argument("--to", required=True, help="Istio version after (e.g. 1.31)")
    p.add_argument("--artifacts", type=Path, default=Path("artifacts"))
    p.add_argument("--select", action="append", help="only suite cases whose id contains this (repeatable)")
    p.add_argument("--smoke", action="store_true", help=f"only {', '.join(SMOKE_CASES)} (make test)")
    p.add_argument("--no-canary", action="store_true", help="skip the canary (revision) flow")
    p.add_argument("--rate", type=float, default=20.0, help="continuous traffic, requests per second")
    p.add_argument("--window", type=float, default=10.0, help="seconds of traffic per transition at least")
    p.add_argument("--spec", type=Path, default=None, help="an egress spec: its expectations in every phase (README)")
    a = p.parse_args(argv)
    select = a.select or (SMOKE_CASES if a.smoke else None)
    # SIGTERM (CI timeouts, `kill`) takes the Ctrl-C path: the mesh and the traffic sender are torn down.
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt("SIGTERM")))
    if not 0 < a.rate <= 200 or not 0 < a.window <= 120:
        print("egress-harness: error: --rate must be in (0, 200] and --window in (0, 120] seconds", file=sys.stderr)
        return 2
    try:
        run = UpgradeRun(
            UpgradeOptions(
                a.frm,
                a.to,
                a.artifacts.resolve(),
                select=select,
                canary=not a.no_canary,
                rate=a.rate,
                window=a.window,
                spec=a.spec.resolve() if a.spec else None,
            )
        )
        report = run.run()
    except HarnessError as exc:
        print(f"egress-harness: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("egress-harness: interrupted (the mesh was torn down)", file=sys.stderr)
        return 130
    print(
        f"upgrade {a.frm} → {a.to}: {'PASSED' if report.passed() else 'FAILED'}; "
        f"{len(report.results) - len(report.failures())}/{len(report.results)} cases passed; "
        f"config diff {report.diff_line_count()} changes; wall {report.wall_seconds:.0f} s"
    )
    for t in report.traffic:
        print(f"  {t.line()}")
    if report.error:
        print(f"  stopped: {report.error}")
    return 0 if report.passed() else 1


if __name__ == "__main__":
    sys.exit(main())
