"""Polling with a deadline: the only way the harness waits for anything."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar, overload

T = TypeVar("T")


class WaitTimeout(Exception):
    """A polled condition did not hold before its deadline; says what was awaited and last seen.
    Not an assertion: whoever waits decides whose fault it is (a check turns it into a
    HopFailure, the harness's own waits leave it a fault of the harness)."""


# Without `ok`, poll returns only a truthy value: never None, which the first signature tells mypy.
@overload
def poll(
    what: str,
    probe: Callable[[], T | None],
    *,
    timeout: float = ...,
    interval: float = ...,
    describe: Callable[[T | None], str] = ...,
) -> T: ...
@overload
def poll(
    what: str,
    probe: Callable[[], T],
    ok: Callable[[T], bool],
    timeout: float = ...,
    interval: float = ...,
    describe: Callable[[T], str] = ...,
) -> T: ...


def poll(
    what: str,
    probe: Callable[[], T],
    ok: Callable[[T], bool] = bool,
    timeout: float = 10.0,
    interval: float = 0.05,
    describe: Callable[[T], str] = repr,
) -> T:
    """Call probe() until ok(result) or the deadline; raise WaitTimeout naming `what` and the last value.

    Exceptions raised by probe() count as "not yet" and are reported if the deadline passes, except
    verdicts: an AssertionError (a NACK, a hop failure) or a HarnessError ends the wait at once.
    """
    from harness.errors import HarnessError, HarnessFault

    deadline = time.monotonic() + timeout
    last: object = "<never probed>"
    while True:
        try:
            value = probe()
            if ok(value):
                return value
            last = describe(value)
        except (AssertionError, HarnessError, HarnessFault):
            raise
        except Exception as exc:  # noqa: BLE001 - a failing probe is "not yet", reported at the end
            last = f"{type(exc).__name__}: {exc}"
        if time.monotonic() >= deadline:
            raise WaitTimeout(f"timed out after {timeout:.1f}s waiting for {what}; last seen: {last}")
        time.sleep(interval)
