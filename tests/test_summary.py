"""summary.md and summary.json (harness/summary.py) say the same rows, and harness.fidelity reads
either into the same table."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

from harness.fidelity import load_summary
from harness.summary import SummaryWriter


def _item(name: str, mode: str, **params: str) -> SimpleNamespace:
    return SimpleNamespace(
        module=SimpleNamespace(__name__="suites.test_cleanup"),
        callspec=SimpleNamespace(params={"mode": mode, **params}),
        originalname=name,
        name=f"{name}[{'-'.join([mode, *params.values()])}]",
        nodeid=f"suites/test_cleanup.py::{name}[{'-'.join([mode, *params.values()])}]",
    )


def test_rows_name_every_parameter_and_both_files_read_the_same(tmp_path: Path):
    writer = SummaryWriter()
    for stage in ("http/gateway", "origination/simple"):
        writer.add(_item("test_delete_returns_to_baseline", "plaintext", stage=stage), "passed", {"after": []})
    writer.add(_item("test_x", "istio-mutual"), "failed", {"sni": "a|b"}, hop="sidecar → gateway")
    writer.write(tmp_path / "summary.md")
    (tmp_path / "summary.json").write_text(json.dumps(writer.as_json({"backend": "local"})))
    rows = load_summary(tmp_path / "summary.md")
    assert list(rows) == [
        ("cleanup", "test_delete_returns_to_baseline[http/gateway]", "plaintext"),
        ("cleanup", "test_delete_returns_to_baseline[origination/simple]", "plaintext"),
        ("cleanup", "test_x", "istio-mutual"),
    ]
    assert load_summary(tmp_path / "summary.json") == rows
    tests = json.loads((tmp_path / "summary.json").read_text())["tests"]
    assert tests[2]["id"] == "suites/test_cleanup.py::test_x[istio-mutual]" and tests[2]["hop"] == "sidecar → gateway"
