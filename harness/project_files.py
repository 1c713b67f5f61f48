"""Where the project's fixtures/ and suites/ are.

In a checkout they sit at the repository's top level, beside harness/, where users look for them.
An installed wheel carries them inside the package, as harness/_data/fixtures and
harness/_data/suites (pyproject's package-dir), so `egress-harness e2e` finds the suites and every
stage's manifests without the repository."""

from __future__ import annotations

import importlib.util
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent


def data_dir(name: str) -> Path:
    """The installed copy if this is a wheel's package, else the checkout's top-level folder."""
    installed = PACKAGE / "_data" / name
    return installed if installed.is_dir() else PACKAGE.parent / name


FIXTURES = data_dir("fixtures")
SUITES = data_dir("suites")


def _package_folder(name: str) -> Path:
    spec = importlib.util.find_spec(name)  # found, not imported
    if spec is None or spec.origin is None:
        raise ImportError(f"{name} is not installed beside harness: reinstall egress-harness")
    return Path(spec.origin).resolve().parent


# The stand-in's package: the local mesh runs it with its parent on PYTHONPATH, and its folder is
# the stand-in image's Docker context (its Dockerfile is package data).
MOCK_UPSTREAM = _package_folder("mock_upstream")
