"""Errors the harness raises on purpose.

A HarnessError is a user-facing problem (bad input, missing binary, no root): its message is one
line that names the fix. conftest turns it into a clean pytest exit instead of a traceback.
"""


class HarnessError(Exception):
    """Bad input or environment; the message is one line and says what to do."""


class HopFailure(AssertionError):
    """A traffic assertion failed at a named hop (app → sidecar → gateway → upstream)."""

    def __init__(self, hop: str, message: str):
        self.hop = hop
        super().__init__(f"[hop: {hop}] {message}")


class ConfigRejected(AssertionError):
    """A proxy NACKed the config istiod sent (Envoy's message included)."""


class ManifestRejected(AssertionError):
    """Istio's validation refused a manifest; the message is its own."""
