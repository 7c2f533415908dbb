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
from labtext.printable import UnprintableTextError, check_free_text, check_name

US_PER_S = 1_000_000
KEY_MAX = 64  # a code or tag fits a label line and a barcode scanner's buffer
TEXT_MAX = 200  # names, institutions, "by" fields
NOTE_MAX = 2000  # a note on a change: a sentence or two, not a document
KEY_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._/-]*")


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


def check_text(value: str, *, what: str, max_len: int = TEXT_MAX, free_text: bool = False) -> str:
    """``value`` stripped; InvalidValueError if it is empty, too long, or holds a character
    :mod:`labtext.printable` refuses in a name (with ``free_text``, in a note: tabs and
    line breaks are then allowed)."""
    if not isinstance(value, str) or not value.strip():
        raise InvalidValueError(f"{what} cannot be empty")
    value = value.strip()
    if len(value) > max_len:
        raise InvalidValueError(f"{what} is longer than {max_len} characters")
    _check_printable(value, what, free_text=free_text)
    return value


def _check_printable(value: str, what: str, *, free_text: bool) -> None:
    try:
        if free_text:
            check_free_text(value)
        else:
            check_name(value)
    except UnprintableTextError as exc:
        raise InvalidValueError(f"{what} {exc}") from None


def check_note(value: str | None, *, what: str = "the note") -> str | None:
    """A free-text note: None or blank is no note; InvalidValueError if too long or if it
    holds a character :mod:`labtext.printable` refuses in free text (a control character
    other than tabs and line breaks, or a bidirectional text control)."""
    if value is None or not value.strip():
        return None
    if len(value) > NOTE_MAX:
        raise InvalidValueError(f"{what} is longer than {NOTE_MAX} characters")
    _check_printable(value, what, free_text=True)
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
