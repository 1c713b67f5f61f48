"""A test module that the hardening tests run in a child pytest (its name has no test_ prefix, so
`make test` does not collect it): it starts the session's mesh through the plugin, writes the
run id to $EH_READY, then blocks on the FIFO $EH_HOLD until the child is signalled or killed."""

from __future__ import annotations

import os
from pathlib import Path


def test_hold(mesh):
    Path(os.environ["EH_READY"]).write_text(mesh.run_id)
    with open(os.environ["EH_HOLD"]) as fifo:  # nobody opens it for writing: blocks until a signal
        fifo.read()
