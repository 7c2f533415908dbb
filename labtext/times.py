"""Times as text and numbers, read and written one way everywhere in LabHub.

A time is integer microseconds since the Unix epoch, UTC. :func:`parse_time` reads the
forms that reach LabHub from people, files and devices (the HTTP API, the CLI, CSV and
JSON-lines readings, SD-card logs) with one set of rules:

* RFC 3339 text: ``2026-03-01T14:05:00Z``, ``2026-03-01T09:05:00.25-05:00``. A space or a
  lower-case ``t`` may stand for the ``T`` and ``z`` for ``Z`` (RFC 3339 allows both), the
  offset may lack its colon (``-0500``, what C's ``strftime("%z")`` writes), the fraction
  may use a comma and may run past microseconds (the rest is cut). Other ISO 8601 forms
  (a date alone, week dates, ``20260301T140500Z``) are refused.
* A number, or text that is an ASCII decimal number: epoch seconds when its magnitude is
  below :data:`EPOCH_MS_THRESHOLD` (10^11), epoch milliseconds at or above it. 10^11
  seconds is the year 5138 and 10^11 milliseconds March 1973, so no real time is
  ambiguous. Booleans, NaN and infinities are refused.
* A time without ``Z`` or an offset (a "naive" time) is read in ``naive_zone`` when the
  caller gives one (a format that defines its zone, as the Smart Citizen kit logs UTC, or
  the zone a person says a logger's clock kept) and is otherwise refused with a message
  that says to add one: LabHub never guesses a zone. In the hour a zone sets its clocks
  back, a naive time is read as the first of the two.
* Every time is in the years 1 to 9999 in UTC (:data:`TIME_MIN_US`..:data:`TIME_MAX_US`),
  the range of a datetime, so storage, export and the API can always write it back.

Anything else raises :class:`TimeTextError` (a ``ValueError``) whose message says what is
wrong but not where: the caller adds the place (``readings.3.ts``, ``line 12``) and turns
it into its own error (a 422, a ``DecodeError``). :func:`format_time` is the inverse for
RFC 3339 in UTC.

A person asking for readings may also say when relative to now: :func:`parse_query_time`
takes everything :func:`parse_time` takes, plus ``now`` and ``-30m``, ``-1h``, ``-2d``,
``-1w`` (``now-1h`` too): a whole number of seconds (``s``), minutes (``m``, ``min``),
hours (``h``), days (``d``) or weeks (``w``) before now. Only queries take them: a device's
timestamp is never relative.

Times are shown to people in the lab's zone (the ``timezone`` setting): :func:`zone_name`
resolves the zone a request or command names (``local`` and nothing mean the lab's),
:func:`format_local` writes a time in it, and :func:`step_for_interval` picks the precision
a series of readings deserves (whole seconds for readings a second or more apart,
milliseconds for faster ones, microseconds only for faster still), so a time never shows
microseconds the data does not have.
"""

from __future__ import annotations

import math
import re
import time
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Final
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

US_PER_S: Final = 1_000_000
US_PER_MS: Final = 1_000
# A number below this (in magnitude) is epoch seconds, at or above it epoch milliseconds:
# 1e11 s is the year 5138, 1e11 ms is March 1973, so no real time is ambiguous.
EPOCH_MS_THRESHOLD: Final = 100_000_000_000
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
# The range of a datetime: every stored time can be written back as text.
TIME_MIN_US: Final = -62_135_596_800 * US_PER_S  # 0001-01-01T00:00:00Z
TIME_MAX_US: Final = 253_402_300_800 * US_PER_S - 1  # 9999-12-31T23:59:59.999999Z
_SHOW_MAX_CHARS: Final = 40  # input echoed in a message is cut to this length

_RFC3339: Final = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})[Tt ]([0-9]{2}):([0-9]{2}):([0-9]{2})(?:[.,]([0-9]+))?"
    r"(?:([Zz])|([+-])([0-9]{2}):?([0-9]{2}))?",
    re.ASCII,
)
# "-30m", "now-1h", "- 2 d": a whole number of units before now.
_RELATIVE: Final = re.compile(r"(?:now\s*)?-\s*([0-9]{1,12})\s*(s|m|min|h|d|w)", re.ASCII)
_RELATIVE_LIKE: Final = re.compile(r"-\s*[0-9]+\s*[a-z]+", re.ASCII)  # "-1y": a unit unknown
RELATIVE_UNITS_US: Final = {
    "s": US_PER_S, "m": 60 * US_PER_S, "min": 60 * US_PER_S, "h": 3600 * US_PER_S,
    "d": 86_400 * US_PER_S, "w": 7 * 86_400 * US_PER_S,
}
LOCAL: Final = "local"  # the zone name that means the lab's own (the timezone setting)
# The precisions a time is written with, coarsest first, in microseconds.
STEPS_US: Final = (US_PER_S, US_PER_MS, 1)
# Readings at least this share of a step apart get that step: 1 Hz readings whose arrival
# jitters by a few ms are still "a second apart".
STEP_SLACK: Final = 0.9
_INTEGER: Final = re.compile(r"[+-]?[0-9]{1,20}", re.ASCII)
_DECIMAL: Final = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?", re.ASCII)


class TimeTextError(ValueError):
    """A value that is not a time LabHub reads; the message says why, not where."""


class NaiveTimeError(TimeTextError):
    """A time written without a zone where the caller named none to read it in."""


def _show(text: str) -> str:
    """``text`` quoted for a message, cut short so a binary blob cannot flood a log."""
    if len(text) > _SHOW_MAX_CHARS:
        text = text[: _SHOW_MAX_CHARS - 3] + "..."
    return repr(text)


def _out_of_range(later: bool) -> TimeTextError:
    """The error for a time past one end of the range, saying which end."""
    if later:
        return TimeTextError("time out of range: after the year 9999 (the latest is "
                             "9999-12-31T23:59:59.999999Z)")
    return TimeTextError("time out of range: before the year 1 (the earliest is "
                         "0001-01-01T00:00:00Z)")


def check_range(ts: int) -> int:
    """``ts`` (microseconds) if it is in the years 1 to 9999, else :class:`TimeTextError`
    saying which end it passed."""
    if TIME_MIN_US <= ts <= TIME_MAX_US:
        return ts
    raise _out_of_range(ts > TIME_MAX_US)


def scaled_us(value: int | float, scale: int) -> int:
    """``value`` times ``scale`` as whole microseconds, in range (``scale`` 1000 for epoch
    milliseconds, :data:`US_PER_S` for seconds). Integers are scaled exactly."""
    if isinstance(value, bool):
        raise TimeTextError(f"{value!r} is not a time")
    if isinstance(value, int):
        return check_range(value * scale)
    if not math.isfinite(value):
        raise TimeTextError(f"time {value!r} is not a finite number")
    scaled = value * scale
    if not math.isfinite(scaled):  # 1e306 ms overflows a float on the way to microseconds
        raise _out_of_range(scaled > 0)
    return check_range(round(scaled))


def epoch_us(value: int | float) -> int:
    """A number as a time: epoch seconds below :data:`EPOCH_MS_THRESHOLD` in magnitude,
    else epoch milliseconds."""
    if isinstance(value, float) and not math.isfinite(value):
        raise TimeTextError(f"time {value!r} is not a finite number")
    scale = US_PER_S if abs(value) < EPOCH_MS_THRESHOLD else US_PER_MS
    return scaled_us(value, scale)


def number_text(text: str) -> int | float | None:
    """``text`` as the number it spells when it is an ASCII decimal number (an ``int`` when
    it has no point or exponent, so large epoch numbers stay exact), else ``None``."""
    if _INTEGER.fullmatch(text):
        return int(text)
    if _DECIMAL.fullmatch(text):
        return float(text)
    return None


def rfc3339_us(text: str, *, naive_zone: tzinfo | None = None) -> int:
    """RFC 3339 text as microseconds; see the module docstring for what is taken."""
    match = _RFC3339.fullmatch(text.strip())
    if match is None:
        raise TimeTextError(f"{_show(text)} is not an RFC 3339 time like 2026-03-01T14:05:00Z")
    year, month, day, hour, minute, second, fraction, zulu, sign, off_h, off_m = match.groups()
    naive = zulu is None and sign is None
    if naive and naive_zone is None:
        raise NaiveTimeError(
            f"time {_show(text)} has no time zone: add Z for UTC or an offset like -05:00"
        )
    offset_s = 0
    if sign is not None:
        if int(off_h) > 23 or int(off_m) > 59:
            raise TimeTextError(f"time {_show(text)} has an impossible offset")
        offset_s = (int(off_h) * 3600 + int(off_m) * 60) * (-1 if sign == "-" else 1)
    try:
        moment = datetime(
            int(year), int(month), int(day), int(hour), int(minute), int(second), tzinfo=UTC
        )
    except ValueError:
        raise TimeTextError(f"time {_show(text)} is not a valid date and time") from None
    if naive and naive_zone is not None and naive_zone is not UTC:
        local = moment.replace(tzinfo=naive_zone).utcoffset()
        offset_s = 0 if local is None else int(local.total_seconds())
    micros = int(fraction[:6].ljust(6, "0")) if fraction else 0
    delta = moment - _EPOCH
    seconds = delta.days * 86_400 + delta.seconds - offset_s
    return check_range(seconds * US_PER_S + micros)


def parse_time(value: object, *, naive_zone: tzinfo | None = None) -> int:
    """A time given as RFC 3339 text, an epoch number or a numeric text, as microseconds.

    The rules are the module docstring's. Raises :class:`TimeTextError` for anything else.
    """
    if isinstance(value, str):
        text = value.strip()
        number = None if ":" in text else number_text(text)  # every RFC 3339 time has a ':'
        if number is None:
            return rfc3339_us(text, naive_zone=naive_zone)
        return epoch_us(number)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TimeTextError(
            f"{repr(value)[:_SHOW_MAX_CHARS]} is not a time: give RFC 3339 text like "
            "2026-03-01T14:05:00Z, or epoch seconds"
        )
    return epoch_us(value)


def format_time(ts: int) -> str:
    """Microseconds as RFC 3339 in UTC with ``Z``: no fraction for whole seconds, else all
    six digits (``2026-03-01T14:05:00Z``, ``2026-03-01T14:05:00.250000Z``)."""
    return (_EPOCH + timedelta(microseconds=ts)).isoformat().replace("+00:00", "Z")


def now_us() -> int:
    """The time now, in microseconds since the epoch."""
    return time.time_ns() // 1000


def parse_query_time(value: object, *, now: int | None = None) -> int:
    """A time a person asks readings for: what :func:`parse_time` reads, or ``now``, or a
    relative time before now (``-30m``, ``-1h``, ``-2d``, ``-1w``, ``now-1h``).

    ``now`` (microseconds) is the present unless given (tests give it). Raises
    :class:`TimeTextError` for anything else, naming the relative forms too.
    """
    if isinstance(value, str):
        text = value.strip().lower()
        present = now_us() if now is None else now
        if text == "now":
            return present
        match = _RELATIVE.fullmatch(text)
        if match is not None:
            return check_range(present - int(match[1]) * RELATIVE_UNITS_US[match[2]])
        if text.startswith("now") or _RELATIVE_LIKE.fullmatch(text):
            raise TimeTextError(
                f"{_show(value)} is not a time: give RFC 3339 text like 2026-03-01T14:05:00Z,"
                " epoch seconds, now, or a time before now like -30m, -1h, -2d or -1w"
            )
    return parse_time(value)


def zone_name(name: str | None, *, local: str) -> str:
    """The IANA zone ``name`` stands for: the lab's own (``local``) for ``None``, ``""`` or
    ``"local"``; ``UTC`` for ``utc`` or ``z``; else ``name`` itself if it is a zone.

    Raises :class:`TimeTextError` naming a few zones for anything else.
    """
    text = (name or "").strip()
    if not text or text.lower() == LOCAL:
        text = local
    if text.lower() in ("utc", "z"):
        return "UTC"
    try:
        ZoneInfo(text)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise TimeTextError(
            f"unknown time zone {_show(text)}: use local (the lab's zone), UTC, or an IANA"
            " name such as America/Lima, America/Bogota or America/Sao_Paulo"
        ) from None
    return text


def step_for_interval(interval_us: float | None) -> int:
    """The precision (microseconds, one of :data:`STEPS_US`) for readings ``interval_us``
    apart on average: seconds for a reading a second or so, milliseconds for faster ones,
    microseconds below a millisecond. ``None`` (one reading, or none) is seconds."""
    if interval_us is None:
        return US_PER_S
    for step in STEPS_US:
        if interval_us >= step * STEP_SLACK:
            return step
    return 1


PRECISIONS: Final = {"s": US_PER_S, "ms": US_PER_MS, "us": 1}  # names of STEPS_US


def step_named(precision: str, interval_us: float | None) -> int:
    """The step of ``precision``: ``s``, ``ms`` or ``us``, or ``auto`` for
    :func:`step_for_interval` of ``interval_us``. :class:`TimeTextError` for another name."""
    if precision == "auto":
        return step_for_interval(interval_us)
    step = PRECISIONS.get(precision)
    if step is None:
        raise TimeTextError(f"precision {_show(precision)} is not auto, s, ms or us")
    return step


def format_local(ts: int, zone: str = "UTC", *, step_us: int = 1) -> str:
    """Microseconds as RFC 3339 in ``zone`` (an IANA name; ``UTC`` is written with ``Z``),
    cut down to ``step_us`` (:data:`STEPS_US`): ``2026-03-01T09:05:00-05:00``; a fraction
    only when the time has one at that precision (``.250`` at milliseconds)."""
    ts -= ts % step_us
    moment = _EPOCH + timedelta(microseconds=ts)
    if zone != "UTC":
        moment = moment.astimezone(ZoneInfo(zone))
    fraction = moment.microsecond
    if not fraction:
        spec = "seconds"
    elif step_us >= US_PER_MS and not fraction % US_PER_MS:
        spec = "milliseconds"
    else:
        spec = "microseconds"
    text = moment.isoformat(timespec=spec)
    return text.replace("+00:00", "Z") if zone == "UTC" else text
