"""The readings' codec (labhub.network.codec): every reading comes back bit for bit, a
station's readings take a few bytes each, and corrupt bytes are refused saying where."""

from __future__ import annotations

import math
import struct
import zlib

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from labhub.network.codec import SeriesReadings, decode, encode
from labhub.network.protocol import ProtocolError

names = st.text(min_size=1, max_size=12)
times = st.integers(min_value=-(2**62), max_value=2**62)


@st.composite
def a_series(draw: st.DrawFn) -> SeriesReadings:
    n = draw(st.integers(min_value=0, max_value=25))
    if draw(st.booleans()):  # a steady clock with a little jitter, as devices send
        start = draw(st.integers(min_value=946_684_800_000_000, max_value=2**52))
        step = draw(st.integers(min_value=1, max_value=10_000_000))
        ts = [start + i * step + draw(st.integers(0, 999)) for i in range(n)]
    else:
        ts = draw(st.lists(times, min_size=n, max_size=n))
    if draw(st.booleans()):  # decimals of a few digits
        digits = draw(st.integers(0, 4))
        values = [round(v, digits) for v in draw(st.lists(
            st.floats(-1e6, 1e6, allow_nan=False), min_size=n, max_size=n))]
    else:
        values = draw(st.lists(st.floats(allow_nan=True, allow_infinity=True,
                                         allow_subnormal=True), min_size=n, max_size=n))
    flags = draw(st.lists(st.sampled_from([0, 0, 0, 1, 2, 3]), min_size=n, max_size=n))
    return SeriesReadings(draw(names), draw(names), draw(st.none() | names),
                          draw(st.none() | names), ts, values, flags)


def bits(values: list[float]) -> list[bytes]:
    return [struct.pack("<d", v) for v in values]


def same(a: list[SeriesReadings], b: list[SeriesReadings]) -> bool:
    return len(a) == len(b) and all(
        (x.device, x.channel, x.quantity, x.unit, x.ts, bits(x.values), x.flags)
        == (y.device, y.channel, y.quantity, y.unit, y.ts, bits(y.values), y.flags)
        for x, y in zip(a, b, strict=True))


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(a_series(), max_size=4))
def test_every_reading_comes_back_bit_for_bit(series: list[SeriesReadings]) -> None:
    assert same(decode(encode(series)), series)


def test_nan_payloads_negative_zero_and_shared_times_survive() -> None:
    odd_nan = struct.unpack("<d", struct.pack("<Q", 0x7FF8_0000_0000_1234))[0]
    ts = [1_764_000_000_000_000 + i * 1_000_000 for i in range(5)]
    series = [
        SeriesReadings("st-1", "t", "temperature", "degC", ts, [20.5, -0.0, 0.0, 21.25, 1e-300],
                       [0] * 5),
        SeriesReadings("st-1", "x", None, None, list(ts), [odd_nan, math.inf, -math.inf, 1.0,
                                                            2.0], [0, 1, 1, 0, 2]),
    ]
    assert same(decode(encode(series)), series)


def test_a_station_takes_under_two_bytes_a_reading() -> None:
    ts = [1_764_000_000_000_000 + i * 5_000_000 + (i * 7919) % 3000 for i in range(2000)]
    temps = [round(21.5 + 0.01 * ((i * 37) % 11 - 5), 2) for i in range(2000)]
    hums = [round(55 + 0.1 * ((i * 13) % 7 - 3), 1) for i in range(2000)]
    series = [SeriesReadings("st-1", "t", "temperature", "degC", ts, temps, [0] * 2000),
              SeriesReadings("st-1", "h", "humidity", "%", ts, hums, [0] * 2000)]
    assert len(encode(series)) / 4000 < 2


def _body(series: list[SeriesReadings]) -> bytes:
    return zlib.decompress(encode(series)[1:])


def _pack(body: bytes) -> bytes:
    return b"z" + zlib.compress(body)


SAMPLE = [SeriesReadings("st-1", "t", None, None, [1, 2, 4], [1.5, 2.5, 3.5], [0, 1, 0])]


@settings(max_examples=100, deadline=None)
@given(st.data())
def test_corrupt_bodies_are_refused_saying_where(data: st.DataObject) -> None:
    body = bytearray(_body(SAMPLE))
    if data.draw(st.booleans()):
        cut = data.draw(st.integers(0, len(body) - 1))
        broken = bytes(body[:cut])
    else:
        at = data.draw(st.integers(0, len(body) - 1))
        body[at] ^= data.draw(st.integers(1, 255))
        broken = bytes(body)
    message = ""
    try:
        decode(_pack(broken))  # a flip can make other valid readings: never a crash
    except ProtocolError as exc:
        message = str(exc)
    assert not message or ("readings section" in message and "byte" in message)


def test_what_is_not_a_section_is_refused() -> None:
    good = encode(SAMPLE)
    with pytest.raises(ProtocolError, match="compressor"):
        decode(b"q" + good[1:])
    with pytest.raises(ProtocolError, match="cut short"):
        decode(good[:-3])
    with pytest.raises(ProtocolError, match="after the compressed body"):
        decode(good + b"xx")
    body = _body(SAMPLE)
    at = body.index(b"T", 2 + 1 + 5 + 1 + 1 + 1 + 1)
    bad_mode = _pack(body[:at] + b"?" + body[at + 1:])
    with pytest.raises(ProtocolError, match=r"series 0 \(st-1/t\).*times' mode"):
        decode(bad_mode)
    with pytest.raises(ProtocolError, match="bytes after the last series"):
        decode(_pack(_body(SAMPLE) + b"\0"))
