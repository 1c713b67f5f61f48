"""Helpers shared by the root and the suites' conftest (a module, so both can import it)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

REPORT_KEY = pytest.StashKey[dict]()
EVIDENCE_KEY = pytest.StashKey[object]()


def has_failed(item: pytest.Item) -> bool:
    reports = item.stash.get(REPORT_KEY, {})
    return any(r.failed for r in reports.values())


def outcome_of(item: pytest.Item) -> str:
    reports = item.stash.get(REPORT_KEY, {})
    if any(r.failed for r in reports.values()):
        return "failed"
    if any(r.skipped for r in reports.values()):
        return "skipped"
    return "passed"


def evidence_dir_for(artifacts: Path, item: pytest.Item) -> Path:
    safe = re.sub(r"[^A-Za-z0-9_.\-\[\]]+", "_", item.nodeid).strip("_")
    return artifacts / "evidence" / safe
