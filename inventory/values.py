"""Small checks and helpers shared by the inventory services: stable keys, text, time.

Site codes, model codes and asset tags cross hub boundaries and end up in QR labels and
scanner input, so they are short, printable and free of spaces. Times are integer
microseconds since the epoch, UTC, like the rest of LabHub (the domain keeps its own
clock helper: it imports nothing from the readings domain).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable
from datetime import UTC, datetime

from inventory.errors import InvalidValueError

US_PER_S = 1_000_000
KEY_MAX = 64  # a code or tag fits a label line and a barcode scanner's buffer
TEXT_MAX = 200  # names, institutions, "by" fields
NOTE_MAX = 2000  # a note on a change: a sentence or two, not a document
KEY_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._/-]*")
# Control characters other than tab and line breaks: never typed on purpose, and NUL is
# refused by PostgreSQL text columns (an error there would be a 500, not a clear 422).
CONTROL_RE = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def now_us() -> int:
    """The current time in integer microseconds since the epoch, UTC."""
    return int(datetime.now(UTC).timestamp() * US_PER_S)


def check_key(value: str, *, what: str) -> str:
    """``value`` as a stable key (code or tag); InvalidValueError naming ``what`` if malformed."""
    if not isinstance(value, str) or not value.strip():
        raise InvalidValueError(f"{what} cannot be empty")
    value = value.strip()
    if len(value) > KEY_MAX:
        raise InvalidValueError(f"{what} {value!r} is longer than {KEY_MAX} characters")
    if not KEY_RE.fullmatch(value):
        raise InvalidValueError(
            f"{what} {value!r} may hold only letters, digits and . _ / - "
            "(no spaces), and must start with a letter or digit"
        )
    return value


def check_text(value: str, *, what: str, max_len: int = TEXT_MAX) -> str:
    """``value`` stripped; InvalidValueError if it is empty or too long."""
    if not isinstance(value, str) or not value.strip():
        raise InvalidValueError(f"{what} cannot be empty")
    value = value.strip()
    if len(value) > max_len:
        raise InvalidValueError(f"{what} is longer than {max_len} characters")
    _check_printable(value, what)
    return value


def _check_printable(value: str, what: str) -> None:
    bad = CONTROL_RE.search(value)
    if bad is not None:
        raise InvalidValueError(
            f"{what} holds a control character (U+{ord(bad.group()):04X}) at position "
            f"{bad.start() + 1}"
        )


def check_note(value: str | None, *, what: str = "the note") -> str | None:
    """A free-text note: None or blank is no note; InvalidValueError if too long or if it
    holds a control character other than tabs and line breaks."""
    if value is None or not value.strip():
        return None
    if len(value) > NOTE_MAX:
        raise InvalidValueError(f"{what} is longer than {NOTE_MAX} characters")
    _check_printable(value, what)
    return value.strip()


def is_uuid(value: str) -> bool:
    """Whether ``value`` is a UUID in its usual text form (what a transfer or audit id is)."""
    try:
        return str(uuid.UUID(value)) == value.lower()
    except (ValueError, AttributeError, TypeError):
        return False


def check_choice(value: str, choices: Iterable[str], *, what: str) -> str:
    """``value`` if it is one of ``choices``; InvalidValueError listing them otherwise."""
    options = tuple(choices)
    if value not in options:
        raise InvalidValueError(f"{what} {value!r} is not one of: {', '.join(options)}")
    return value


def check_page(limit: int, offset: int, max_limit: int) -> None:
    """InvalidValueError unless ``limit`` is in 1..``max_limit`` and ``offset`` is not negative."""
    if not 1 <= limit <= max_limit:
        raise InvalidValueError(f"limit {limit} is not in 1..{max_limit}")
    if offset < 0:
        raise InvalidValueError(f"offset {offset} is negative")
