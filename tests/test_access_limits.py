"""The sign-in limiter on a simulated clock: free failures, doubling waits up to the
longest, counts that fade after an hour, and what an attacker gets through in an hour (the
figures ``docs/security.md`` quotes)."""

from __future__ import annotations

from labhub.access.limits import (
    FORGET_AFTER_S,
    FREE_FAILURES,
    FREE_FAILURES_ADDRESS,
    MAX_WAIT_S,
    SignInLimiter,
)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_waits_double_after_the_free_failures_up_to_the_longest() -> None:
    clock = Clock()
    limiter = SignInLimiter(clock=clock)
    keys = ["name:ana", "address:10.0.0.1"]
    waits = []
    for _ in range(FREE_FAILURES + 12):
        assert limiter.wait_s(keys) == 0
        limiter.failed(keys)
        waits.append(limiter.wait_s(keys))
        clock.now += waits[-1]
    assert waits[:FREE_FAILURES] == [0] * FREE_FAILURES
    assert waits[FREE_FAILURES:FREE_FAILURES + 10] == [2.0 ** k for k in range(10)]
    assert waits[-1] == MAX_WAIT_S


def test_an_address_gets_more_free_failures_and_a_success_clears_only_the_name() -> None:
    clock = Clock()
    limiter = SignInLimiter(clock=clock)
    for number in range(FREE_FAILURES_ADDRESS):
        limiter.failed([f"name:user{number}", "address:10.0.0.2"])
        assert limiter.wait_s(["name:other", "address:10.0.0.2"]) == 0
    limiter.failed(["name:last", "address:10.0.0.2"])
    assert limiter.wait_s(["name:other", "address:10.0.0.2"]) == 1.0
    assert limiter.wait_s(["name:other", "address:10.0.0.3"]) == 0
    limiter.succeeded("name:last")
    assert limiter.wait_s(["name:last", "address:10.0.0.2"]) == 1.0  # the address still waits


def test_a_count_fades_an_hour_after_its_last_failure() -> None:
    clock = Clock()
    limiter = SignInLimiter(clock=clock)
    for _ in range(FREE_FAILURES + 1):
        limiter.failed(["name:ana"])
    assert limiter.wait_s(["name:ana"]) == 1.0
    clock.now += FORGET_AFTER_S + 1
    limiter.failed(["name:ana"])  # counted from one again
    assert limiter.wait_s(["name:ana"]) == 0


def _guesses_in_an_hour(keys_of: dict[str, str]) -> int:
    """Guesses, one at a time and each taking 0.25 s, an attacker gets through in an hour
    waiting exactly what the limiter says."""
    clock = Clock()
    start = clock.now
    limiter = SignInLimiter(clock=clock)
    guesses = 0
    while clock.now < start + 3600:
        keys = [keys_of["name"].format(n=guesses), keys_of["address"].format(n=guesses)]
        wait = limiter.wait_s(keys)
        if wait > 0:
            clock.now += wait
            continue
        limiter.failed(keys)
        guesses += 1
        clock.now += 0.25
    return guesses


def test_guesses_an_hour_at_one_account_whatever_the_addresses() -> None:
    # 6 before the first wait, then waits of 1, 2, ... 512 s (1023 s, 10 more guesses),
    # then one guess every 900 s for what is left of the hour.
    one = _guesses_in_an_hour({"name": "name:ana", "address": "address:10.0.0.1"})
    many = _guesses_in_an_hour({"name": "name:ana", "address": "address:10.1.0.{n}"})
    assert one == many == 18
    accounts = _guesses_in_an_hour({"name": "name:user{n}", "address": "address:10.0.0.1"})
    assert accounts == 33  # the address's 20 free, then the same doubling
