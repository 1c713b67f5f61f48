"""`eventually`: poll() for a test's own expectation. A WaitTimeout is the harness's fault when
the harness waits; when a test waits for the behaviour it tests, the timeout is that test's
failed assertion, so it is raised as one."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from harness.wait import WaitTimeout, poll


def eventually(what: str, probe: Callable[[], Any], ok: Callable[[Any], bool] = bool, **kwargs: Any) -> Any:
    try:
        return poll(what, probe, ok, **kwargs)
    except WaitTimeout as exc:
        raise AssertionError(str(exc)) from None
