"""matplotlib for the plots (the egress benchmark's latencies, the upgrade report's timeline): it is
in the local mesh's extra, so a user without it gets one line naming the install."""

from __future__ import annotations

from types import ModuleType

from harness.errors import HarnessError


def pyplot() -> ModuleType:
    """matplotlib.pyplot drawing to files only (the Agg backend: no display)."""
    try:
        import matplotlib
    except ImportError:
        raise HarnessError("the plots need matplotlib: pip install 'egress-harness[local]'") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt
