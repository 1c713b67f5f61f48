"""The one way the harness speaks to the person running it outside pytest's report: a line on
stderr, prefixed so it stands out among the tools' own output, flushed at once (progress of a
build of minutes must show while it runs). Standard library only: harness.system_packages runs
it before the virtualenv exists."""

from __future__ import annotations

import sys

PREFIX = "[egress-harness]"


def say(msg: str) -> None:
    print(f"{PREFIX} {msg}", file=sys.stderr, flush=True)


def description(doc: str | None) -> str:
    """A command's --help description: its module docstring's first paragraph, whole (its first
    line alone stops mid-sentence)."""
    first = (doc or "").strip().split("\n\n", 1)[0]
    return " ".join(first.split())
