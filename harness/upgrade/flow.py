"""`make upgrade FROM=1.30 TO=1.31`: one mesh taken through an Istio upgrade, the suites at each step.

In place (one mesh):
  before         mesh on FROM; the suites; snapshot of every proxy's config per scenario
  (checks)       TO's `istioctl x precheck` and `istioctl analyze --use-kube=false` on the manifests
  control-plane  istiod replaced by TO's, proxies still FROM (the supported N-1 skew); the suites;
                 snapshot (so each change of the diff is attributed to istiod or to the proxy)
  data-plane     the egress gateway, then each sidecar restarted with TO's pilot-agent + Envoy; the
                 suites; snapshot; the semantic diff before → after
Canary (a second mesh, on by default): TO's istiod as revision `1-31` beside FROM's; the gateway
and the sleep pod moved to it by their `istio.io/rev` label; FROM's istiod removed; the suites.

Every transition runs under continuous egress traffic (traffic.py) whose losses are reported.
Only the local mesh is implemented; the kind backend has no upgrade yet (see README).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from harness.config_diff import DEFAULT_HOSTS, diff_paths
from harness.errors import HarnessError
from harness.istio_binaries import ensure_istio
from harness.manifests import MODES, render
from harness.upgrade import snapshot
from harness.upgrade.precheck import run_istioctl_checks
from harness.upgrade.report import UpgradeReport
from harness.upgrade.suites_runner import collect_cases, run_phase
from harness.upgrade.traffic import SEED_TARGETS, ContinuousTraffic

GATEWAY = "istio-system/istio-egressgateway"
SLEEP = "default/sleep"


@dataclass
class Sabotage:
    """A deliberate break between phases, to prove the run catches it: from phase `from_phase` on,
    the scenarios' rendered manifests go through `alter`."""

    from_phase: str
    alter: Callable[[list[dict]], list[dict]]
    description: str


@dataclass
class UpgradeOptions:
    from_version: str
    to_version: str
    artifacts: Path
    select: list[str] | None = None  # suite case ids containing one of these words; None: all
    modes: tuple[str, ...] = MODES
    canary: bool = True
    revision: str = ""  # default: TO's minor with "-" ("1-31")
    rate: float = 20.0
    window: float = 10.0  # seconds of traffic per transition at least
    snapshot_stages: tuple[str, ...] = snapshot.SNAPSHOT_STAGES
    sabotage: Sabotage | None = None
    istioctl_checks: bool = True
    precheck: bool = True  # istioctl x precheck (15 s here: it does not finish without a real cluster)
    say: Callable[[str], None] = field(default=lambda m: print(f"[upgrade] {m}", file=sys.stderr, flush=True))
    spec: Path | None = None  # an egress spec: its expectations in every phase (harness/spec/upgrade.py)


def traffic_manifests(trust: dict) -> list[dict]:
    """HTTP (§1) and passthrough (§3) through the gateway at once, plaintext on the sidecar → gateway
    hop: the two stages' objects share names, so their specs are merged (SE ports by number, the
    Gateway's servers, the VirtualService's http and tls routes)."""
    http = render("http/gateway", mode="plaintext", trust=trust)
    tls = render("passthrough/gateway", mode="plaintext", trust=trust)
    merged = {(o["kind"], o["metadata"]["name"]): o for o in http}
    for o in tls:
        key = (o["kind"], o["metadata"]["name"])
        base = merged.setdefault(key, o)
        if base is o:
            continue
        spec, extra = base["spec"], o["spec"]
        if o["kind"] == "ServiceEntry":
            ports = {p["number"]: p for p in spec["ports"]}
            ports.update({p["number"]: p for p in extra["ports"]})
            spec["ports"] = sorted(ports.values(), key=lambda p: p["number"])
        elif o["kind"] == "Gateway":
            spec["servers"] += extra["servers"]
        elif o["kind"] == "VirtualService":
            spec["tls"] = extra["tls"]
    return list(merged.values())


class UpgradeRun:
    def __init__(self, opts: UpgradeOptions):
        if opts.from_version == opts.to_version:
            raise HarnessError(
                f"FROM and TO are both {opts.from_version}: an upgrade needs two versions (e.g. FROM=1.30 TO=1.31)"
            )
        from harness.versions import resolve_release

        resolve_release(opts.from_version), resolve_release(opts.to_version)  # bad names: one line, nothing started
        self.opts = opts
        self.out = opts.artifacts / "upgrade"
        self.report = UpgradeReport(opts.from_version, opts.to_version)
        self.spec = None
        if opts.spec is not None:
            from harness.spec.upgrade import SpecUpgrade

            self.spec = SpecUpgrade(opts.spec)  # a bad spec: one line, nothing started
            self.cases = []
        else:
            self.cases = collect_cases(opts.select)
            if not self.cases:
                raise HarnessError(f"no suite case matches {opts.select}: see the test names in suites/")
        self.revision = opts.revision or opts.to_version.replace(".", "-")
        self._phase_index: dict[str, int] = {}

    def say(self, msg: str) -> None:
        self.opts.say(msg)

    # ---------------------------------------------------------------- the run
    def run(self) -> UpgradeReport:
        from harness.local.mesh import preflight

        started = time.monotonic()
        preflight()
        self.frm = ensure_istio(self.opts.from_version)
        self.to = ensure_istio(self.opts.to_version)
        if self.frm.pilot_discovery == self.to.pilot_discovery:
            raise HarnessError("FROM and TO resolve to the same binaries: pick two different builds")
        self.report.builds = {self.opts.from_version: self.frm.describe(), self.opts.to_version: self.to.describe()}
        if self.spec is not None:
            self.spec.validate(self.to.istioctl)
        try:
            self._in_place()
            if self.opts.canary:
                self._canary()
        except HarnessError as exc:
            self.report.error = str(exc)
        except AssertionError as exc:  # a wait that a NACK or a hop failure ended
            self.report.error = f"{type(exc).__name__}: {str(exc).splitlines()[0]}"
        finally:
            self.report.wall_seconds = time.monotonic() - started
            path = self.report.write(self.out)
            self.say(f"report: {path}")
        return self.report

    def _in_place(self) -> None:
        from harness.local import upgrade_ops
        from harness.local.mesh import LocalMesh

        self.report.flows.append("in-place")
        mesh = LocalMesh(self.frm, self.out / "in-place")
        try:
            mesh.start()
            if self.spec is not None:
                self.spec.apply(mesh)
            self._versions(mesh, "start")
            self._suites(mesh, "before")
            self._snapshot(mesh, "before")

            if self.opts.istioctl_checks:
                self.report.checks = run_istioctl_checks(
                    mesh, self.to, self.out / "istioctl", self.opts.from_version, precheck=self.opts.precheck
                )
            for chk in self.report.checks:
                self.say(f"{chk['command']}: exit {chk['rc']}, {len(chk['messages'])} message(s)")

            self._transition(mesh, "control-plane", lambda: mesh.replace_istiod(self.to))
            self._versions(mesh, "control-plane")
            self._suites(mesh, "control-plane")
            # Istiod is TO, the proxies still FROM: what changes here comes from the control plane.
            self._snapshot(mesh, "control-plane")

            self._transition(mesh, "gateway", lambda: mesh.restart_proxy(GATEWAY, self.to), restarts_proxy=True)
            sidecars = [k for k, p in mesh.pods.items() if p.proxy is not None and p.proxy.spec.kind == "sidecar"]

            def restart_sidecars() -> None:
                for key in sidecars:
                    mesh.restart_proxy(key, self.to)

            self._transition(mesh, "sidecars", restart_sidecars, restarts_proxy=True)
            # From now on the "injector" gives new sidecars (the NetworkPolicy suite's redeploy) TO's proxy.
            mesh.binaries = upgrade_ops.stage_binaries(mesh, self.to)
            self._versions(mesh, "data-plane")
            self._suites(mesh, "data-plane")
            self._snapshot(mesh, "after")
        finally:
            mesh.stop()
        snaps = self.out / "snapshots"
        hosts = self.spec.diff_hosts() if self.spec is not None else DEFAULT_HOSTS
        for name in sorted(p.name for p in (snaps / "before").iterdir()):
            self.report.diff[name] = diff_paths(snaps / "before" / name, snaps / "after" / name, hosts=hosts)
            # Attribution: a change already there with TO's istiod and FROM's proxies is istiod's doing.
            by_istiod = {
                c.line() for c in diff_paths(snaps / "before" / name, snaps / "control-plane" / name, hosts=hosts)
            }
            self.report.diff_origin[name] = [
                "istiod" if c.line() in by_istiod else "proxy" for c in self.report.diff[name]
            ]
        self.say(f"config diff: {self.report.diff_line_count()} changes")

    def _canary(self) -> None:
        from harness.local import upgrade_ops
        from harness.local.mesh import LocalMesh

        self.report.flows.append("canary")
        mesh = LocalMesh(self.frm, self.out / "canary")
        rev = None
        try:
            mesh.start()
            if self.spec is not None:
                self.spec.apply(mesh)
            holder = {}

            def install() -> None:
                holder["rev"] = upgrade_ops.add_revision(mesh, self.to, self.revision)

            self._transition(mesh, f"canary: istiod {self.revision} installed", install)
            rev = installed = holder["rev"]  # `rev` is cleared once the mesh owns it; `installed` is not
            label = {upgrade_ops.REV_LABEL: self.revision}
            self._transition(
                mesh,
                f"canary: gateway → {self.revision}",
                lambda: mesh.restart_proxy(GATEWAY, self.to, labels=label, istiod=installed.istiod),
                restarts_proxy=True,
            )
            for source in self.spec.sidecar_sources() if self.spec is not None else [SLEEP]:

                def move(source: str = source) -> None:
                    mesh.restart_proxy(source, self.to, labels=label, istiod=installed.istiod)

                self._transition(
                    mesh,
                    f"canary: {source if self.spec is not None else 'sleep'} → {self.revision}",
                    move,
                    restarts_proxy=True,
                )
            self._transition(
                mesh,
                f"canary: istiod {self.opts.from_version} removed",
                lambda: upgrade_ops.promote_revision(mesh, installed),
            )
            rev = None  # the mesh owns it now
            mesh.binaries = upgrade_ops.stage_binaries(mesh, self.to)
            self._versions(mesh, "canary")
            self._suites(mesh, "canary")
        finally:
            if rev is not None:
                upgrade_ops.stop_revision(rev)
            mesh.stop()

    # ---------------------------------------------------------------- steps
    def _snapshot(self, mesh, phase: str) -> None:
        self.say(f"snapshot {phase}")
        if self.spec is not None:
            snapshot.take_as_is(mesh, self.out / "snapshots" / phase)
        else:
            snapshot.take(mesh, self.out / "snapshots" / phase, self.opts.snapshot_stages, self.opts.modes)

    def _suites(self, mesh, phase: str) -> None:
        self._phase_index[phase] = len(self._phase_index)
        if self.spec is not None:
            self.say(f"phase {phase}: {len(self.spec.spec.expectations)} expectations of {self.opts.spec}")
            self.report.results += self.spec.run_phase(mesh, phase, self.out / "evidence", self.say)
            return
        alter = None
        sab = self.opts.sabotage
        if sab and sab.from_phase in self._phase_index:
            alter = sab.alter
            self.say(f"sabotage from {sab.from_phase}: {sab.description}")
        self.say(f"phase {phase}: {len(self.cases)} cases × {len(self.opts.modes)} modes")
        self.report.results += run_phase(
            mesh, phase, self.cases, self.out / "evidence", self.opts.modes, alter, self.say
        )

    def _transition(self, mesh, name: str, change: Callable[[], object], *, restarts_proxy: bool = False) -> None:
        # The seed's traffic needs its paths applied for the transition; a spec's stay applied.
        objs = traffic_manifests(mesh.upstream_trust()) if self.spec is None else []
        if objs:
            mesh.apply(objs)
        self.say(f"transition {name} under traffic ({self.opts.rate:g} req/s)")
        pod, targets = self.spec.traffic_targets() if self.spec is not None else (SLEEP, SEED_TARGETS)
        traffic = ContinuousTraffic(
            mesh,
            _slug(name),
            self.out / "traffic",
            rate=self.opts.rate,
            min_window=self.opts.window,
            pod=pod,
            targets=targets,
        )
        try:
            with traffic:
                traffic.mark("change")
                change()
                traffic.mark("changed")
                # Losses that follow the change count too: keep sending until both kinds flow again.
                traffic.wait_recovered()
                traffic.mark("recovered")
                traffic.wait_window()
        finally:
            if traffic.figures is not None:
                traffic.figures.transition = name
                traffic.figures.held_to_threshold = not restarts_proxy
                self.report.traffic.append(traffic.figures)
                self.say(f"  {traffic.figures.line()}")
            if objs:
                mesh.delete(objs)

    def _versions(self, mesh, phase: str) -> None:
        from harness.local.upgrade_ops import proxy_versions

        versions = proxy_versions(mesh)
        versions["istio-system/istiod"] = f"pilot-discovery {mesh.istiod.binary}"
        self.report.proxy_versions[phase] = versions


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in name).strip("-")
