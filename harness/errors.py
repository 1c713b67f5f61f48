"""The harness's errors, by kind, so that a red test says whose fault it is.

- HarnessError: bad input or environment (a missing command, no root, a broken fixture): one line
  naming the fix, raised before anything starts; the plugin ends the session with it (exit 2).
- HarnessFault: the harness or its own infrastructure broke while running (a process it started
  died, iptables-restore failed, teardown left something): an error of the harness, reported as
  such, never as a mesh failure. ProcessExited: a process the whole session relies on (the
  stand-in, istiod) exited; every later test would fail the same way, so the session stops.
- MeshFailure and its kinds (assertions): the mesh did not do what the scenario expects. A
  HopFailure names the hop (app → sidecar → gateway → upstream); ConfigRejected is a NACK;
  ManifestRejected is Istio refusing a manifest.
"""


class HarnessError(Exception):
    """Bad input or environment; the message is one line and says what to do."""


class HarnessFault(Exception):
    """The harness itself (or what it started) failed: not a verdict on the mesh."""


class ProcessExited(HarnessFault):
    """A process the session holds exited (one line: which, its status, its log tail): the
    plugin reports it once and stops the session."""


class MeshFailure(AssertionError):
    """The mesh did not behave as the scenario expects."""


class HopFailure(MeshFailure):
    """A traffic assertion failed at a named hop (app → sidecar → gateway → upstream)."""

    # True: the message says it all and the harness's frames behind it say nothing (istiod did
    # not answer its debug endpoint): it reads as one line, its traceback goes to the evidence.
    one_line = False

    def __init__(self, hop: str, message: str, *, one_line: bool = False):
        self.hop = hop
        self.step: str | None = None  # set by Scenario.step when raised inside a named step
        self.one_line = one_line
        super().__init__(f"[hop: {hop}] {message}")


class ConfigRejected(MeshFailure):
    """A proxy NACKed the config istiod sent (Envoy's message included)."""


class ManifestRejected(MeshFailure):
    """Istio's validation refused a manifest; the message is its own."""
