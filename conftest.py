"""This repository's own pytest sessions (make test, make unit, make e2e, CI): they report like a
harness session whatever their tests request. A unit run that starts no mesh still writes its
junit.xml and summary.md into the artifacts folder CI reads, and takes its lock, so two runs on one
folder stop at once. Installed elsewhere, the plugin (harness/pytest_plugin.py) does that only for
a session whose tests request one of its fixtures, and leaves every other session of the venv
alone."""

from __future__ import annotations

import pytest

from harness import pytest_plugin


def pytest_configure(config: pytest.Config) -> None:
    pytest_plugin.activate(config)
