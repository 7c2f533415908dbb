"""The sample: one decoded value of one channel, before the pipeline has seen it.

Decoders return lists of samples; the ingest pipeline turns them into stored readings.
A sample is a small named tuple because a busy hub builds hundreds of thousands of them
a second and tuples are the cheapest record CPython has. Times are integer microseconds
since the Unix epoch (UTC); ``None`` means "when it arrived".
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import NamedTuple

US_PER_S = 1_000_000  # timestamps are integer microseconds since the Unix epoch, UTC


class Sample(NamedTuple):
    """One value of one channel.

    ``channel`` is the name as the device sent it (``temp``, ``A0``, ``value 1``);
    ``unit`` is the unit the device said it used, when it said one; ``ts`` is integer
    microseconds since the epoch (UTC) or ``None`` for the arrival time; ``device`` is set
    only by formats that name the sender inside the payload (an Influx tag, an openSenseMap
    sensor id), otherwise the source names it.
    """

    channel: str
    value: float
    ts: int | None = None
    unit: str | None = None
    device: str | None = None


def now_us() -> int:
    """The current time in integer microseconds since the epoch, UTC."""
    return int(datetime.now(UTC).timestamp() * US_PER_S)


def to_us(moment: datetime) -> int:
    """A timezone-aware datetime as integer microseconds since the epoch."""
    if moment.tzinfo is None:
        raise ValueError(f"naive datetime {moment.isoformat()}: LabHub keeps every time in UTC")
    delta = moment - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * US_PER_S + delta.microseconds


def from_us(ts: int) -> datetime:
    """Integer microseconds since the epoch as a timezone-aware UTC datetime."""
    return datetime.fromtimestamp(ts // US_PER_S, UTC).replace(microsecond=ts % US_PER_S)


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
