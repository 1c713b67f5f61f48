"""What a harness session tells CI and the terminal, beside summary.md (registered by
harness/pytest_plugin.py; it acts only in a session the plugin activated).

- junit.xml: a harness fault is an `<error>` and a mesh verdict a `<failure>`, in whatever phase
  it happened (pytest writes every call-phase exception as a failure, every fixture's as an error,
  so a dashboard would count a harness fault as a broken mesh); each test's properties (its
  outcome, the hop that failed, its key observations), and the session's (backend, Istio and
  Envoy versions) on the `<testsuite>`, so the files of a nightly version matrix say which run
  each is.
- summary.json: summary.md's rows with full test ids, the totals and the session's properties
  (what harness.fidelity and a CI script read).
- `$GITHUB_STEP_SUMMARY`, when set: summary.md appended (the job's summary page on GitHub).
- The report header names backend, Istio version and artifacts folder; the last line says where
  the reports and the evidence are.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

ACTIVE = pytest.StashKey[bool]()  # the session took the artifacts folder, the signals and junit.xml
ARTIFACTS = pytest.StashKey[Path]()
SUITE = pytest.StashKey[dict[str, str]]()  # the session's properties, in order
HOP = pytest.StashKey[str]()  # the hop of a test's HopFailure
PREFIX = "egress_harness."


def active(config: pytest.Config) -> bool:
    return config.stash.get(ACTIVE, False)


def _junit(config: pytest.Config) -> Any:
    from _pytest.junitxml import xml_key

    return config.stash.get(xml_key, None)


def add_suite_property(config: pytest.Config, name: str, value: str) -> None:
    """A property of the session: on junit.xml's <testsuite>, in summary.json and the header."""
    config.stash.setdefault(SUITE, {})[name] = value
    xml = _junit(config)
    if xml is not None:
        xml.add_global_property(PREFIX + name, value)


_LABELS = {"istio_version": "Istio", "envoy_version": "Envoy"}


def header_lines(config: pytest.Config) -> list[str]:
    props = config.stash.get(SUITE, {})
    facts = ", ".join(f"{_LABELS.get(k, k)} {v}" for k, v in props.items())
    return [f"egress-harness: {facts}; artifacts in {config.stash[ARTIFACTS]}"]


def properties_of(item: pytest.Item, outcome: str, observations: dict[str, Any]) -> list[tuple[str, str]]:
    props = [(PREFIX + "outcome", outcome)]
    hop = item.stash.get(HOP, None)
    if hop:
        props.append((PREFIX + "hop", hop))
    props += [
        (PREFIX + key, value if isinstance(value, str) else json.dumps(value, default=str))
        for key, value in observations.items()
    ]
    return props


class SessionReports:
    """Registered by the plugin's activate(): the hooks of a harness session only."""

    def __init__(self, config: pytest.Config):
        self.config = config

    def pytest_report_header(self, config: pytest.Config) -> list[str]:
        return header_lines(config)

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_logreport(self, report: pytest.TestReport) -> Any:
        result = yield
        if report.failed:
            harness_error = getattr(report, "harness_error", False)
            if harness_error and report.when == "call":
                self._retag(report, "error")
            elif not harness_error and report.when != "call":
                self._retag(report, "failure")  # a mesh verdict in a fixture: a failure, as the terminal says
        return result

    def _retag(self, report: pytest.TestReport, tag: str) -> None:
        """The element junitxml just wrote for this report, as `tag`, its counts moved with it."""
        xml = _junit(self.config)
        if xml is None:
            return
        other = "failure" if tag == "error" else "error"
        node = next((n for n in reversed(xml.node_reporter(report).nodes) if n.tag == other), None)
        if node is None:
            return
        node.tag = tag
        xml.stats[other] -= 1
        xml.stats[tag] += 1
        if tag == "error":
            node.set("message", "harness error (not a failure of the mesh): " + node.get("message", ""))

    def pytest_unconfigure(self, config: pytest.Config) -> None:
        """The run's last line, after pytest's totals: where its reports and evidence are."""
        terminalreporter = config.pluginmanager.get_plugin("terminalreporter")
        if terminalreporter is None or config.option.collectonly:
            return
        artifacts = self.config.stash[ARTIFACTS]
        xml = _junit(self.config)
        junit = f", {xml.logfile}" if xml is not None else ""
        failed = terminalreporter.stats.get("failed") or terminalreporter.stats.get("error")
        evidence = f"; the evidence of each failed test under {artifacts / 'evidence'}" if failed else ""
        terminalreporter.write_line(f"egress-harness: {artifacts / 'summary.md'}, summary.json{junit}{evidence}")


def write_json(path: Path, summary: dict[str, Any]) -> None:
    path.write_text(json.dumps(summary, indent=2) + "\n")


def step_summary(markdown: Path) -> None:
    """summary.md appended to $GITHUB_STEP_SUMMARY (GitHub Actions' job summary), when set."""
    target = os.environ.get("GITHUB_STEP_SUMMARY")
    if not target:
        return
    try:
        with open(target, "a") as out:
            out.write(markdown.read_text() + "\n")
    except OSError as exc:
        print(f"egress-harness: cannot append to GITHUB_STEP_SUMMARY {target}: {exc.strerror}")
