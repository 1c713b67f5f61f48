"""Evidence of one test, written to its own folder when the test fails.

A test (or the suite helpers it calls) registers what it saw and what it can fetch lazily:
`ev.add_text(name, text)`, `ev.add_json(name, obj)`, `ev.add_source(name, callable)`. Sources are
called only on failure (config_dump, stats, logs are large), each guarded so that one broken
source never hides the others.
"""

from __future__ import annotations

import json
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any


class Evidence:
    def __init__(self) -> None:
        self._items: dict[str, Any] = {}
        self._sources: dict[str, Callable[[], Any]] = {}
        self.observations: dict[str, Any] = {}  # key facts for the summary (status chain, SNI …)

    def add_text(self, name: str, text: str) -> None:
        self._items[name] = text

    def add_json(self, name: str, obj: Any) -> None:
        self._items[name] = obj

    def add_source(self, name: str, fetch: Callable[[], Any]) -> None:
        self._sources[name] = fetch

    def observe(self, **facts: Any) -> None:
        self.observations.update(facts)

    def write(self, directory: Path, item: Any = None) -> Path:
        directory.mkdir(parents=True, exist_ok=True)
        for name, fetch in self._sources.items():
            try:
                self._items.setdefault(name, fetch())
            except Exception:  # noqa: BLE001 - the evidence must still be written
                self._items[name + ".error"] = traceback.format_exc()
        for name, value in self._items.items():
            if isinstance(value, (dict, list)):
                path = directory / (name if name.endswith(".json") else name + ".json")
                path.write_text(json.dumps(value, indent=2, default=str))
            else:
                path = directory / (name if name.endswith((".txt", ".yaml", ".log")) else name + ".txt")
                path.write_text(str(value))
        if self.observations:
            (directory / "observations.json").write_text(json.dumps(self.observations, indent=2, default=str))
        return directory
