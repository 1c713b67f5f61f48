"""fortio's server in the stand-in's place: the benchmark's upstream must not be the bottleneck.

mock_upstream is stdlib Python (one thread per connection, a ~150 KB page on 443): it would
measure itself. fortio's echo server (Go, what Istio's own benchmarks use) answers 200 with an
empty body, HTTP on 80 and TLS on 443 with a certificate for edition.cnn.com from the same test
public CA, on the stand-in's address 203.0.113.x.

Why in the stand-in's place rather than next to it: the suites' manifests (fixtures/) route to
edition.cnn.com ports 80 and 443, and the pods resolve edition.cnn.com to the stand-in's address
(their /etc/hosts, harness.local.pods). Running fortio there, on those ports, lets the benchmark
apply exactly the manifests the suites apply; fortio on other ports or another address would need
benchmark-only manifests, and the benchmark would no longer measure what the suites check. So
mock_upstream's listeners are stopped first (the benchmark never asks the stand-in what it saw).
The servers run in the internet namespace, recorded in the run state like every mesh process, so
teardown and the watchdog end them.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from harness.errors import HarnessError
from harness.local.netns import pod_env
from harness.local.pods import UPSTREAM_HOST
from harness.local.processes import ManagedProcess
from harness.stand_in import UPSTREAM_PORTS, issue_upstream_certificate
from harness.wait import poll

if TYPE_CHECKING:
    from harness.local.mesh import LocalMesh


@dataclass
class FortioUpstream:
    mesh: LocalMesh
    fortio: Path
    servers: dict[str, ManagedProcess] = field(default_factory=dict)

    def start(self) -> None:
        mesh = self.mesh
        assert mesh.pki is not None and mesh.upstream_process is not None
        mesh.upstream_process.stop(grace=1.0)  # frees ports 80 and 443
        cert = issue_upstream_certificate(mesh.pki.public_ca, "fortio-upstream")
        common = [
            "-loglevel",
            "Warning",
            "-grpc-port",
            "disabled",
            "-redirect-port",
            "disabled",
            "-tcp-port",
            "disabled",
            "-udp-port",
            "disabled",
            "-ui-path",
            "",
        ]
        for name, port, tls in (
            ("http", UPSTREAM_PORTS["http"], []),
            ("https", UPSTREAM_PORTS["https"], ["-cert", str(cert.chain_path), "-key", str(cert.key_path)]),
        ):
            argv = [str(self.fortio), "server", *common, *tls, "-http-port", f"0.0.0.0:{port}"]
            proc = ManagedProcess(
                f"fortio server {name} :{port}",
                mesh.upstream_ns.wrap(argv),
                mesh.log_dir / f"fortio-upstream-{name}.log",
                env=pod_env(UPSTREAM_HOST),
                cwd=Path("/"),
            )
            proc.start(mesh.state)
            self.servers[name] = proc
        for name, proc in self.servers.items():
            port = UPSTREAM_PORTS[name]
            poll(
                f"fortio's {name} server listening on {mesh.upstream_address}:{port}",
                functools.partial(self._accepts, proc, port),
                timeout=10,
            )

    def _accepts(self, proc: ManagedProcess, port: int) -> bool:
        if not proc.alive():
            raise HarnessError(f"{proc.name} died: {proc.exit_summary()}")
        with self.mesh.upstream_ns.socket() as sock:
            sock.settimeout(1.0)
            try:
                sock.connect((self.mesh.upstream_address, port))
            except OSError:
                return False
        return True

    def pids(self) -> list[int]:
        return [p.pid for p in self.servers.values()]

    def stop(self) -> None:
        for proc in self.servers.values():
            proc.stop(grace=1.0)
