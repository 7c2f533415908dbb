"""Waiting for something that happens on another thread, with a deadline and a name."""

from __future__ import annotations

import time
from collections.abc import Callable

POLL_S = 0.005  # how often the condition is checked


def wait_for(
    check: Callable[[], bool], timeout: float = 10.0, what: str = "condition",
    state: Callable[[], object] | None = None,
) -> None:
    """Return once ``check()`` is true; fail the test naming ``what`` after ``timeout`` s,
    with what ``state()`` says then (so a failure shows where things stood)."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            seen = "" if state is None else f"; at the deadline: {state()}"
            raise AssertionError(f"timed out waiting for {what}{seen}")
        time.sleep(POLL_S)
