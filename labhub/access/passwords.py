"""Passwords: argon2id hashes, their parameters in one place, and the rules a password
must meet.

A hash carries its own parameters, so raising :data:`ARGON2_PARAMETERS` later needs no
migration: a sign-in with a hash made with other parameters stores a new hash
(:func:`needs_rehash`). A password longer than :data:`PASSWORD_MAX` characters is refused
before any hashing, so a huge one costs nothing.

A student's PIN (4 to 6 digits, :func:`check_pin`) is hashed and verified the same way:
the sign-in's rate limit, not the hash, is what keeps 10,000 four-digit PINs from being
tried (``docs/security.md``, "Students: classes, PINs and cards").
"""

from __future__ import annotations

import os
import re
import secrets
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import argon2
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError


@dataclass(frozen=True, slots=True)
class Argon2Parameters:
    time_cost: int  # passes over memory
    memory_cost_kib: int
    parallelism: int  # lanes (threads)


# Tuned with bench/auth.py so that a sign-in takes 0.2-0.5 s on a 2-core machine: one
# verification took a median of 0.39 s (0.24 s at the quickest) on the development VM with
# other jobs running, where time cost 3 took 0.14 s. Time, not memory, was raised: each
# sign-in running at once holds memory_cost, and a small hub has little to spare.
ARGON2_PARAMETERS = Argon2Parameters(time_cost=6, memory_cost_kib=64 * 1024, parallelism=1)

PASSWORD_MIN = 8  # characters: short ones fall to guessing even behind the rate limit
PASSWORD_MAX = 1024  # characters: longer is refused before hashing (a 1 MB one costs nothing)


PIN_MIN = 4  # digits: what a 12-year-old keeps in mind
PIN_MAX = 6
PIN_NEW_DIGITS = 4  # a PIN the hub draws (a teacher adds a student, resets a PIN)
PIN_PATTERN = f"^[0-9]{{{PIN_MIN},{PIN_MAX}}}$"


class PasswordRuleError(ValueError):
    """A password that breaks a rule (too short, too long): the message says which."""


def hasher(parameters: Argon2Parameters = ARGON2_PARAMETERS) -> PasswordHasher:
    """An argon2id hasher with ``parameters``."""
    return PasswordHasher(time_cost=parameters.time_cost,
                          memory_cost=parameters.memory_cost_kib,
                          parallelism=parameters.parallelism)


_HASHER = hasher()
# A hash of nothing anyone knows: verifying against it for an unknown name costs what a
# real verification costs, so the time of an answer does not tell whether a name exists.
# The cost is in the hash's own parameters, so one made once serves: hashing it at import
# took every start of the hub a whole argon2 hash (0.2-1 s on a 2-core machine). Made again
# only if ARGON2_PARAMETERS no longer match it.
_SHIPPED_DUMMY_HASH = ("$argon2id$v=19$m=65536,t=6,p=1$xmAIY1EP0p685WPMXWlr6w$"
                       "Rnp81qakbXrW/QMP+K04zQQzzAFYZXBb4UQAD2mEN+I")


def _dummy_hash() -> str:
    shipped = argon2.extract_parameters(_SHIPPED_DUMMY_HASH)
    if (shipped.type, shipped.time_cost, shipped.memory_cost, shipped.parallelism,
            shipped.hash_len, shipped.salt_len) == (
            _HASHER.type, _HASHER.time_cost, _HASHER.memory_cost, _HASHER.parallelism,
            _HASHER.hash_len, _HASHER.salt_len):
        return _SHIPPED_DUMMY_HASH
    return _HASHER.hash("labhub: no such account")


_DUMMY_HASH = _dummy_hash()


def check_length(password: str) -> None:
    """Refuse a password longer than :data:`PASSWORD_MAX` (cheaply, before any hash)."""
    if len(password) > PASSWORD_MAX:
        raise PasswordRuleError(f"a password has at most {PASSWORD_MAX} characters")


def check_rules(password: str) -> None:
    """Refuse a new password that is too short or too long."""
    check_length(password)
    if len(password) < PASSWORD_MIN:
        raise PasswordRuleError(f"a password has at least {PASSWORD_MIN} characters")


def hash_password(password: str) -> str:
    """The argon2id hash of a new password (after :func:`check_rules`)."""
    check_rules(password)
    return _HASHER.hash(password)


# At most this many checks run at once, one a core. Guesses spread over many addresses and
# many names pass the sign-in limit (it counts per name and per address); here they queue,
# so a spray holds at most this many cores and this many times 64 MiB, and a sign-in that
# waits longer than CHECK_WAIT_S is told to try again (503) instead of holding its thread.
CHECKS_AT_ONCE = max(1, os.cpu_count() or 1)
CHECK_WAIT_S = 5.0
_CHECKS = threading.BoundedSemaphore(CHECKS_AT_ONCE)


class ChecksBusyError(Exception):
    """Every check slot stayed taken for :data:`CHECK_WAIT_S`: a 503 with Retry-After."""

    retry_after_s = 5.0


@contextmanager
def check_slot() -> Iterator[None]:
    """Hold one of the :data:`CHECKS_AT_ONCE` slots for an argon2 check."""
    if not _CHECKS.acquire(timeout=CHECK_WAIT_S):
        raise ChecksBusyError("the hub is busy checking other sign-ins: try again in a few "
                              "seconds")
    try:
        yield
    finally:
        _CHECKS.release()


def verify(stored_hash: str | None, password: str) -> bool:
    """Whether ``password`` matches ``stored_hash``; with no hash (unknown name, or an
    account without a password) a dummy verification runs and the answer is False.
    ChecksBusyError when no check slot frees up in time."""
    check_length(password)
    with check_slot():
        try:
            if stored_hash is None:
                _HASHER.verify(_DUMMY_HASH, password)
                return False
            return _HASHER.verify(stored_hash, password)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False


def needs_rehash(stored_hash: str) -> bool:
    """Whether ``stored_hash`` was made with other parameters than today's."""
    try:
        return _HASHER.check_needs_rehash(stored_hash)
    except InvalidHashError:
        return True


def check_pin(pin: str) -> None:
    """Refuse a PIN that is not :data:`PIN_MIN` to :data:`PIN_MAX` digits 0-9."""
    if re.fullmatch(PIN_PATTERN, pin) is None:
        raise PasswordRuleError(f"a PIN is {PIN_MIN} to {PIN_MAX} digits 0-9")


def hash_pin(pin: str) -> str:
    """The argon2id hash of a PIN (after :func:`check_pin`)."""
    check_pin(pin)
    return _HASHER.hash(pin)


def new_pin() -> str:
    """A random PIN of :data:`PIN_NEW_DIGITS` digits."""
    return "".join(secrets.choice("0123456789") for _ in range(PIN_NEW_DIGITS))
