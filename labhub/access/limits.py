"""The sign-in rate limit: failed sign-ins per account and per address, with exponential
backoff, kept in memory with a bounded number of entries.

After :data:`FREE_FAILURES` failures for an account (or :data:`FREE_FAILURES_ADDRESS` from
one address: a lab's shared PCs sign in from one address), each further failure doubles
the wait before the next try, from 1 s up to :data:`MAX_WAIT_S`. A success clears the
account's count; an address's count fades :data:`FORGET_AFTER_S` after its last failure.
A hub restart forgets everything, which costs an attacker a restart they cannot cause.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

FREE_FAILURES = 5  # wrong passwords an account takes before waits begin
FREE_FAILURES_ADDRESS = 20  # from one address (a lab's PCs often share one)
MAX_WAIT_S = 15 * 60  # the longest wait: a forgotten password is not punished longer
FORGET_AFTER_S = 60 * 60  # a count with no failure for an hour starts again
MAX_ENTRIES = 10_000  # accounts and addresses remembered; the oldest go first


@dataclass(slots=True)
class _Count:
    failures: int
    last_failure: float
    blocked_until: float


class SignInLimiter:
    """Failed sign-ins by key (``name:<name key>``, ``address:<ip>``)."""

    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        """``clock`` gives seconds; a test or ``bench/auth.py`` passes a simulated one."""
        self._counts: OrderedDict[str, _Count] = OrderedDict()
        self._lock = threading.Lock()
        self._clock = clock

    def _now(self) -> float:
        return self._clock()

    def wait_s(self, keys: list[str]) -> float:
        """Seconds before any of ``keys`` may try again (0: now)."""
        now = self._now()
        with self._lock:
            waits = [c.blocked_until - now for k in keys if (c := self._counts.get(k))]
        return max([0.0, *waits])

    def failed(self, keys: list[str]) -> None:
        """One more failure for each of ``keys``."""
        now = self._now()
        with self._lock:
            for key in keys:
                count = self._counts.pop(key, None)
                if count is None or now - count.last_failure > FORGET_AFTER_S:
                    count = _Count(0, now, now)
                count.failures += 1
                count.last_failure = now
                free = FREE_FAILURES_ADDRESS if key.startswith("address:") else FREE_FAILURES
                over = count.failures - free
                if over > 0:
                    count.blocked_until = now + min(MAX_WAIT_S, 2.0 ** (over - 1))
                self._counts[key] = count
                while len(self._counts) > MAX_ENTRIES:
                    self._counts.popitem(last=False)

    def succeeded(self, key: str) -> None:
        """A right password: the account's count starts again."""
        with self._lock:
            self._counts.pop(key, None)

    def __len__(self) -> int:
        return len(self._counts)
