"""Decoders for the wire formats lab kits already speak, and formatters that write them.

A decoder takes the text or bytes of one line or one body exactly as a sketch, a firmware
or an uploader sent it (Arduino Serial Plotter lines, CSV, JSON lines, Serial Studio
frames, Influx line protocol, ThingsBoard telemetry, openSenseMap and sensor.community
bodies, Smart Citizen SD-card files) and returns plain :class:`~sensors.samples.Sample`
tuples. Input it cannot read raises exactly one :class:`~sensors.errors.DecodeError` naming
the format and the place (``line 3``, ``token 2``, ``item 2, field 'temp'``; every position
counts from 1), and no other exception escapes for any text or bytes, so a hub can feed it
whatever arrives. Decoders never touch a port or a socket and keep no state, except
:class:`CsvLineDecoder` which remembers a header row (and :class:`PlotterShape`, the
learned shape of a sketch's plotter lines, decodes whole chunks of them at once):
splitting a byte stream into lines (and discarding the cut first line of a serial port)
is the serial reader's job, judging values (NaN, out of range) the pipeline's, which is
why non-finite numbers come back as samples. The formatters at the end are the inverse,
so every round trip can be property-tested and virtual kits can speak the same wire text
as real ones.
"""

from __future__ import annotations

import csv
import json
import math
import re
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, tzinfo
from typing import Any, Final

from labtext import csvtext, times
from labtext.times import EPOCH_MS_THRESHOLD
from sensors.errors import DecodeError
from sensors.samples import US_PER_S, Sample
from sensors.samples import now_us as _clock_us

__all__ = [
    "DECODERS",
    "CsvLineDecoder",
    "PlotterShape",
    "decode",
    "decode_csv_line",
    "decode_framed_line",
    "decode_influx",
    "decode_json_line",
    "decode_mqtt",
    "decode_number",
    "decode_opensensemap_csv",
    "decode_opensensemap_json",
    "decode_plotter_line",
    "decode_smart_citizen_csv",
    "decode_thingsboard",
    "detect_line_format",
    "format_framed_line",
    "format_influx",
    "format_json_line",
    "format_plotter_line",
    "format_thingsboard",
]

# Times are read by labtext.times, one set of rules for every caller (its docstring);
# EPOCH_MS_THRESHOLD, imported from there, tells epoch seconds from milliseconds.
OPENSENSEMAP_MAX_MEASUREMENTS: Final = 2_500  # openSenseMap refuses larger bodies
FUTURE_TOLERANCE_US: Final = 60 * US_PER_S  # openSenseMap refuses times > 1 min ahead
_SHOW_MAX_CHARS: Final = 40  # input echoed in an error message is cut to this length

_UNLABELED_NAMED: Final = 64  # names of the first unlabeled values, built once, not per line
_UNLABELED: Final = tuple(f"value {n}" for n in range(1, _UNLABELED_NAMED + 1))


# --- shared helpers -----------------------------------------------------------------


def _show(text: str) -> str:
    """``text`` quoted for an error message, cut short so a binary blob cannot flood a log."""
    if len(text) > _SHOW_MAX_CHARS:
        text = text[: _SHOW_MAX_CHARS - 3] + "..."
    return repr(text)


def _value_name(position: int) -> str:
    """The name the Arduino Serial Plotter gives the unlabeled value at ``position``."""
    return _UNLABELED[position - 1] if position <= _UNLABELED_NAMED else f"value {position}"


def _place(*parts: str | None) -> str | None:
    """A ``where`` from its parts, outermost first: ``_place("item 2", "field 'k'")``."""
    return ", ".join(part for part in parts if part) or None


def _relocated(exc: DecodeError, fmt: str, outer: str) -> DecodeError:
    """``exc`` raised by a line decoder, placed inside a body (``line 3, token 2``)."""
    return DecodeError(exc.reason, fmt=fmt, where=_place(outer, exc.where))


def _text(payload: str | bytes, fmt: str) -> str:
    """``payload`` as text; bytes must be UTF-8."""
    if isinstance(payload, str):
        return payload
    if isinstance(payload, (bytes, bytearray, memoryview)):
        raw = payload if type(payload) is bytes else bytes(payload)
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise DecodeError(
                f"not UTF-8 text (byte 0x{raw[exc.start]:02x} cannot start or continue a "
                "character)",
                fmt=fmt,
                where=f"byte {exc.start + 1}",
            ) from None
    raise DecodeError(f"expected text or bytes, got {type(payload).__name__}", fmt=fmt)


def _body_text(payload: str | bytes, fmt: str) -> str:
    """A whole body as text, without the byte-order mark some editors put first."""
    text = _text(payload, fmt)
    return text[1:] if text.startswith("\ufeff") else text


def _lines(text: str) -> Iterable[tuple[int, str]]:
    """Numbered lines of a body: split on ``\\n``, a trailing ``\\r`` dropped."""
    for number, line in enumerate(text.split("\n"), 1):
        yield number, line[:-1] if line.endswith("\r") else line


def _number(text: str) -> float | None:
    """``text`` as a float when it is a plain ASCII decimal number, ``nan`` or ``inf``.

    Python's ``float()`` also takes ``1_000``, other scripts' digits and surrounding
    whitespace; a sensor never sends those on purpose, so they are refused here.
    """
    try:
        value = float(text)
    except ValueError:
        return None
    if text.isascii() and text.isprintable() and "_" not in text and " " not in text:
        return value
    return None


def _checked_ts(ts: int, fmt: str, where: str | None) -> int:
    """``ts`` if it is in the years 1 to 9999, else a :class:`DecodeError`."""
    try:
        return times.check_range(ts)
    except times.TimeTextError as exc:
        raise DecodeError(str(exc), fmt=fmt, where=where) from None


def _rfc3339_us(text: str, fmt: str, where: str | None, *, naive_zone: tzinfo | None = None) -> int:
    """An RFC 3339 time as epoch microseconds, by the rules of :mod:`labtext.times`; a time
    without ``Z`` or an offset is read in ``naive_zone``, refused without one."""
    try:
        return times.rfc3339_us(text, naive_zone=naive_zone)
    except times.TimeTextError as exc:
        raise DecodeError(str(exc), fmt=fmt, where=where) from None


def _parsed_ts(value: str | int | float, fmt: str, where: str | None) -> int:
    """A time as text or a number (RFC 3339, epoch seconds or milliseconds), by the rules of
    :func:`labtext.times.parse_time`."""
    try:
        return times.parse_time(value)
    except times.TimeTextError as exc:
        raise DecodeError(str(exc), fmt=fmt, where=where) from None


def _scaled_us(value: int | float, scale: int, fmt: str, where: str | None) -> int:
    """``value`` times ``scale`` as whole microseconds, within the range of a datetime."""
    try:
        return times.scaled_us(value, scale)
    except times.TimeTextError as exc:
        raise DecodeError(str(exc), fmt=fmt, where=where) from None


def _epoch_us(value: int | float, fmt: str, where: str | None) -> int:
    """A number as a time: epoch seconds below :data:`EPOCH_MS_THRESHOLD`, else milliseconds."""
    try:
        return times.epoch_us(value)
    except times.TimeTextError as exc:
        raise DecodeError(str(exc), fmt=fmt, where=where) from None


_MS_DIGITS: Final = re.compile(r"-?[0-9]{1,20}", re.ASCII)


def _ms_us(value: Any, fmt: str, where: str | None) -> int:
    """A ThingsBoard ``ts``: epoch milliseconds, as a JSON number or a string of digits."""
    if isinstance(value, str) and _MS_DIGITS.fullmatch(value.strip()):
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise DecodeError(
            f"ts must be epoch milliseconds, got {_show(json.dumps(value))}", fmt=fmt, where=where
        )
    return _scaled_us(value, 1_000, fmt, where)


def _json_kind(value: Any) -> str:
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, bool):
        return "a boolean"
    if value is None:
        return "null"
    if isinstance(value, str):
        return "a string"
    return "a number"


def _load_json(text: str, fmt: str, where: str | None = None) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise DecodeError(
            f"not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}",
            fmt=fmt,
            where=where,
        ) from None
    except ValueError:  # an integer longer than Python's int_max_str_digits (4,300)
        raise DecodeError("a number in the JSON is too long", fmt=fmt, where=where) from None
    except RecursionError:
        raise DecodeError("JSON nested too deeply", fmt=fmt, where=where) from None


def _channel_name(key: str, fmt: str, where: str) -> str:
    """A JSON key as a channel name: not empty, and valid Unicode (no lone surrogates)."""
    if not key:
        raise DecodeError("a channel name cannot be empty", fmt=fmt, where=where)
    if not key.isascii():
        try:
            key.encode("utf-8")
        except UnicodeEncodeError:
            raise DecodeError("channel name is not valid Unicode", fmt=fmt, where=where) from None
    return key


def _json_number(value: Any, fmt: str, where: str, *, booleans: bool) -> float | None:
    """A JSON value as a reading; ``None`` for JSON ``null`` (a missing value).

    ``null`` is skipped rather than refused because ArduinoJson writes a NaN float (a
    failed sensor read) as ``null``: one bad sensor must not lose the others' readings.
    """
    if isinstance(value, bool):
        if booleans:
            return 1.0 if value else 0.0
        raise DecodeError(f"{json.dumps(value)} is not a number", fmt=fmt, where=where)
    if isinstance(value, float):
        return value
    if isinstance(value, int):
        try:
            return float(value)
        except OverflowError:
            return math.inf if value > 0 else -math.inf
    if isinstance(value, str):
        number = _number(value.strip())
        if number is None:
            raise DecodeError(f"{_show(value)} is not a number", fmt=fmt, where=where)
        return number
    if value is None:
        return None
    raise DecodeError(
        f"expected a number, got {_json_kind(value)} (nested values are not readings)",
        fmt=fmt,
        where=where,
    )


# --- Arduino Serial Plotter -----------------------------------------------------------

_PLOTTER_SPLIT: Final = re.compile(r"[, \t]+")
# Characters float() takes but a sensor never sends on purpose: "_", control characters
# other than tab, anything beyond ASCII. A line without them (nearly every line) is
# checked by float() alone; a line with them is checked token by token with _number.
_PLOTTER_SUSPECT: Final = re.compile(r"[^\t\x20-\x5e\x60-\x7e]")
# Sample(...) runs a Python-level __new__; tuple.__new__ builds the same tuple 3x faster,
# which matters at thousands of plotter lines a second.
_new_sample: Final = tuple.__new__


def _plotter_error(token: str, position: int, *, labeled: bool) -> DecodeError:
    label, colon, text = token.partition(":") if labeled else ("", "", token)
    if labeled and not (label and colon):
        message = f"expected label:value, got {_show(token)}"
    elif labeled:
        message = f"value {_show(text)} of {_show(label)} is not a number"
    else:
        message = f"{_show(token)} is not a number"
    return DecodeError(message, fmt="plotter", where=f"token {position}")


def decode_plotter_line(line: str | bytes) -> list[Sample]:
    """One Arduino IDE 2 Serial Plotter line: ``temp:21.5,hum:40`` or ``21.5 40``.

    Follows the IDE's grammar: the line ending is dropped, tokens are split on
    ``[, \\t]+``; if the line has a ``:`` after its first character every token must be
    ``label:value``, otherwise the values are named ``value 1``, ``value 2``, ... in the
    order they come (empty tokens from leading or trailing separators do not count).
    Unlike the IDE, which plots ``parseFloat("12abc")`` as 12 and skips a token without
    a value, such tokens are refused. A blank line gives ``[]``.
    """
    text = (line if type(line) is str else _text(line, "plotter")).rstrip("\r\n")
    tokens = _PLOTTER_SPLIT.split(text)
    first = 0 if tokens[0] else 1
    stop = len(tokens) if tokens[-1] else len(tokens) - 1
    careful = _PLOTTER_SUSPECT.search(text) is not None
    samples: list[Sample] = []
    append = samples.append
    if text.find(":") > 0:
        for index in range(first, stop):
            label, colon, number = tokens[index].partition(":")
            try:
                if not (label and colon):
                    raise ValueError
                value = float(number)
                if careful and _number(number) is None:
                    raise ValueError
            except ValueError:
                raise _plotter_error(tokens[index], index - first + 1, labeled=True) from None
            append(_new_sample(Sample, (label, value, None, None, None)))
    else:
        for index in range(first, stop):
            try:
                value = float(tokens[index])
                if careful and _number(tokens[index]) is None:
                    raise ValueError
            except ValueError:
                raise _plotter_error(tokens[index], index - first + 1, labeled=False) from None
            position = index - first
            name = (
                _UNLABELED[position] if position < _UNLABELED_NAMED else _value_name(position + 1)
            )
            append(_new_sample(Sample, (name, value, None, None, None)))
    return samples


# A number as sensors print it, in plain ASCII: what float() takes and _number accepts.
# Anything else (nan, inf, 1_000, other scripts' digits) sends the line to the decoder above.
_PLOTTER_NUMBER: Final = rb"([+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?)"
_PLOTTER_SHAPES_CACHED: Final = 64  # shapes kept compiled: one per kind of line in use


class PlotterShape:
    """The shape of one sketch's Serial Plotter lines, to decode many lines at once.

    A sketch prints the same labels in the same order on every line
    (``temp:21.4,hum:40,light:512``) or the same number of unlabeled values. Learned from
    one decoded line (:meth:`of`), the shape is one regular expression over a whole chunk
    of lines: :meth:`decode` gives a column of values per channel, exactly what
    :func:`decode_plotter_line` gives line by line, or ``None`` as soon as any line differs
    in any way (another label, a blank line, ``nan``, a stray ``\\r``), and the caller then
    decodes that chunk line by line. The pattern only matches lines that decoder reads the
    same way, so no line is ever read differently. Shapes are immutable and shared.
    """

    __slots__ = ("_pattern", "channels")

    def __init__(self, channels: tuple[str, ...], *, labeled: bool) -> None:
        self.channels = channels
        separator = rb"[, \t]+"
        if labeled:
            fields = [re.escape(name.encode("utf-8")) + b":" + _PLOTTER_NUMBER
                      for name in channels]
        else:
            fields = [_PLOTTER_NUMBER] * len(channels)
        # One line, from its start to its newline: a chunk's lines joined with b"\n".
        self._pattern = re.compile(
            rb"^[, \t]*" + separator.join(fields) + rb"[, \t]*\n", re.MULTILINE
        )

    @staticmethod
    def of(samples: Sequence[Sample]) -> PlotterShape | None:
        """The shape of the line that :func:`decode_plotter_line` decoded into ``samples``;
        ``None`` when it has no values or repeats a label."""
        channels = tuple(sample[0] for sample in samples)
        if not channels or len(set(channels)) != len(channels):
            return None
        # "value 1" cannot be a label (a space separates tokens): these came unlabeled.
        labeled = channels != tuple(_value_name(n) for n in range(1, len(channels) + 1))
        return _plotter_shape(channels, labeled)

    def decode(self, lines: Sequence[bytes]) -> list[list[float]] | None:
        """Values of every line, one list per channel in ``channels`` order, or ``None``
        when any line is not of this shape. ``lines`` come without their line ends."""
        if not lines:
            return None
        found = self._pattern.findall(b"\n".join(lines) + b"\n")
        # Each match is one whole line (it starts at a line start and ends at a newline,
        # and no field can hold a newline): as many matches as lines means every line.
        if len(found) != len(lines):
            return None
        if len(self.channels) == 1:
            return [list(map(float, found))]
        return [list(map(float, column)) for column in zip(*found, strict=True)]


_shape_cache: dict[tuple[tuple[str, ...], bool], PlotterShape] = {}


def _plotter_shape(channels: tuple[str, ...], labeled: bool) -> PlotterShape:
    shape = _shape_cache.get((channels, labeled))
    if shape is None:
        if len(_shape_cache) >= _PLOTTER_SHAPES_CACHED:
            _shape_cache.clear()
        shape = _shape_cache[channels, labeled] = PlotterShape(channels, labeled=labeled)
    return shape


# --- CSV ------------------------------------------------------------------------------

_CSV_TS_COLUMN: Final = "ts"  # the same key JSON lines use for the time
# Delimiters, their detection and decimal commas are labtext.csvtext's, as for every CSV.
_check_delimiter = csvtext.check_delimiter
_detect_delimiter = csvtext.detect_delimiter


def _split_csv(line: str, delimiter: str) -> list[str]:
    try:
        rows = list(csv.reader([line], delimiter=delimiter))
    except csv.Error as exc:
        raise DecodeError(f"not a CSV row: {exc}", fmt="csv") from None
    return [cell.strip() for cell in rows[0]] if rows else []


def _cell_number(cell: str, delimiter: str) -> float | None:
    """A cell as a number; with ``;`` or tab delimiters a decimal comma (``21,5``) is taken."""
    value = _number(cell)
    if value is None and delimiter != ",":
        point = csvtext.decimal_point(cell)
        if point is not cell:
            value = _number(point)
    return value


def _normalize_header(header: Sequence[str]) -> tuple[str, ...]:
    """Header names stripped; a trailing empty name (trailing delimiter) dropped; other
    empty names replaced by ``value N`` so every column has a channel name."""
    names = [name.strip() for name in header]
    if len(names) > 1 and not names[-1]:
        names.pop()
    return tuple(name or _value_name(position) for position, name in enumerate(names, 1))


def _is_header(cells: Sequence[str], delimiter: str) -> bool:
    filled = [cell for cell in cells if cell]
    return bool(filled) and all(_cell_number(cell, delimiter) is None for cell in filled)


def _csv_ts(cell: str) -> int:
    return _parsed_ts(cell, "csv", f"column {_show(_CSV_TS_COLUMN)}")


def _csv_row(cells: list[str], header: tuple[str, ...] | None, delimiter: str) -> list[Sample]:
    if header is not None:
        if len(cells) == len(header) + 1 and not cells[-1]:
            cells = cells[:-1]  # a trailing delimiter, as many sketches print one
        if len(cells) != len(header):
            raise DecodeError(
                f"expected {len(header)} cells as in the header, found {len(cells)}",
                fmt="csv",
            )
    ts: int | None = None
    if header is not None and _CSV_TS_COLUMN in header:
        cell = cells[header.index(_CSV_TS_COLUMN)]
        ts = _csv_ts(cell) if cell else None
    samples: list[Sample] = []
    for position, cell in enumerate(cells, 1):
        if not cell:
            continue  # an empty cell is a missing value
        name = header[position - 1] if header is not None else _value_name(position)
        if name == _CSV_TS_COLUMN:
            continue
        value = _cell_number(cell, delimiter)
        if value is None:
            raise DecodeError(
                f"{_show(cell)} is not a number",
                fmt="csv",
                where=f"cell {position} ({_show(name)})",
            )
        samples.append(Sample(name, value, ts))
    return samples


def decode_csv_line(
    line: str | bytes, header: Sequence[str] | None = None, *, delimiter: str | None = None
) -> list[Sample]:
    """One CSV row, named from ``header`` or ``value 1..n`` without one.

    The delimiter is ``delimiter`` or detected from the row (tab, then ``;``, then ``,``);
    with ``;`` or tab a decimal comma is read as a decimal point. Cells may be quoted;
    empty cells are missing values and are skipped. With a header the cell count must
    match it (a trailing delimiter is forgiven), and a column named ``ts`` is the time of
    the row (epoch seconds or milliseconds as in JSON lines, or RFC 3339). A blank line
    gives ``[]``. Use :class:`CsvLineDecoder` to find the header in the stream itself.
    """
    text = _text(line, "csv").rstrip("\r\n")
    if not text.strip():
        return []
    chosen = _detect_delimiter(text) if delimiter is None else _check_delimiter(delimiter)
    names = None if header is None else _normalize_header(header)
    return _csv_row(_split_csv(text, chosen), names, chosen)


class CsvLineDecoder:
    """CSV rows fed one at a time, the first row taken as a header when it is all labels.

    The first non-blank row is a header when each of its non-empty cells is not a number
    (``temp,hum``): ``feed`` then returns ``[]`` for it and names later columns after it.
    Otherwise the columns are ``value 1..n``. The delimiter, unless given, is detected from
    that first row and kept. A header passed in is used as it is and never detected.
    """

    def __init__(
        self, header: Sequence[str] | None = None, *, delimiter: str | None = None
    ) -> None:
        self._delimiter = None if delimiter is None else _check_delimiter(delimiter)
        self._header = None if header is None else _normalize_header(header)
        self._started = header is not None

    @property
    def header(self) -> tuple[str, ...] | None:
        """The column names in use, or ``None`` while none is known."""
        return self._header

    @property
    def delimiter(self) -> str | None:
        """The delimiter in use, or ``None`` before the first row."""
        return self._delimiter

    def feed(self, line: str | bytes) -> list[Sample]:
        """The samples of one row (``[]`` for a blank line or the header row)."""
        text = _text(line, "csv").rstrip("\r\n")
        if not self._started and text.startswith("\ufeff"):
            text = text[1:]
        if not text.strip():
            return []
        if self._delimiter is None:
            self._delimiter = _detect_delimiter(text)
        cells = _split_csv(text, self._delimiter)
        if not self._started:
            self._started = True
            if _is_header(cells, self._delimiter):
                self._header = _normalize_header(cells)
                return []
        return _csv_row(cells, self._header, self._delimiter)


# --- JSON lines -----------------------------------------------------------------------


def _json_line_ts(value: Any) -> int | None:
    where = "field 'ts'"
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise DecodeError(
            f"ts must be epoch seconds, epoch milliseconds or an RFC 3339 string, "
            f"got {_json_kind(value)}",
            fmt="jsonl",
            where=where,
        )
    return _parsed_ts(value, "jsonl", where)


def decode_json_line(line: str | bytes) -> list[Sample]:
    """One flat JSON object: ``{"temp": 21.5, "hum": "40", "ts": 1714564800}``.

    Values are numbers or numeric strings (many sketches quote them); ``null`` is a
    missing value and skipped; booleans, other strings and nested values are refused,
    naming the key. The optional ``ts`` is epoch seconds (a number below 1e11), epoch
    milliseconds (1e11 or more) or an RFC 3339 string with ``Z`` or an offset. A blank
    line gives ``[]``.
    """
    text = _text(line, "jsonl").strip().lstrip("\ufeff")
    if not text:
        return []
    document = _load_json(text, "jsonl")
    if not isinstance(document, dict):
        raise DecodeError(
            f'expected one JSON object like {{"temp": 21.5}}, got {_json_kind(document)}',
            fmt="jsonl",
        )
    ts = _json_line_ts(document.get("ts"))
    samples: list[Sample] = []
    for key, value in document.items():
        if key == "ts":
            continue
        where = f"field {_show(key)}"
        number = _json_number(value, "jsonl", where, booleans=False)
        if number is not None:
            samples.append(Sample(_channel_name(key, "jsonl", where), number, ts))
    return samples


# --- Serial Studio frames -------------------------------------------------------------


def decode_framed_line(line: str | bytes) -> list[Sample]:
    """One Serial Studio frame ``/*21.5,40,512*/`` (whitespace around it and its values
    allowed), values named ``value 1..n`` by position; an empty value is skipped. A blank
    line gives ``[]``; text without both frame markers is refused."""
    text = _text(line, "framed").strip()
    if not text:
        return []
    if not text.startswith("/*"):
        raise DecodeError(
            f"a frame starts with /*, got {_show(text[:10])}", fmt="framed", where="frame start"
        )
    if len(text) < 4 or not text.endswith("*/"):
        raise DecodeError(
            f"a frame ends with */, got {_show(text[-10:])}", fmt="framed", where="frame end"
        )
    inside = text[2:-2]
    samples: list[Sample] = []
    if not inside.strip():
        return samples
    for position, cell in enumerate(inside.split(","), 1):
        cell = cell.strip()
        if not cell:
            continue
        value = _number(cell)
        if value is None:
            raise DecodeError(
                f"{_show(cell)} is not a number", fmt="framed", where=f"value {position}"
            )
        samples.append(Sample(_value_name(position), value))
    return samples


# --- Influx line protocol -------------------------------------------------------------

# (multiplier, divisor) from a timestamp in the precision to microseconds. The v1 API's
# short names (n, u, m, h) are accepted too: Telegraf and airrohr users copy both.
_INFLUX_PRECISIONS: Final[dict[str, tuple[int, int]]] = {
    "ns": (1, 1_000),
    "n": (1, 1_000),
    "us": (1, 1),
    "u": (1, 1),
    "ms": (1_000, 1),
    "s": (US_PER_S, 1),
    "m": (60 * US_PER_S, 1),
    "h": (3_600 * US_PER_S, 1),
}
# Tags naming the sender, best first: airrohr sends node=esp8266-<chip id>, Telegraf host.
_INFLUX_DEVICE_TAGS: Final = ("node", "device", "host", "esp8266id")
_INFLUX_MEASUREMENT: Final = re.compile(r"(?:[^, \\]|\\.)+")
_INFLUX_KEY: Final = re.compile(r"(?:[^,= \\]|\\.)+")
_INFLUX_TAG_VALUE: Final = re.compile(r"(?:[^, \\]|\\.)+")
_INFLUX_STRING: Final = re.compile(r'"((?:[^"\\]|\\.)*)"')
_INFLUX_PLAIN: Final = re.compile(r"[^, ]+")
_INFLUX_INTEGER: Final = re.compile(r"[+-]?[0-9]+i|[0-9]+u", re.ASCII)
_INFLUX_TIMESTAMP: Final = re.compile(r"-?[0-9]{1,40}", re.ASCII)
_INFLUX_NAME_ESCAPE: Final = re.compile(r"\\([ ,=\\])")
_INFLUX_STRING_ESCAPE: Final = re.compile(r'\\(["\\])')
_INFLUX_BOOLEANS: Final = {
    **dict.fromkeys(("t", "T", "true", "True", "TRUE"), 1.0),
    **dict.fromkeys(("f", "F", "false", "False", "FALSE"), 0.0),
}


def _influx_unescape(token: str) -> str:
    return _INFLUX_NAME_ESCAPE.sub(r"\1", token) if "\\" in token else token


def _sender(tags: dict[str, str]) -> str | None:
    for name in _INFLUX_DEVICE_TAGS:
        value = tags.get(name)
        if value is not None:
            return _esp8266_device(value) if name == "esp8266id" else value
    return None


def _esp8266_device(chip_id: str) -> str:
    """sensor.community's name for a sensor kit: ``esp8266-<chip id>``, as airrohr's node tag."""
    return chip_id if chip_id.startswith("esp8266-") else f"esp8266-{chip_id}"


def _influx_field_value(raw: str, where: str) -> float:
    boolean = _INFLUX_BOOLEANS.get(raw)
    if boolean is not None:
        return boolean
    if _INFLUX_INTEGER.fullmatch(raw):
        return float(raw[:-1])
    value = _number(raw)
    if value is None:
        raise DecodeError(
            f"{_show(raw)} is not a number, integer (1i), boolean or quoted string",
            fmt="influx",
            where=where,
        )
    return value


def _influx_line(line: str, scale: tuple[int, int], where: str) -> list[Sample]:
    match = _INFLUX_MEASUREMENT.match(line)
    if match is None:
        raise DecodeError("a line starts with the measurement name", fmt="influx", where=where)
    end = len(line)
    at = match.end()
    tags: dict[str, str] = {}
    while at < end and line[at] == ",":
        key = _INFLUX_KEY.match(line, at + 1)
        if key is None or key.end() >= end or line[key.end()] != "=":
            raise DecodeError("a tag is key=value with a non-empty key", fmt="influx", where=where)
        value = _INFLUX_TAG_VALUE.match(line, key.end() + 1)
        if value is None:
            raise DecodeError(
                f"tag {_show(_influx_unescape(key.group()))} has no value",
                fmt="influx",
                where=where,
            )
        tags[_influx_unescape(key.group())] = _influx_unescape(value.group())
        at = value.end()
    if at >= end or line[at] != " ":
        raise DecodeError(
            "expected a space and fields after the measurement and tags",
            fmt="influx",
            where=where,
        )
    while at < end and line[at] == " ":
        at += 1
    device = _sender(tags)
    fields: list[tuple[str, float]] = []
    while True:
        key = _INFLUX_KEY.match(line, at)
        if key is None or key.end() >= end or line[key.end()] != "=":
            raise DecodeError(
                "a field is key=value with a non-empty key", fmt="influx", where=where
            )
        name = _influx_unescape(key.group())
        field_where = f"{where}, field {_show(name)}"
        at = key.end() + 1
        if at < end and line[at] == '"':
            string = _INFLUX_STRING.match(line, at)
            if string is None:
                raise DecodeError(
                    "string value has no closing quote", fmt="influx", where=field_where
                )
            at = string.end()
            text = _INFLUX_STRING_ESCAPE.sub(r"\1", string.group(1))
            number = _number(text.strip())
            if number is not None:  # a string field is kept only when it holds a number
                fields.append((name, number))
        else:
            plain = _INFLUX_PLAIN.match(line, at)
            if plain is None:
                raise DecodeError("field has no value", fmt="influx", where=field_where)
            at = plain.end()
            fields.append((name, _influx_field_value(plain.group(), field_where)))
        if at < end and line[at] == ",":
            at += 1
            continue
        if at < end and line[at] != " ":
            raise DecodeError(
                f"unexpected {_show(line[at])} after the value", fmt="influx", where=field_where
            )
        break
    rest = line[at:].lstrip(" ")
    ts: int | None = None
    if rest:
        if not _INFLUX_TIMESTAMP.fullmatch(rest):
            raise DecodeError(
                f"timestamp {_show(rest)} is not an integer", fmt="influx", where=where
            )
        multiplier, divisor = scale
        ts = _checked_ts(int(rest) * multiplier // divisor, "influx", where)
    return [Sample(name, value, ts, None, device) for name, value in fields]


def decode_influx(text: str | bytes, *, precision: str = "ns") -> list[Sample]:
    """Influx line protocol, one point per line: ``feinstaub,node=esp8266-1 SDS_P1=5.38``.

    Each field is a sample whose channel is the field key; the measurement is not part
    of the channel, and the tags only name the sender: ``device`` comes from the first
    of the tags ``node``, ``device``, ``host``, ``esp8266id`` present (``esp8266id=12``
    gives ``esp8266-12``, as airrohr's ``node`` tag does). Values: floats, integers
    (``12i``, ``12u``), booleans (``t``/``true``/``f``/``false`` in any of Influx's
    spellings, 1.0 or 0.0); string fields are skipped unless they hold a number. Escapes
    ``\\ ``, ``\\,``, ``\\=`` and ``\\\\`` are read in names, ``\\"`` and ``\\\\`` in
    strings. The optional timestamp is an integer in ``precision`` (ns, us, ms, s, or the
    v1 API's n, u, m, h). Blank lines and ``#`` comments are skipped.
    """
    body = _body_text(text, "influx")
    scale = _INFLUX_PRECISIONS.get(precision)
    if scale is None:
        raise DecodeError(
            f"unknown precision {_show(precision)}; use ns, us, ms or s",
            fmt="influx",
            where="precision",
        )
    samples: list[Sample] = []
    for number, raw in _lines(body):
        line = raw.strip(" \t\r")  # ASCII only: a name may begin with other whitespace
        if line and not line.startswith("#"):
            samples.extend(_influx_line(line, scale, f"line {number}"))
    return samples


# --- ThingsBoard ----------------------------------------------------------------------


def _thingsboard_values(
    values: dict[str, Any], ts: int | None, where: str | None, into: list[Sample]
) -> None:
    for key, value in values.items():
        field_where = f"{where}, field {_show(key)}" if where else f"field {_show(key)}"
        number = _json_number(value, "thingsboard", field_where, booleans=True)
        if number is not None:
            into.append(Sample(_channel_name(key, "thingsboard", field_where), number, ts))


def _thingsboard_object(document: dict[str, Any], where: str | None, into: list[Sample]) -> None:
    # ThingsBoard's own rule (JsonConverter): an object with both "ts" and "values" is a
    # timestamped point, anything else is plain telemetry, even with a "ts" key in it.
    if "ts" in document and "values" in document:
        extra = sorted(set(document) - {"ts", "values"})
        if extra:
            raise DecodeError(
                f"unexpected key {_show(extra[0])} next to ts and values",
                fmt="thingsboard",
                where=where,
            )
        ts = _ms_us(document["ts"], "thingsboard", _place(where, "field 'ts'"))
        values = document["values"]
        if not isinstance(values, dict):
            raise DecodeError(
                f"values must be an object, got {_json_kind(values)}",
                fmt="thingsboard",
                where=_place(where, "field 'values'"),
            )
        _thingsboard_values(values, ts, where, into)
    else:
        _thingsboard_values(document, None, where, into)


def decode_thingsboard(payload: str | bytes) -> list[Sample]:
    """ThingsBoard device telemetry in its four shapes.

    ``{"temperature":22.5}``, ``[{"k1":1},{"k2":2}]``, ``{"ts":1451649600512,"values":{...}}``
    and an array of such objects (``ts`` in epoch milliseconds). Values are numbers,
    numeric strings or booleans (1.0 / 0.0, as ThingsBoard accepts them); ``null`` is a
    missing value and skipped; any other string or a nested value is refused, naming the
    item and key. An empty body is refused; ``{}`` and ``[]`` give ``[]``.
    """
    text = _body_text(payload, "thingsboard")
    if not text.strip():
        raise DecodeError("empty body: expected a JSON object or array", fmt="thingsboard")
    document = _load_json(text, "thingsboard")
    samples: list[Sample] = []
    if isinstance(document, dict):
        _thingsboard_object(document, None, samples)
    elif isinstance(document, list):
        for position, item in enumerate(document, 1):
            if not isinstance(item, dict):
                raise DecodeError(
                    f"expected an object, got {_json_kind(item)}",
                    fmt="thingsboard",
                    where=f"item {position}",
                )
            _thingsboard_object(item, f"item {position}", samples)
    else:
        raise DecodeError(
            f"expected a JSON object or array, got {_json_kind(document)}", fmt="thingsboard"
        )
    return samples


# --- openSenseMap and sensor.community ------------------------------------------------


def _not_future(ts: int, now: int, fmt: str, where: str) -> int:
    if ts > now + FUTURE_TOLERANCE_US:
        raise DecodeError(
            "time is more than 1 minute in the future (is the kit's clock set?)",
            fmt=fmt,
            where=where,
        )
    return ts


def _too_many(count: int, fmt: str) -> DecodeError:
    return DecodeError(
        f"{count} measurements in one body; at most {OPENSENSEMAP_MAX_MEASUREMENTS} "
        "(openSenseMap's limit): send them in smaller batches",
        fmt=fmt,
    )


def decode_opensensemap_csv(text: str | bytes, *, now_us: int | None = None) -> list[Sample]:
    """An openSenseMap ``text/csv`` body: lines ``sensorId,value[,createdAt[,lng,lat[,height]]]``.

    No header. The channel is the sensor id; ``createdAt`` is RFC 3339 and may not be
    more than 1 minute after ``now_us`` (default: the current time); ``lng,lat[,height]``
    must be numbers and are otherwise ignored. At most 2,500 measurements per body.
    """
    fmt = "opensensemap-csv"
    body = _body_text(text, fmt)
    rows = [(number, line) for number, line in _lines(body) if line.strip()]
    if len(rows) > OPENSENSEMAP_MAX_MEASUREMENTS:
        raise _too_many(len(rows), fmt)
    now = _clock_us() if now_us is None else now_us
    samples: list[Sample] = []
    for number, line in rows:
        where = f"line {number}"
        cells = [cell.strip() for cell in line.split(",")]
        if len(cells) not in (2, 3, 5, 6):
            raise DecodeError(
                f"expected sensorId,value[,createdAt[,lng,lat[,height]]], found {len(cells)} cells",
                fmt=fmt,
                where=where,
            )
        sensor_id, raw_value = cells[0], cells[1]
        if not sensor_id:
            raise DecodeError("sensor id is empty", fmt=fmt, where=where)
        value = _number(raw_value)
        if value is None:
            raise DecodeError(f"value {_show(raw_value)} is not a number", fmt=fmt, where=where)
        for coordinate in cells[3:]:
            if _number(coordinate) is None:
                raise DecodeError(
                    f"location {_show(coordinate)} is not a number", fmt=fmt, where=where
                )
        ts = None
        if len(cells) > 2 and cells[2]:
            ts = _not_future(_rfc3339_us(cells[2], fmt, where), now, fmt, where)
        samples.append(Sample(sensor_id, value, ts))
    return samples


def _osm_created_at(value: Any, now: int, where: str) -> int | None:
    fmt = "opensensemap-json"
    if value is None:
        return None
    if not isinstance(value, str):
        raise DecodeError(
            f"createdAt must be an RFC 3339 string, got {_json_kind(value)}", fmt=fmt, where=where
        )
    return _not_future(_rfc3339_us(value, fmt, where), now, fmt, where)


def _osm_value(value: Any, where: str) -> float:
    number = (
        None if value is None else _json_number(value, "opensensemap-json", where, booleans=False)
    )
    if number is None:
        raise DecodeError("value is missing", fmt="opensensemap-json", where=where)
    return number


def _osm_array(document: list[Any], now: int) -> list[Sample]:
    fmt = "opensensemap-json"
    samples: list[Sample] = []
    for position, item in enumerate(document, 1):
        where = f"item {position}"
        if not isinstance(item, dict):
            raise DecodeError(f"expected an object, got {_json_kind(item)}", fmt=fmt, where=where)
        sensor = item.get("sensor", item.get("sensor_id"))
        if not isinstance(sensor, str) or not sensor:
            raise DecodeError(
                'expected "sensor": "<sensor id>" (or "sensor_id")', fmt=fmt, where=where
            )
        sensor = _channel_name(sensor, fmt, where)
        value = _osm_value(item.get("value"), f"{where}, field 'value'")
        ts = _osm_created_at(item.get("createdAt"), now, f"{where}, field 'createdAt'")
        samples.append(Sample(sensor, value, ts))
    return samples


def _osm_object(document: dict[str, Any], now: int) -> list[Sample]:
    fmt = "opensensemap-json"
    samples: list[Sample] = []
    for key, item in document.items():
        where = f"field {_show(key)}"
        sensor = _channel_name(key, fmt, where)
        ts = None
        if isinstance(item, list):  # [value, createdAt, location]
            if not 1 <= len(item) <= 3:
                raise DecodeError(
                    "expected [value] or [value, createdAt] or [value, createdAt, location]",
                    fmt=fmt,
                    where=where,
                )
            if len(item) > 1:
                ts = _osm_created_at(item[1], now, where)
            item = item[0]
        samples.append(Sample(sensor, _osm_value(item, where), ts))
    return samples


def _luftdaten(document: dict[str, Any]) -> list[Sample]:
    fmt = "opensensemap-json"
    values = document["sensordatavalues"]
    if not isinstance(values, list):
        raise DecodeError(
            f"sensordatavalues must be an array, got {_json_kind(values)}",
            fmt=fmt,
            where="field 'sensordatavalues'",
        )
    if len(values) > OPENSENSEMAP_MAX_MEASUREMENTS:
        raise _too_many(len(values), fmt)
    chip_id = document.get("esp8266id")
    device = None
    if isinstance(chip_id, str | int) and not isinstance(chip_id, bool) and str(chip_id):
        device = _esp8266_device(str(chip_id))
    elif chip_id is not None:
        raise DecodeError(
            f"esp8266id must be a string or number, got {_json_kind(chip_id)}",
            fmt=fmt,
            where="field 'esp8266id'",
        )
    samples: list[Sample] = []
    for position, item in enumerate(values, 1):
        where = f"sensordatavalues item {position}"
        if not isinstance(item, dict):
            raise DecodeError(f"expected an object, got {_json_kind(item)}", fmt=fmt, where=where)
        value_type = item.get("value_type")
        if not isinstance(value_type, str) or not value_type:
            raise DecodeError('expected "value_type": "<name>"', fmt=fmt, where=where)
        value_type = _channel_name(value_type, fmt, where)
        value = item.get("value")
        # airrohr also reports text values (GPS_timestamp, a date); openSenseMap keeps only
        # the value types that match a sensor, so text values are skipped, not refused.
        if isinstance(value, str) and _number(value.strip()) is None:
            continue
        samples.append(
            Sample(value_type, _osm_value(value, f"{where}, field 'value'"), None, None, device)
        )
    return samples


def decode_opensensemap_json(payload: str | bytes, *, now_us: int | None = None) -> list[Sample]:
    """An openSenseMap ``application/json`` body, or a sensor.community (luftdaten) one.

    Shapes: the array ``[{"sensor": "<id>", "value": "21.3", "createdAt": "<RFC 3339>"}]``
    (``sensor_id`` also taken, ``createdAt`` optional); the object
    ``{"<id>": "21.3" | 21.3 | ["21.3", "<RFC 3339>"]}``; and
    ``{"esp8266id": "123", "sensordatavalues": [{"value_type": "SDS_P1", "value": "5.38"}]}``
    whose channels are the value types, ``device`` ``esp8266-<id>`` when the id is given,
    and whose text values (a GPS date) are skipped. Times more than 1 minute after
    ``now_us`` (default: the current time) are refused, as are more than 2,500
    measurements and an empty body.
    """
    fmt = "opensensemap-json"
    text = _body_text(payload, fmt)
    if not text.strip():
        raise DecodeError("empty body: expected a JSON array or object", fmt=fmt)
    document = _load_json(text, fmt)
    now = _clock_us() if now_us is None else now_us
    if isinstance(document, dict) and "sensordatavalues" in document:
        return _luftdaten(document)
    if isinstance(document, list | dict):
        if len(document) > OPENSENSEMAP_MAX_MEASUREMENTS:
            raise _too_many(len(document), fmt)
        return (
            _osm_array(document, now) if isinstance(document, list) else _osm_object(document, now)
        )
    raise DecodeError(f"expected a JSON array or object, got {_json_kind(document)}", fmt=fmt)


# --- Smart Citizen SD card ------------------------------------------------------------

_SMART_CITIZEN_NULL: Final = ("", "null")


def decode_smart_citizen_csv(text: str | bytes) -> list[Sample]:
    """A Smart Citizen Kit SD-card file: four header rows, then ``ISO 8601,v1,v2,...``.

    Header rows: keys (``TIME,TEMP,HUM``), units (``ISO 8601,C,%``), names, sensor ids.
    Each data cell is a sample: channel the key, unit the unit as written (an empty unit
    is ``None``); ``null`` or an empty cell is a missing value. Files joined together
    (the kit's ``file -allcsv``, or copies pasted one after another) are read too: a row
    that starts with the first key again begins a new four-row header. An empty file
    gives ``[]``.
    """
    fmt = "smartcitizen"
    body = _body_text(text, fmt)
    samples: list[Sample] = []
    header: list[list[str]] = []
    keys: list[str] = []
    units: list[str | None] = []
    for number, line in _lines(body):
        if not line.strip():
            continue
        where = f"line {number}"
        try:
            rows = list(csv.reader([line]))
        except csv.Error as exc:
            raise DecodeError(f"not a CSV row: {exc}", fmt=fmt, where=where) from None
        cells = [cell.strip() for cell in rows[0]] if rows else []
        if keys and cells and cells[0] == keys[0]:
            header, keys = [], []  # the header of a following file
        if not keys:
            if not header:
                for position, key in enumerate(cells, 1):
                    if not key:
                        raise DecodeError(
                            "the keys row has an empty key",
                            fmt=fmt,
                            where=f"{where}, column {position}",
                        )
            elif len(cells) != len(header[0]):
                raise DecodeError(
                    f"header row has {len(cells)} cells, the keys row {len(header[0])}",
                    fmt=fmt,
                    where=where,
                )
            header.append(cells)
            if len(header) == 4:
                keys = header[0]
                units = [unit or None for unit in header[1]]
            continue
        if len(cells) != len(keys):
            raise DecodeError(
                f"expected {len(keys)} cells as in the header, found {len(cells)}",
                fmt=fmt,
                where=where,
            )
        # The kit logs UTC (its clock is set over NTP and its docs describe the first column
        # as ISO 8601 in UTC), so a time written without a zone is taken as UTC, not refused.
        ts = _rfc3339_us(cells[0], fmt, f"{where}, column 1", naive_zone=UTC)
        for position in range(1, len(cells)):
            cell = cells[position]
            if cell.lower() in _SMART_CITIZEN_NULL:
                continue
            value = _number(cell)
            if value is None:
                raise DecodeError(
                    f"{_show(cell)} is not a number",
                    fmt=fmt,
                    where=f"{where}, column {position + 1} ({_show(keys[position])})",
                )
            samples.append(Sample(keys[position], value, ts, units[position]))
    if header and not keys:
        raise DecodeError(
            f"expected four header rows (keys, units, names, sensor ids), found {len(header)}",
            fmt=fmt,
        )
    return samples


# --- registry -------------------------------------------------------------------------


def _line_body(
    fmt: str, decode_line: Callable[[str], list[Sample]]
) -> Callable[[str | bytes], list[Sample]]:
    """A whole-body decoder from a line decoder: each line decoded, errors naming the line."""

    def decode_body(payload: str | bytes) -> list[Sample]:
        samples: list[Sample] = []
        for number, line in _lines(_body_text(payload, fmt)):
            try:
                samples.extend(decode_line(line))
            except DecodeError as exc:
                raise _relocated(exc, fmt, f"line {number}") from None
        return samples

    decode_body.__name__ = f"decode_{fmt}_body"
    decode_body.__doc__ = f"A body of {fmt} lines, each decoded; errors name the line."
    return decode_body


def _decode_csv_body(payload: str | bytes) -> list[Sample]:
    """A CSV body: the first row is a header when it is all labels."""
    rows = CsvLineDecoder()
    samples: list[Sample] = []
    for number, line in _lines(_body_text(payload, "csv")):
        try:
            samples.extend(rows.feed(line))
        except DecodeError as exc:
            raise _relocated(exc, "csv", f"line {number}") from None
    return samples


DECODERS: dict[str, Callable[[str | bytes], list[Sample]]] = {
    "plotter": _line_body("plotter", decode_plotter_line),
    "csv": _decode_csv_body,
    "jsonl": _line_body("jsonl", decode_json_line),
    "framed": _line_body("framed", decode_framed_line),
    "influx": decode_influx,
    "thingsboard": decode_thingsboard,
    "opensensemap-csv": decode_opensensemap_csv,
    "opensensemap-json": decode_opensensemap_json,
    "smartcitizen": decode_smart_citizen_csv,
}
"""Whole-body decoders by format name. Line formats decode every line of the body (a
plotter body keeps its first line: discarding a cut first line is the serial reader's job)."""


def decode(fmt: str, payload: str | bytes) -> list[Sample]:
    """``payload`` decoded with the decoder registered as ``fmt`` in :data:`DECODERS`."""
    decoder = DECODERS.get(fmt)
    if decoder is None:
        known = ", ".join(sorted(DECODERS))
        raise DecodeError(f"unknown format {_show(fmt)}; known formats: {known}", fmt=fmt)
    return decoder(payload)


# --- MQTT payloads ---------------------------------------------------------------------

_EXACT_INT: Final = 2**53  # integers below this in size convert to float exactly and fast
MQTT_FORMATS: Final = ("telemetry", "influx")  # topic leaves with a format of their own; any
# other leaf names a channel and carries one bare number (Tasmota- and Homie-style)


def decode_number(payload: str | bytes) -> list[Sample]:
    """One bare number (``21.5``, surrounding whitespace allowed) as one sample of a channel
    named ``value``; the caller names the channel (an MQTT topic's last level does)."""
    text = _text(payload, "number").strip()
    value = _number(text)
    if value is None:
        raise DecodeError(f"expected one number like 21.5, got {_show(text)}", fmt="number")
    return [Sample("value", value)]


def _plain_telemetry(document: dict[str, Any]) -> list[Sample] | None:
    """The samples of ``{"temp": 21.5, ...}`` when every value is a JSON number and every
    key plain ASCII (what nodes send nearly always); ``None`` for anything else, which the
    full ThingsBoard rules then read or refuse with their precise errors."""
    samples: list[Sample] = []
    append = samples.append
    for key, value in document.items():
        kind = type(value)
        if kind is float:
            number = value
        elif kind is int and -_EXACT_INT < value < _EXACT_INT:
            number = float(value)
        else:
            return None
        if not key or not key.isascii():
            return None
        append(Sample(key, number))
    return samples


def _decode_telemetry(payload: str | bytes) -> list[Sample]:
    """ThingsBoard telemetry, or LabHub JSON lines (an object with ``ts`` but no ``values``,
    which ThingsBoard would read as a channel named ``ts``, or several lines)."""
    try:
        if type(payload) is bytes:
            text = payload.decode()
        elif type(payload) is str:
            text = payload
        else:
            raise ValueError("neither bytes nor text")  # bytearray, memoryview: the slow way
        document = json.loads(text)
    except (ValueError, RecursionError):
        text = _body_text(payload, "thingsboard")  # says why a payload is not text
        try:
            document = json.loads(text)
        except (ValueError, RecursionError):
            body = text.strip()
            if "\n" in body and body.startswith("{"):
                return DECODERS["jsonl"](text)
            return decode_thingsboard(text)  # raises its own, precise DecodeError
    if type(document) is dict:
        if "ts" in document:
            if "values" not in document:
                return decode_json_line(text)
        else:
            plain = _plain_telemetry(document)
            if plain is not None:
                return plain
        samples: list[Sample] = []
        _thingsboard_object(document, None, samples)
        return samples
    return decode_thingsboard(text)


def decode_mqtt(leaf: str, payload: str | bytes, *, influx_precision: str = "ns") -> list[Sample]:
    """The samples of one MQTT message on a node topic whose last level is ``leaf``:
    ``telemetry`` (ThingsBoard telemetry or JSON lines), ``influx`` (Influx line protocol,
    timestamps in ``influx_precision``), or a channel name (one bare number).

    The samples carry no device: the topic names it, and a tag inside an Influx line does
    not override it. Raises :class:`~sensors.errors.DecodeError` like every decoder here.
    """
    if leaf == "telemetry":
        return _decode_telemetry(payload)
    if leaf == "influx":
        samples = decode_influx(payload, precision=influx_precision)
        return [s._replace(device=None) if s.device is not None else s for s in samples]
    return [Sample(leaf, decode_number(payload)[0].value)]


# --- line format detection ------------------------------------------------------------

_DETECTION_ORDER: Final = ("jsonl", "framed", "csv", "plotter")  # ties go to the first


def _line_kind(line: str) -> str | None:
    """What one stripped, non-blank line looks like: a format name, ``"header"`` for a
    row of labels, or ``None`` for anything else (a boot message, a cut line)."""
    if line.startswith("{") and line.endswith("}"):
        return "jsonl"
    if line.startswith("/*") and line.endswith("*/"):
        return "framed"
    if ";" in line:
        cells = _split_csv_quietly(line, ";")
        if cells and all(cell == "" or _cell_number(cell, ";") is not None for cell in cells):
            return "csv"
        return "header" if cells and _is_header(cells, ";") else None
    try:
        decode_plotter_line(line)
    except DecodeError:
        delimiter = _detect_delimiter(line)
        cells = _split_csv_quietly(line, delimiter)
        if cells and delimiter in line and _is_header(cells, delimiter) and ":" not in line:
            return "header"
        return None
    return "plotter"


def _split_csv_quietly(line: str, delimiter: str) -> list[str] | None:
    try:
        return _split_csv(line, delimiter)
    except DecodeError:
        return None


def detect_line_format(lines: Sequence[str]) -> str | None:
    """Guess the line format of a serial stream from a few of its lines.

    Each non-blank line votes: a JSON object for ``jsonl``, a ``/*...*/`` frame for
    ``framed``, ``;``-separated numbers for ``csv``, ``label:value`` pairs or numbers
    separated by commas, spaces or tabs for ``plotter``. A row of labels followed later by
    number rows makes it ``csv`` (a header, then rows). Lines that fit nothing (a boot
    message, a cut first line) do not vote. The most votes win, ties in the order jsonl,
    framed, csv, plotter; no votes gives ``None``.
    """
    kinds = [_line_kind(line.strip()) for line in lines if line.strip()]
    if "header" in kinds:
        first_header = kinds.index("header")
        if any(kind in ("plotter", "csv") for kind in kinds[first_header + 1 :]):
            return "csv"
    votes = Counter(kind for kind in kinds if kind in _DETECTION_ORDER)
    if not votes:
        return None
    return max(_DETECTION_ORDER, key=lambda kind: (votes[kind], -_DETECTION_ORDER.index(kind)))


# --- formatters -----------------------------------------------------------------------

_PLOTTER_LABEL_FORBIDDEN: Final = re.compile(r"[, \t:\r\n]")


def format_plotter_line(samples: Sequence[Sample]) -> str:
    """Samples as one Serial Plotter line, without the line ending.

    Unlabeled (``21.5,40.0``) when the channels are exactly ``value 1``, ``value 2``, ...
    in order; otherwise ``label:value`` pairs joined by ``,``. Values are written with
    ``repr`` so that decoding gives the same floats back. Raises ``ValueError`` for a
    label the plotter grammar cannot carry (empty, or with a space, comma, tab, colon or
    line break).
    """
    if all(sample.channel == _value_name(n) for n, sample in enumerate(samples, 1)):
        return ",".join(repr(float(sample.value)) for sample in samples)
    for sample in samples:
        if not sample.channel or _PLOTTER_LABEL_FORBIDDEN.search(sample.channel):
            raise ValueError(f"{sample.channel!r} cannot be a Serial Plotter label")
    return ",".join(f"{sample.channel}:{float(sample.value)!r}" for sample in samples)


_rfc3339 = times.format_time  # microseconds as RFC 3339 in UTC with Z, exactly


def _common_ts(samples: Sequence[Sample]) -> int | None:
    stamps = {sample.ts for sample in samples}
    if len(stamps) > 1:
        raise ValueError("samples with different times cannot share one line")
    return stamps.pop() if stamps else None


def format_json_line(samples: Sequence[Sample], ts: int | None = None) -> str:
    """Samples as one JSON object line (no line ending): ``{"temp": 21.5, "ts": ...}``.

    The time is ``ts`` or else the samples' common ``ts`` (``ValueError`` when they
    differ), written as integer epoch milliseconds when that is exact, otherwise as an
    RFC 3339 string with microseconds, so decoding gives the same microseconds back.
    Units and devices are not part of the format. ``ValueError`` for a repeated channel
    or one named ``ts``.
    """
    document: dict[str, float | int | str] = {}
    for sample in samples:
        if sample.channel in document or sample.channel == "ts":
            raise ValueError(f"channel {sample.channel!r} cannot appear in the object twice")
        document[sample.channel] = float(sample.value)
    moment = _common_ts(samples) if ts is None else ts
    if moment is not None:
        exact_ms = moment % 1_000 == 0 and moment // 1_000 >= EPOCH_MS_THRESHOLD
        document["ts"] = moment // 1_000 if exact_ms else _rfc3339(moment)
    return json.dumps(document, ensure_ascii=False, separators=(",", ":"))


def format_framed_line(values: Iterable[float]) -> str:
    """Values as one Serial Studio frame ``/*21.5,40.0*/`` (no line ending)."""
    return "/*" + ",".join(repr(float(value)) for value in values) + "*/"


def _influx_escape(name: str, what: str, specials: str = ",= ") -> str:
    """``name`` with backslashes and ``specials`` escaped; ``ValueError`` if it cannot be sent."""
    if not name or "\n" in name or "\r" in name:
        raise ValueError(f"{what} {name!r} must be non-empty and on one line")
    name = name.replace("\\", "\\\\")
    for special in specials:
        name = name.replace(special, "\\" + special)
    return name


def format_influx(
    measurement: str,
    samples: Sequence[Sample],
    tags: dict[str, str] | None = None,
    precision: str = "ns",
) -> str:
    """Samples as Influx line protocol, one line per run of samples sharing time and device.

    A sample's ``device`` becomes a ``device`` tag unless ``tags`` already names the
    sender (``node``, ``device``, ``host``, ``esp8266id``). Timestamps are written in
    ``precision`` (ns, us, ms, s), rounded down when the precision is coarser than a
    microsecond. Lines are joined by ``\\n`` with no trailing newline; units are not part
    of the format. ``ValueError`` for an empty name or one with a line break, a
    measurement starting with ``#`` (a comment), a tab or a byte-order mark, or an unknown
    precision.
    """
    scale = _INFLUX_PRECISIONS.get(precision)
    if scale is None:
        raise ValueError(f"unknown precision {precision!r}")
    if measurement.startswith(("#", "\t", "\ufeff")):
        raise ValueError("a measurement starting with #, a tab or a BOM would not read back")
    head = _influx_escape(measurement, "measurement", ", ")  # = needs no escape here
    base_tags = dict(tags or {})
    names_sender = any(name in base_tags for name in _INFLUX_DEVICE_TAGS)
    multiplier, divisor = scale
    lines: list[str] = []
    index = 0
    while index < len(samples):
        ts, device = samples[index].ts, samples[index].device
        run_end = index
        while (
            run_end < len(samples)
            and samples[run_end].ts == ts
            and samples[run_end].device == device
        ):
            run_end += 1
        line_tags = dict(base_tags)
        if device is not None and not names_sender:
            line_tags["device"] = device
        tag_text = "".join(
            f",{_influx_escape(key, 'tag key')}={_influx_escape(value, 'tag value')}"
            for key, value in line_tags.items()
        )
        fields = ",".join(
            f"{_influx_escape(sample.channel, 'field key')}={float(sample.value)!r}"
            for sample in samples[index:run_end]
        )
        line = f"{head}{tag_text} {fields}"
        if ts is not None:
            line += f" {ts * divisor // multiplier}"
        lines.append(line)
        index = run_end
    return "\n".join(lines)


def format_thingsboard(samples: Sequence[Sample]) -> str:
    """Samples as ThingsBoard telemetry JSON.

    Without times: ``{"k": v, ...}`` (shape 1). All at one time: ``{"ts": <ms>, "values":
    {...}}`` (shape 3). Several times: an array of such objects, one per time in order of
    first appearance, samples without a time as a plain object (shape 4). ThingsBoard
    keeps milliseconds, so times are rounded down to the millisecond. Units and devices
    are not part of the format. ``ValueError`` for a channel repeated at one time, or
    untimed channels named both ``ts`` and ``values`` (ThingsBoard would read them as a
    timestamped point).
    """
    groups: dict[int | None, dict[str, float]] = {}
    for sample in samples:
        values = groups.setdefault(sample.ts, {})
        if sample.channel in values:
            raise ValueError(f"channel {sample.channel!r} appears twice at one time")
        values[sample.channel] = float(sample.value)
    untimed = groups.get(None, {})
    if "ts" in untimed and "values" in untimed:
        raise ValueError("untimed channels 'ts' and 'values' would read as a timestamped point")
    objects: list[dict[str, Any]] = [
        values if ts is None else {"ts": ts // 1_000, "values": values}
        for ts, values in groups.items()
    ]
    document: Any = objects[0] if len(objects) == 1 else objects
    if not objects:
        document = {}
    return json.dumps(document, ensure_ascii=False, separators=(",", ":"))
