"""The readings on the wire (:data:`labhub.network.protocol.CODEC_READINGS`): columnar,
per series, compressed. Lossless: every float comes back bit for bit (NaN's payload,
infinities and the sign of zero included), every time and flag exactly.

**Layout.** A section is one byte naming the compressor (``z``: zlib) and the compressed
body. The body is ``R1``, the number of series (varint) and each series:

- ``device``, ``channel`` (varint length + UTF-8), ``quantity``, ``unit`` (the same with
  the length plus one; ``0`` for none), the number of readings ``n`` (varint);
- times: a mode byte. ``T`` (``n >= 1``): the first time (zigzag varint), then ``n - 1``
  integers: the first difference and then the differences of differences
  (delta-of-delta: a steady interval is all zeros), zigzag, as an int64 column (see
  below). ``S`` + varint ``j``: the same times as series ``j`` of this section (the channels
  of one device share their times; one copy goes). ``P``: ``n`` plain int64 times (a
  range too wide for the differences).
- values: a mode byte. ``D`` + ``d`` (one byte): every value is ``k / 10**d`` for an
  integer ``k`` (a decimal of ``d`` digits, found as the fewest that give every value back
  bit for bit): the first ``k`` (zigzag varint) and ``n - 1`` differences of ``k`` as an int64
  column. ``F``: ``n`` float64s as an int64 column of their bits (NaN, infinities, -0.0,
  values of many digits).
- flags: a mode byte. ``0``: all zero. ``R``: runs, the number of runs (varint) and each
  run's flags and length (varints).

An int64 column is its values' eight bytes each (little-endian), split into eight planes
(every value's first byte, then every second byte, ...): small numbers leave whole planes
of zeros, which the compressor folds to almost nothing. Splitting and joining planes are
slicing operations, so pure Python encodes a million readings in about a second
(``bench/sync.py``).

:func:`decode` checks every length against what is left and raises
:class:`~labhub.network.protocol.ProtocolError` saying which series, which column and at
which byte of the body.
"""

from __future__ import annotations

import math
import zlib
from array import array
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import accumulate, groupby, pairwise, repeat

from labhub.network.protocol import ProtocolError

BODY_MAGIC = b"R1"
COMPRESSOR_ZLIB = b"z"
ZLIB_LEVEL = 6
# At most this many bytes a section's body may grow to when decompressed: a 16 MiB batch
# of readings is ~5M readings at ~17 body bytes each; beyond this is not a batch of ours.
MAX_BODY_BYTES = 256 * 1024 * 1024
MAX_DECIMALS = 9  # values of more digits go as float64 bits
_INT64 = (-(1 << 63), (1 << 63) - 1)
_EXACT_INT = 1 << 53  # |k| below this: k and k / 10**d are exact in a float64
_SAMPLE = 64  # values looked at to guess the decimals before checking them all


@dataclass(frozen=True, slots=True)
class SeriesReadings:
    """One series' readings in a section, oldest first (times in microseconds, UTC)."""

    device: str
    channel: str
    quantity: str | None
    unit: str | None
    ts: list[int]
    values: list[float]
    flags: list[int]


# -- encoding -------------------------------------------------------------------------------

def _varint(out: bytearray, value: int) -> None:
    if value < 0:
        raise ValueError(f"a varint is not negative: {value}")
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)


def _zigzag(value: int) -> int:
    return (value << 1) if value >= 0 else ((-value) << 1) - 1


def _text(out: bytearray, text: str | None, *, optional: bool) -> None:
    if text is None:
        if not optional:
            raise ValueError("a device and a channel are never None")
        _varint(out, 0)
        return
    raw = text.encode()
    _varint(out, len(raw) + (1 if optional else 0))
    out += raw


def _column(out: bytearray, values: Sequence[int], *, signed: bool) -> None:
    """An int64 column (see the module's text): zigzagged when ``signed``."""
    if signed:
        raw = array("Q", [(v << 1) ^ (v >> 63) for v in values]).tobytes()
    else:
        raw = array("q", values).tobytes()
    out += b"".join(raw[i::8] for i in range(8))


def _fits(values: Sequence[int]) -> bool:
    return not values or (min(values) >= _INT64[0] and max(values) <= _INT64[1])


def _times(out: bytearray, ts: list[int]) -> None:
    diffs = [b - a for a, b in pairwise(ts)]
    columns = diffs[:1] + [b - a for a, b in pairwise(diffs)]
    if _fits(ts[:1]) and _fits(columns):
        out += b"T"
        _varint(out, _zigzag(ts[0]))
        _column(out, columns, signed=True)
    else:
        out += b"P"
        _column(out, ts, signed=False)


def _decimals(values: list[float]) -> tuple[int, list[int]] | None:
    """``(d, k)`` with ``k[i] / 10**d`` bit for bit ``values[i]``, for the fewest ``d``;
    None when no ``d`` up to :data:`MAX_DECIMALS` does."""
    start = 0
    for value in values[:_SAMPLE]:  # the sample's own fewest decimals: a lower bound
        while start <= MAX_DECIMALS and not _exact(value, 10 ** start):
            start += 1
    for d in range(start, MAX_DECIMALS + 1):
        scale = 10 ** d
        try:
            ks = [round(v * scale) for v in values]
        except (OverflowError, ValueError):  # infinity, NaN
            return None
        if (max(ks) < _EXACT_INT and min(ks) > -_EXACT_INT
                and all(k / scale == v for k, v in zip(ks, values, strict=True))):
            if any(v == 0 and math.copysign(1.0, v) < 0 for v in values):
                return None  # -0.0 == 0, but 0 / scale is +0.0: its sign would be lost
            return d, ks
    return None


def _exact(value: float, scale: int) -> bool:
    try:
        k = round(value * scale)
    except (OverflowError, ValueError):
        return True  # let the full pass find it out
    return abs(k) < _EXACT_INT and k / scale == value


def _values(out: bytearray, values: list[float]) -> None:
    found = _decimals(values)
    if found is None:
        out += b"F"
        _column(out, array("q", array("d", values).tobytes()), signed=False)
        return
    d, ks = found
    out += b"D"
    out.append(d)
    _varint(out, _zigzag(ks[0]))
    _column(out, [b - a for a, b in pairwise(ks)], signed=True)


def _flags(out: bytearray, flags: list[int]) -> None:
    if not any(flags):
        out += b"0"
        return
    runs = [(flag, sum(1 for _ in run)) for flag, run in groupby(flags)]
    out += b"R"
    _varint(out, len(runs))
    for flag, length in runs:
        _varint(out, flag)
        _varint(out, length)


def encode(series: Sequence[SeriesReadings]) -> bytes:
    """The bytes of a readings section."""
    return COMPRESSOR_ZLIB + zlib.compress(encode_body(series), ZLIB_LEVEL)


def encode_body(series: Sequence[SeriesReadings]) -> bytes:
    """A section's body before it is compressed (see the module's text)."""
    body = bytearray(BODY_MAGIC)
    _varint(body, len(series))
    seen_times: dict[tuple[int, int, int], list[tuple[int, list[int]]]] = {}
    for index, s in enumerate(series):
        n = len(s.ts)
        if len(s.values) != n or len(s.flags) != n:
            raise ValueError(f"series {s.device}/{s.channel}: {n} times, "
                             f"{len(s.values)} values, {len(s.flags)} flags")
        _text(body, s.device, optional=False)
        _text(body, s.channel, optional=False)
        _text(body, s.quantity, optional=True)
        _text(body, s.unit, optional=True)
        _varint(body, n)
        if not n:
            continue
        key = (n, s.ts[0], s.ts[-1])
        same = next((j for j, ts in seen_times.get(key, ()) if ts == s.ts), None)
        if same is not None:
            body += b"S"
            _varint(body, same)
        else:
            seen_times.setdefault(key, []).append((index, s.ts))
            _times(body, s.ts)
        _values(body, s.values)
        _flags(body, s.flags)
    return bytes(body)


# -- decoding -------------------------------------------------------------------------------

class _Reader:
    """Reads the body, saying where it went wrong."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.at = 0
        self.where = "the section"

    def fail(self, what: str) -> ProtocolError:
        return ProtocolError(f"readings section, {self.where}: {what} (byte {self.at} of "
                             f"{len(self.data)} of the decompressed body)")

    def byte(self, what: str) -> int:
        if self.at >= len(self.data):
            raise self.fail(f"the body ends before {what}")
        self.at += 1
        return self.data[self.at - 1]

    def varint(self, what: str) -> int:
        value = shift = 0
        while True:
            b = self.byte(what)
            value |= (b & 0x7F) << shift
            if b < 0x80:
                return value
            shift += 7
            if shift > 70:
                raise self.fail(f"{what} is a varint longer than 10 bytes")

    def zigzag(self, what: str) -> int:
        v = self.varint(what)
        return (v >> 1) if not v & 1 else -((v + 1) >> 1)

    def take(self, size: int, what: str) -> bytes:
        if size > len(self.data) - self.at:
            raise self.fail(f"{what} needs {size} bytes, {len(self.data) - self.at} are left")
        self.at += size
        return self.data[self.at - size:self.at]

    def text(self, what: str, *, optional: bool) -> str | None:
        size = self.varint(what)
        if optional:
            if size == 0:
                return None
            size -= 1
        raw = self.take(size, what)
        try:
            return raw.decode()
        except UnicodeDecodeError:
            raise self.fail(f"{what} is not UTF-8") from None

    def column(self, count: int, what: str, *, signed: bool) -> list[int]:
        raw = self.take(8 * count, what)
        joined = bytearray(8 * count)
        for i in range(8):
            joined[i::8] = raw[i * count:(i + 1) * count]
        if signed:
            return [(v >> 1) ^ -(v & 1) for v in array("Q", bytes(joined))]
        return list(array("q", bytes(joined)))


def decode(data: bytes) -> list[SeriesReadings]:
    """A readings section read back; ``labhub.network.protocol.ProtocolError`` saying what
    is wrong and where."""
    if data[:1] != COMPRESSOR_ZLIB:
        raise ProtocolError(f"readings section: byte 0 names no known compressor "
                            f"({data[:1]!r}; expected {COMPRESSOR_ZLIB!r})")
    inflater = zlib.decompressobj()
    try:
        body = inflater.decompress(data[1:], MAX_BODY_BYTES)
    except zlib.error as exc:
        raise ProtocolError(f"readings section: the body is not zlib data ({exc})") from None
    if inflater.unconsumed_tail:
        raise ProtocolError(f"readings section: the body is more than {MAX_BODY_BYTES} "
                            "bytes decompressed")
    if not inflater.eof:
        raise ProtocolError(f"readings section: the compressed body is cut short "
                            f"({len(data)} bytes)")
    if inflater.unused_data:
        raise ProtocolError(f"readings section: {len(inflater.unused_data)} bytes after "
                            "the compressed body")
    r = _Reader(body)
    if r.take(2, "the body's magic") != BODY_MAGIC:
        raise r.fail(f"the body does not start with {BODY_MAGIC!r}")
    count = r.varint("the number of series")
    out: list[SeriesReadings] = []
    for index in range(count):
        r.where = f"series {index}"
        device = r.text("the device", optional=False)
        channel = r.text("the channel", optional=False)
        r.where = f"series {index} ({device}/{channel})"
        quantity = r.text("the quantity", optional=True)
        unit = r.text("the unit", optional=True)
        n = r.varint("the number of readings")
        if n > len(body) - r.at:  # each reading takes at least a byte: a lie
            raise r.fail(f"{n} readings cannot fit in the {len(body) - r.at} bytes left")
        ts = _read_times(r, n, out) if n else []
        values = _read_values(r, n) if n else []
        flags = _read_flags(r, n) if n else []
        out.append(SeriesReadings(device or "", channel or "", quantity, unit, ts, values,
                                  flags))
    if r.at != len(body):
        raise r.fail(f"{len(body) - r.at} bytes after the last series")
    return out


def _read_times(r: _Reader, n: int, before: list[SeriesReadings]) -> list[int]:
    mode = r.byte("the times' mode")
    if mode == ord("T"):
        first = r.zigzag("the first time")
        columns = r.column(n - 1, "the times' differences", signed=True)
        diffs = list(accumulate(columns)) if columns else []
        return list(accumulate(diffs, initial=first))
    if mode == ord("S"):
        j = r.varint("the series whose times these are")
        if j >= len(before) or len(before[j].ts) != n:
            raise r.fail(f"the times are series {j}'s, which is not an earlier series of "
                         f"{n} readings")
        return list(before[j].ts)
    if mode == ord("P"):
        return r.column(n, "the plain times", signed=False)
    raise r.fail(f"unknown times' mode {mode}")


def _read_values(r: _Reader, n: int) -> list[float]:
    mode = r.byte("the values' mode")
    if mode == ord("D"):
        d = r.byte("the values' decimals")
        if d > MAX_DECIMALS:
            raise r.fail(f"{d} decimals (at most {MAX_DECIMALS})")
        first = r.zigzag("the first value")
        ks = list(accumulate(r.column(n - 1, "the values' differences", signed=True),
                             initial=first))
        scale = 10 ** d
        return [k / scale for k in ks]
    if mode == ord("F"):
        bits = r.column(n, "the float64 values", signed=False)
        return list(array("d", array("q", bits).tobytes()))
    raise r.fail(f"unknown values' mode {mode}")


def _read_flags(r: _Reader, n: int) -> list[int]:
    mode = r.byte("the flags' mode")
    if mode == ord("0"):
        return [0] * n
    if mode != ord("R"):
        raise r.fail(f"unknown flags' mode {mode}")
    flags: list[int] = []
    for _ in range(r.varint("the number of flag runs")):
        flag = r.varint("a run's flags")
        length = r.varint("a run's length")
        if length == 0 or len(flags) + length > n:
            raise r.fail(f"the flag runs do not add up to {n} readings")
        flags.extend(repeat(flag, length))
    if len(flags) != n:
        raise r.fail(f"the flag runs cover {len(flags)} of {n} readings")
    return flags
