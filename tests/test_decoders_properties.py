"""Property tests of ``sensors.decoders``: nothing but DecodeError escapes, round trips hold.

(a) Random bytes, random text, text made of each format's own punctuation and random JSON
documents go into every decoder; each must return a list of samples or raise
``DecodeError``, never anything else. (b) Formatting samples and decoding the text gives
the same samples back, for the plotter, JSON lines, frames, Influx and ThingsBoard.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sensors.decoders import (
    DECODERS,
    CsvLineDecoder,
    PlotterShape,
    decode_csv_line,
    decode_framed_line,
    decode_influx,
    decode_json_line,
    decode_mqtt,
    decode_number,
    decode_opensensemap_csv,
    decode_opensensemap_json,
    decode_plotter_line,
    decode_thingsboard,
    detect_line_format,
    format_framed_line,
    format_influx,
    format_json_line,
    format_plotter_line,
    format_thingsboard,
)
from sensors.errors import DecodeError
from sensors.samples import Sample, to_us

# Decoding a few hundred bytes takes microseconds, but a loaded CI runner can stall a
# single example for longer than Hypothesis' default 200 ms deadline.
PROPERTY = settings(deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])

TS_MIN_US = to_us(datetime(1, 1, 1, tzinfo=UTC))
TS_MAX_US = to_us(datetime(9999, 12, 31, 23, 59, 59, 999_999, tzinfo=UTC))
NOW_US = to_us(datetime(2024, 5, 1, 12, 0, tzinfo=UTC))

Decoder = Callable[[Any], list[Sample]]

LINE_DECODERS: dict[str, Decoder] = {
    "decode_plotter_line": decode_plotter_line,
    "decode_csv_line": decode_csv_line,
    "decode_csv_line with header": lambda line: decode_csv_line(line, ["ts", "a", "b"]),
    "CsvLineDecoder.feed": lambda line: CsvLineDecoder().feed(line),
    "decode_json_line": decode_json_line,
    "decode_framed_line": decode_framed_line,
    "decode_influx precision=s": lambda body: decode_influx(body, precision="s"),
    "decode_opensensemap_csv now_us": lambda body: decode_opensensemap_csv(body, now_us=NOW_US),
    "decode_opensensemap_json now_us": lambda body: decode_opensensemap_json(body, now_us=NOW_US),
    "decode_number": decode_number,
    "decode_mqtt telemetry": lambda body: decode_mqtt("telemetry", body),
    "decode_mqtt influx precision=ms": lambda body: decode_mqtt("influx", body,
                                                                influx_precision="ms"),
    "decode_mqtt channel": lambda body: decode_mqtt("temperature", body),
}
ALL_DECODERS: dict[str, Decoder] = {**{f"DECODERS[{k!r}]": v for k, v in DECODERS.items()}}
ALL_DECODERS.update(LINE_DECODERS)


def decodes_or_refuses(payload: str | bytes) -> None:
    """Every decoder returns samples for ``payload`` or raises DecodeError, nothing else."""
    for name, decoder in ALL_DECODERS.items():
        refused: DecodeError | None = None
        try:
            samples = decoder(payload)
        except DecodeError as error:
            refused = error
        if refused is not None:
            assert str(refused).startswith(f"{refused.fmt}: "), name
            continue
        assert isinstance(samples, list), name
        for sample in samples:
            assert isinstance(sample, Sample), name
            assert isinstance(sample.channel, str), name
            assert isinstance(sample.value, float), name
            assert sample.ts is None or TS_MIN_US <= sample.ts <= TS_MAX_US, name


# Text made of what the formats are made of, so the decoders get past their first check.
WIRE_WORDS = st.sampled_from(
    [
        "temp",
        ":",
        ",",
        ";",
        " ",
        "\t",
        "\r\n",
        "\n",
        "/*",
        "*/",
        "{",
        "}",
        "[",
        "]",
        '"',
        "=",
        "\\",
        "#",
        "1",
        "-2.5",
        "1e400",
        "nan",
        "inf",
        "1_0",
        "12i",
        "7u",
        "t",
        "FALSE",
        "null",
        "true",
        '"ts"',
        '"values"',
        '"sensor"',
        '"value"',
        '"createdAt"',
        '"sensordatavalues"',
        '"value_type"',
        '"esp8266id"',
        "1451649600512",
        "2024-05-01T12:00:00Z",
        "2024-05-01T12:00:00",
        "2024-13-45T99:00:00+99:00",
        "9" * 30,
        "TIME,A\nISO,C\nT,A\n,1\n",
        "\ufeff",
        "\u00e9",
        "\x00",
        "\x0b",
        "\u0663",
    ]
)
WIRE_TEXT = st.lists(WIRE_WORDS, max_size=30).map("".join)

JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**30), max_value=10**30)
    | st.floats()
    | st.sampled_from(["21.3", "warm", "", "2024-05-01T12:00:00Z", "1451649600512", "nan"]),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(
            st.sampled_from(
                [
                    "ts",
                    "values",
                    "sensor",
                    "sensor_id",
                    "value",
                    "createdAt",
                    "sensordatavalues",
                    "value_type",
                    "esp8266id",
                    "temp",
                    "",
                ]
            ),
            children,
            max_size=4,
        )
    ),
    max_leaves=12,
)


# Each example goes into every decoder: drawing examples costs more than decoding them.


@PROPERTY
@given(payload=st.binary(max_size=200))
def test_random_bytes_raise_only_decode_error(payload: bytes) -> None:
    decodes_or_refuses(payload)


@PROPERTY
@given(payload=st.text(max_size=200))
def test_random_text_raises_only_decode_error(payload: str) -> None:
    decodes_or_refuses(payload)


@settings(PROPERTY, max_examples=300)
@given(payload=WIRE_TEXT)
def test_wire_like_text_raises_only_decode_error(payload: str) -> None:
    decodes_or_refuses(payload)
    decodes_or_refuses(payload.encode())


@settings(PROPERTY, max_examples=300)
@given(document=JSON_VALUES)
def test_random_json_raises_only_decode_error(document: object) -> None:
    decodes_or_refuses(json.dumps(document))


TS_LIKE = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.floats(min_value=1e11)  # milliseconds, up to ones that overflow in microseconds
    | st.text(max_size=30)
    | st.sampled_from(
        ["2024-05-01T12:00:00Z", "9999-12-31T23:59:59-01:00", "0001-01-01T00:00:00+01:00"]
    )
)


@PROPERTY
@given(ts=TS_LIKE)
def test_any_time_value_decodes_or_is_refused(ts: object) -> None:
    decodes_or_refuses(json.dumps({"ts": ts, "values": {"a": 1}}))
    decodes_or_refuses(json.dumps({"ts": ts, "a": 1}))
    decodes_or_refuses(json.dumps([{"sensor": "s", "value": 1, "createdAt": ts}]))
    decodes_or_refuses(json.dumps({"s": [1, ts]}))
    decodes_or_refuses(f"s,1,{ts}")


@PROPERTY
@given(lines=st.lists(WIRE_TEXT | st.text(max_size=40), max_size=6))
def test_detect_line_format_never_fails(lines: list[str]) -> None:
    assert detect_line_format(lines) in {None, "jsonl", "framed", "plotter", "csv"}


# --- round trips ------------------------------------------------------------------------

FINITE = st.floats(allow_nan=False, allow_infinity=False)
ANY_TS = st.integers(min_value=TS_MIN_US, max_value=TS_MAX_US)
MS_TS = st.integers(min_value=TS_MIN_US // 1_000 + 1, max_value=TS_MAX_US // 1_000).map(
    lambda ms: ms * 1_000
)
NAMES = st.text(st.characters(codec="utf-8"), min_size=1, max_size=12)
PLOTTER_LABELS = st.text(
    st.characters(codec="utf-8", exclude_characters=", \t:\r\n"), min_size=1, max_size=12
)
ONE_LINE_NAMES = st.text(
    st.characters(codec="utf-8", exclude_characters="\r\n"), min_size=1, max_size=12
)


@PROPERTY
@given(pairs=st.lists(st.tuples(PLOTTER_LABELS, FINITE), max_size=10))
def test_plotter_labeled_round_trip(pairs: list[tuple[str, float]]) -> None:
    samples = [Sample(label, value) for label, value in pairs]
    assert decode_plotter_line(format_plotter_line(samples)) == samples
    assert decode_plotter_line(format_plotter_line(samples) + "\r\n") == samples


@PROPERTY
@given(values=st.lists(FINITE, max_size=70))
def test_plotter_unlabeled_round_trip(values: list[float]) -> None:
    samples = [Sample(f"value {n}", value) for n, value in enumerate(values, 1)]
    line = format_plotter_line(samples)
    assert ":" not in line
    assert decode_plotter_line(line.encode()) == samples


@PROPERTY
@given(
    values=st.dictionaries(NAMES.filter(lambda name: name != "ts"), FINITE, max_size=8),
    ts=st.none() | ANY_TS | MS_TS,
)
def test_json_line_round_trip(values: dict[str, float], ts: int | None) -> None:
    samples = [Sample(name, value, ts) for name, value in values.items()]
    line = format_json_line(samples)
    assert decode_json_line(line) == samples
    assert decode_json_line(line.encode() + b"\r\n") == samples


@PROPERTY
@given(values=st.lists(FINITE, max_size=20))
def test_framed_round_trip(values: list[float]) -> None:
    expected = [Sample(f"value {n}", value) for n, value in enumerate(values, 1)]
    assert decode_framed_line(format_framed_line(values)) == expected


TAG_KEYS = ONE_LINE_NAMES.filter(lambda key: key not in {"node", "device", "host", "esp8266id"})
MEASUREMENTS = ONE_LINE_NAMES.filter(lambda name: not name.startswith(("#", "\t", "\ufeff")))


@PROPERTY
@given(
    measurement=MEASUREMENTS,
    tags=st.dictionaries(TAG_KEYS, ONE_LINE_NAMES, max_size=3),
    points=st.lists(
        st.tuples(
            st.lists(st.tuples(ONE_LINE_NAMES, FINITE), min_size=1, max_size=4),
            st.none() | ANY_TS,
            st.none() | ONE_LINE_NAMES,
        ),
        max_size=4,
    ),
    precision=st.sampled_from(["ns", "us"]),
)
def test_influx_round_trip(
    measurement: str,
    tags: dict[str, str],
    points: list[tuple[list[tuple[str, float]], int | None, str | None]],
    precision: str,
) -> None:
    samples = [
        Sample(field, value, ts, None, device)
        for fields, ts, device in points
        for field, value in fields
    ]
    body = format_influx(measurement, samples, tags=tags, precision=precision)
    assert decode_influx(body, precision=precision) == samples
    assert decode_influx(body.encode() + b"\n", precision=precision) == samples


@PROPERTY
@given(measurement=MEASUREMENTS, values=st.lists(FINITE, min_size=1, max_size=4), ts=MS_TS)
def test_influx_round_trip_in_milliseconds(measurement: str, values: list[float], ts: int) -> None:
    samples = [Sample(f"f{n}", value, ts) for n, value in enumerate(values)]
    assert decode_influx(format_influx(measurement, samples, precision="ms"), precision="ms") == (
        samples
    )


@PROPERTY
@given(
    groups=st.lists(
        st.tuples(st.none() | MS_TS, st.dictionaries(NAMES, FINITE, max_size=4)),
        max_size=4,
        unique_by=lambda group: group[0],
    ).filter(
        lambda groups: (
            not any(ts is None and {"ts", "values"} <= set(values) for ts, values in groups)
        )
    )
)
def test_thingsboard_round_trip(groups: list[tuple[int | None, dict[str, float]]]) -> None:
    samples = [Sample(name, value, ts) for ts, values in groups for name, value in values.items()]
    body = format_thingsboard(samples)
    assert decode_thingsboard(body) == samples
    assert decode_thingsboard(body.encode()) == samples


def is_label(name: str) -> bool:
    """A header name: not the time column and not a word float() reads (inf, nan)."""
    try:
        float(name)
    except ValueError:
        return name != "ts"
    return False


@PROPERTY
@given(
    header=st.lists(
        st.text(st.characters(codec="ascii", categories=["L"]), min_size=1, max_size=6).filter(
            is_label
        ),
        min_size=1,
        max_size=5,
    ),
    data=st.data(),
    delimiter=st.sampled_from([",", ";", "\t"]),
)
def test_csv_rows_read_back(header: list[str], data: st.DataObject, delimiter: str) -> None:
    values = data.draw(st.lists(FINITE, min_size=len(header), max_size=len(header)))
    rows = CsvLineDecoder()
    assert rows.feed(delimiter.join(header) + "\r\n") == []
    row = delimiter.join(repr(value) for value in values)
    assert rows.feed(row) == [
        Sample(name, value) for name, value in zip(header, values, strict=True)
    ]


# -- PlotterShape: a whole chunk of lines decodes as line by line -----------------------

# Numbers as sketches print them, and what float() takes but a sensor should not send.
PLAIN_NUMBERS = st.one_of(
    FINITE.map(repr),
    st.integers(-10**6, 10**6).map(str),
    st.floats(-1e6, 1e6).map(lambda x: f"{x:.2f}"),
    st.floats(-1e6, 1e6).map(lambda x: f"{x:+.3e}"),
    st.sampled_from(["0", "-0", "+0", "1.", ".5", "-.5", "007", "1E5", "2e-3"]),
)
ODD_NUMBERS = st.sampled_from(
    ["nan", "inf", "-Infinity", "1_000", "\u0661\u0662", "1e", "e1", ".", "+", "0x1", "1e99999",
     "1,5", "2:3", ""]
)
SEPARATORS = st.sampled_from([",", ", ", "\t", " ", ",,", " \t,"])


def plotter_text(draw: st.DrawFn, labels: list[str] | None, values: list[str]) -> str:
    tokens = values if labels is None else [f"{k}:{v}" for k, v in zip(labels, values,
                                                                          strict=True)]
    text = draw(SEPARATORS).join(tokens)
    if draw(st.booleans()):
        text = draw(SEPARATORS) + text
    if draw(st.booleans()):
        text += draw(SEPARATORS)
    return text


@st.composite
def plotter_chunks(draw: st.DrawFn) -> tuple[list[str] | None, int, list[bytes], bool]:
    """A sketch's shape (labels, or None for unlabeled values, and how many), a chunk of
    its lines (some perhaps odd), and whether every line is plain (so the chunk must decode
    at once)."""
    labels: list[str] | None = None
    if draw(st.booleans()):
        labels = draw(st.lists(PLOTTER_LABELS, min_size=1, max_size=5, unique=True))
    count = len(labels) if labels is not None else draw(st.integers(1, 5))
    lines: list[bytes] = []
    plain = True
    size = draw(st.integers(1, 8))
    odd_line = draw(st.integers(0, size))  # size: none; else the one line that may be odd
    for index in range(size):
        kind = "plain" if index != odd_line else draw(
            st.sampled_from(["odd number"] * 2 + ["other", "noise"]))
        if kind == "plain":
            text = plotter_text(draw, labels, [draw(PLAIN_NUMBERS) for _ in range(count)])
        elif kind == "odd number":  # one value printed oddly, the others plainly
            odd = draw(st.integers(0, count - 1))
            text = plotter_text(draw, labels, [draw(ODD_NUMBERS if n == odd else PLAIN_NUMBERS)
                                               for n in range(count)])
        elif kind == "other":  # another shape: fewer or more values, other labels, blank
            others = draw(st.lists(PLOTTER_LABELS, max_size=4, unique=True))
            values = [draw(PLAIN_NUMBERS) for _ in range(len(others) or draw(st.integers(0, 6)))]
            text = plotter_text(draw, others or None, values)
        else:
            words = st.sampled_from([*":,. \t\r-+e0123456789", "temp", *(labels or [])])
            text = "".join(draw(st.lists(words, max_size=20)))
        raw = text.encode("utf-8")
        if kind == "noise" and draw(st.booleans()):
            raw = draw(st.binary(max_size=20).filter(lambda b: b"\n" not in b))
        plain = plain and kind == "plain"
        lines.append(raw)
    return labels, count, lines, plain


def line_by_line(lines: list[bytes]) -> list[list[Sample]] | None:
    try:
        return [decode_plotter_line(line) for line in lines]
    except DecodeError:
        return None


# Many examples: a chunk decodes at once only when its one odd line (if any) was accepted.
@settings(PROPERTY, max_examples=500)
@given(chunk=plotter_chunks())
def test_a_chunk_of_one_shape_decodes_as_line_by_line(
    chunk: tuple[list[str] | None, int, list[bytes], bool],
) -> None:
    labels, count, lines, plain = chunk
    shape = PlotterShape.of(decode_plotter_line(plotter_text_of(labels, count)))
    assert shape is not None
    columns = shape.decode(lines)
    expected = line_by_line(lines)
    if plain:  # every line of the shape, plainly printed: decoded at once
        assert columns is not None
    if columns is None:
        return
    # Decoded at once: exactly what the line decoder gives, value for value (-0.0 too).
    assert expected is not None
    assert all(tuple(s.channel for s in samples) == shape.channels for samples in expected)
    assert [[repr(v) for v in column] for column in columns] == [
        [repr(samples[j].value) for samples in expected] for j in range(len(shape.channels))
    ]
    assert all(s.ts is None and s.unit is None and s.device is None
               for samples in expected for s in samples)


def plotter_text_of(labels: list[str] | None, count: int) -> bytes:
    """A plain line of the shape, to learn it from."""
    values = [str(n) for n in range(count)]
    tokens = values if labels is None else [f"{k}:{v}" for k, v in zip(labels, values,
                                                                          strict=True)]
    return ",".join(tokens).encode("utf-8")


def test_a_shape_is_learned_only_from_a_line_with_distinct_values() -> None:
    assert PlotterShape.of([]) is None
    assert PlotterShape.of(decode_plotter_line("a:1,a:2")) is None
    labeled = PlotterShape.of(decode_plotter_line("temp:21.5,hum:40"))
    unlabeled = PlotterShape.of(decode_plotter_line("21.5 40"))
    assert labeled is not None and labeled.channels == ("temp", "hum")
    assert unlabeled is not None and unlabeled.channels == ("value 1", "value 2")
    assert labeled.decode([b"temp:1,hum:2", b"temp:3\thum:-4e1,"]) == [[1.0, 3.0], [2.0, -40.0]]
    assert unlabeled.decode([b"1 2", b"3,4"]) == [[1.0, 3.0], [2.0, 4.0]]
    assert labeled.decode([b"1 2"]) is None and unlabeled.decode([b"temp:1,hum:2"]) is None
    assert labeled.decode([b"temp:1,hum:2", b""]) is None  # a blank line: line by line
    assert labeled.decode([b"temp:1,hum:2\r"]) is None  # a stray \r: line by line
    assert labeled.decode([b"temp:nan,hum:2"]) is None  # refused or not, line by line


@PROPERTY
@given(value=FINITE | st.sampled_from([math.inf, -math.inf]),
       padding=st.sampled_from(["", " ", "\n", "\r\n", "\t "]))
def test_mqtt_bare_number_round_trip(value: float, padding: str) -> None:
    """A Tasmota-style topic carries one number; surrounding whitespace is allowed."""
    body = padding + repr(value) + padding
    assert decode_mqtt("temperature", body) == [Sample("temperature", value)]
    assert decode_mqtt("temperature", body.encode()) == [Sample("temperature", value)]


@PROPERTY
@given(
    groups=st.lists(
        st.tuples(st.none() | MS_TS, st.dictionaries(NAMES, FINITE, max_size=4)),
        max_size=4,
        unique_by=lambda group: group[0],
    ).filter(
        # A plain object with a "ts" key is a LabHub JSON line on the telemetry topic.
        lambda groups: not any(ts is None and "ts" in values for ts, values in groups)
    )
)
def test_mqtt_telemetry_round_trip(groups: list[tuple[int | None, dict[str, float]]]) -> None:
    samples = [Sample(name, value, ts) for ts, values in groups for name, value in values.items()]
    body = format_thingsboard(samples)
    assert decode_mqtt("telemetry", body.encode()) == samples
    assert decode_mqtt("telemetry", b"\xef\xbb\xbf" + body.encode()) == samples  # a BOM


@PROPERTY
@given(values=st.dictionaries(NAMES.filter(lambda name: name != "ts"), FINITE, max_size=4),
       ts=MS_TS)
def test_mqtt_telemetry_json_line_round_trip(values: dict[str, float], ts: int) -> None:
    """A flat object with ``ts`` (epoch ms here) is a JSON line, not a channel named ts."""
    samples = [Sample(name, value, ts) for name, value in values.items()]
    assert decode_mqtt("telemetry", format_json_line(samples, ts)) == samples


@PROPERTY
@given(measurement=MEASUREMENTS, values=st.lists(FINITE, min_size=1, max_size=4), ts=MS_TS)
def test_mqtt_influx_round_trip_without_the_device_tag(
    measurement: str, values: list[float], ts: int
) -> None:
    """The topic names the node: a device tag inside the line does not override it."""
    samples = [Sample(f"f{i}", value, ts, None, "esp-1") for i, value in enumerate(values)]
    body = format_influx(measurement, samples, precision="ms")
    assert decode_mqtt("influx", body, influx_precision="ms") == [
        s._replace(device=None) for s in samples]


@PROPERTY
@given(text=st.text(max_size=30).filter(lambda t: decoders_number_or_none(t) is None))
def test_mqtt_bare_number_refuses_anything_else(text: str) -> None:
    with pytest.raises(DecodeError) as refused:
        decode_mqtt("temperature", text)
    assert refused.value.fmt == "number"


def decoders_number_or_none(text: str) -> float | None:
    """What a sensor may send as one number: ASCII decimal, nan or inf, around whitespace."""
    stripped = text.strip()
    if not stripped.isascii() or "_" in stripped or " " in stripped or not stripped.isprintable():
        return None
    try:
        return float(stripped)
    except ValueError:
        return None
