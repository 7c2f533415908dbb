"""Readings as CSV and JSON text, streamed in chunks, for students' and teachers' spreadsheets.

The query layer hands over a header (one :class:`ExportColumn` per channel, in a stable
order) and wide rows ``(ts_us, values)`` sorted by time; this module only formats them and
never holds more than one chunk of rows, because an export has no row or time-window cap
and can run to tens of millions of rows. CSV follows what spreadsheets open without a
wizard: a chosen delimiter (``,`` ``;`` tab), a decimal point or decimal comma, an optional
UTF-8 byte order mark, ``\\r\\n`` line ends (RFC 4180, as Excel writes), local time in a
chosen IANA zone, optionally as separate date and time columns, and header cells guarded
against formula injection. Speed matters (the target is 500,000 rows a second on a slow
machine), so there is no datetime and almost no Python code per row: a chunk is formatted
with C-level ``map``/``str.join`` passes over its columns of work, time cells come from a
per-hour cache of the date and offset plus table look-ups, and numbers, column by column,
from a bounded cache of their text or, when most are new, from one ``repr`` of the column.

Number text, where the brief left a choice:

* a value is written as Python's ``repr(float)``, the shortest text that reads back to the
  same float (``21.5``, ``0.1``, ``-3.5``); whole numbers keep their ``.0`` (``21.0``), which
  every spreadsheet reads as a number and which keeps pandas and R from guessing integer
  columns;
* in CSV, numbers that ``repr`` writes in scientific notation are written positionally when
  ``1e-7 <= |x| < 1e21`` (JavaScript's rule: ``1e-05`` becomes ``0.00001``, ``1e+16``
  becomes ``10000000000000000``); outside that range the scientific form stays
  (``1e-300``), which spreadsheets also read; JSON keeps ``repr`` as ``json.dumps`` does;
* a decimal comma replaces the decimal point in numbers only, never in times;
* no value, NaN and infinity become an empty cell in CSV and ``null`` in JSON;
* negative zero is written ``0.0`` (a reading of zero; ``round(-0.04, 1)`` makes one);
* values are floats; an int is written as the equal float or as an int (``21.0``, ``21``).

Rows and times: :func:`shared_rows` puts readings that belong together on one row and
cuts their times to the precision the data has (:func:`labtext.times.step_for_interval`:
whole seconds for readings a second or more apart, milliseconds for faster ones): a
reading joins the row before it when it is less than a window (half the readings'
interval, at least one step) after that row's first reading and its column is still
empty there (two analog pins sampled together share a row), and a run's notes join the
row of their time the same way, or get a row of their own, in a last ``note`` column.
Header cells write each unit as a reader expects it in the export's language (``°C``, not
``degC``: :func:`sensors.quantities.unit_text`), and two columns of one device with the
same label (``A0`` and ``A1``, both an analog reading) are told apart by their channel.

Times, where the brief left a choice: fractions of a second are written per cell (none for
whole seconds, milliseconds when exact, microseconds otherwise); offsets that are not whole
minutes (``Africa/Monrovia`` until 1972) are written ``-00:44:30`` as
``datetime.isoformat`` does; only the zone named ``"UTC"`` is written with ``Z``. Split
date and time columns carry no offset, so both of their header cells name the zone, and
in the hour a zone sets its clocks back the local times repeat (the rows stay in time
order).
"""

from __future__ import annotations

import csv
import heapq
import io
import json
import math
from bisect import bisect_left
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import suppress
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from itertools import chain, islice, repeat
from operator import floordiv, itemgetter, mod, sub
from typing import cast
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from labtext.csvtext import DECIMALS, check_delimiter, guard_formula
from sensors.quantities import QUANTITIES, unit_text
from sensors.samples import US_PER_S
from sensors.storage import SeriesRow

__all__ = [
    "CsvOptions",
    "ExportColumn",
    "NotedRow",
    "Row",
    "csv_header",
    "guard_formula",
    "iter_csv",
    "iter_json",
    "row_window",
    "shared_rows",
]

Row = tuple[int, Sequence[float | None]]
"""One wide row: integer microseconds since the epoch (UTC) and one value per column."""
NotedRow = tuple[int, Sequence[float | None], str | None]
"""A wide row with a run's note, or None (:func:`shared_rows` with notes)."""

# DELIMITERS, DECIMALS and guard_formula are labtext.csvtext's: one CSV dialect for the
# readings export and the inventory's files.
LANGS = ("en", "es", "pt")
CHUNK_ROWS = 2000  # rows per yielded chunk: ~40-400 kB of text, small next to a socket buffer

# The header word of a run's note column.
_NOTE_WORD = {"en": "note", "es": "nota", "pt": "nota"}
# Header words for the time column(s): (date and time together, date, time).
_TIME_WORDS: dict[str, tuple[str, str, str]] = {
    "en": ("time", "date", "time"),
    "es": ("fecha y hora", "fecha", "hora"),
    "pt": ("data e hora", "data", "hora"),
}
_S_PER_HOUR = 3600
_US_PER_MS = 1000
# "MM:SS" for every second of an hour; the text of every whole millisecond (in us, "" for 0).
_MMSS = tuple(f"{minute:02d}:{second:02d}" for minute in range(60) for second in range(60))
_WHOLE_MS_TEXT = {0: "", **{ms * 1000: f".{ms:03d}" for ms in range(1, 1000)}}
# JavaScript's bounds for writing a number positionally instead of in scientific notation.
_PLAIN_MIN = 1e-7
_PLAIN_MAX = 1e21


@dataclass(frozen=True, slots=True)
class ExportColumn:
    """One exported channel: where it comes from and how the header names it."""

    device: str
    channel: str
    quantity: str | None  # "temperature", or None for a channel the hub does not know
    unit: str | None  # "degC", or None when the device did not say
    label: str  # human label in the export's language, e.g. "Temperatura"


@dataclass(frozen=True, slots=True)
class CsvOptions:
    """How a CSV export looks; invalid choices raise ``ValueError`` when constructed."""

    delimiter: str = ","  # ",", ";" or "\t"
    decimal: str = "."  # "." or ","; with "," the delimiter must be ";" or "\t"
    bom: bool = False  # UTF-8 byte order mark first, so Excel reads the file as UTF-8
    split_datetime: bool = False  # separate date and time columns instead of one timestamp
    timezone: str = "UTC"  # IANA zone the time column(s) are written in
    lang: str = "en"  # "en", "es" or "pt": the words of the time column header(s)

    def __post_init__(self) -> None:
        check_delimiter(self.delimiter)
        if self.decimal not in DECIMALS:
            raise ValueError(
                f"decimal mark {self.decimal!r} is not '.' (decimal point) or ',' (decimal comma)"
            )
        if self.decimal == "," and self.delimiter == ",":
            raise ValueError(
                "a decimal comma cannot go with a comma delimiter: use delimiter ';' (what"
                " spreadsheets in Spanish and Portuguese expect) or '\\t'"
            )
        if self.lang not in LANGS:
            raise ValueError(f"language {self.lang!r} is not one of 'en', 'es' or 'pt'")
        _zone(self.timezone)


def csv_header(
    columns: Sequence[ExportColumn], options: CsvOptions, *, notes: bool = False
) -> list[str]:
    """The header cells: the time column(s), then ``"<device> <label> (<unit>)"`` per column
    (``"<device> <channel> <label> (<unit>)"`` where one device has two columns of the same
    label), then ``note`` when ``notes``.

    Units are written as a reader expects them (``°C``). Cells are guarded with
    :func:`guard_formula` but not quoted: quoting is the writer's job.
    """
    lang = options.lang
    both, date_word, time_word = _TIME_WORDS[lang]
    zone = options.timezone
    if options.split_datetime:
        cells = [f"{date_word} ({zone})", f"{time_word} ({zone})"]
    else:
        cells = [f"{both} ({zone})"]
    labels: dict[tuple[str, str], int] = {}
    for column in columns:
        key = (column.device, column.label)
        labels[key] = labels.get(key, 0) + 1
    for column in columns:
        if labels[(column.device, column.label)] > 1 and column.label != column.channel:
            name = f"{column.device} {column.channel} {column.label}"
        else:
            name = f"{column.device} {column.label}"
        cells.append(name if column.unit is None
                     else f"{name} ({unit_text(column.unit, lang)})")
    if notes:
        cells.append(_NOTE_WORD[lang])
    return [guard_formula(cell) for cell in cells]


def row_window(step_us: int, interval_us: int | None) -> int:
    """How close (microseconds) a reading must follow a row's first to join it: half the
    readings' typical ``interval_us`` and at least ``step_us``; exact times (a step of one
    microsecond) join only equal times."""
    if step_us <= 1 or interval_us is None:
        return step_us
    return max(step_us, interval_us // 2)


def shared_rows(
    rows: Iterable[Row],
    *,
    width: int,
    step_us: int = 1,
    window_us: int | None = None,
    notes: Iterable[tuple[int, str]] | None = None,
) -> Iterator[Row | NotedRow]:
    """``rows`` (sorted by time, ``width`` values each) on shared rows, times cut to
    ``step_us``; with ``notes`` (``(ts, text)``), each row also carries its note or None.

    A reading joins the row of the readings before it when it is less than ``window_us``
    (``step_us`` by default) after that row's first reading and its column is still empty
    there; otherwise it starts a row. A note joins such a row the same way (one note a
    row), or gets a row of its own, which a reading joins only when its time, cut to the
    step, is the note's. A row's time is its first reading's (or its note's), cut down to
    a multiple of ``step_us``. Nothing is dropped: a value whose column is taken starts a
    row of its own.
    """
    window = step_us if window_us is None else window_us
    if notes is None and window <= 1 and step_us <= 1:
        yield from rows  # iter_wide already put equal times on one row
        return
    readings = ((ts, 0, values) for ts, values in rows)
    events: Iterable[tuple[int, int, Sequence[float | None] | str]] = readings
    if notes is not None:
        events = heapq.merge(readings, ((ts, 1, text) for ts, text in sorted(notes)),
                             key=_get_first)
    with_notes = notes is not None
    start = 0
    line: list[float | None] | None = None  # the row being filled; None before the first
    note: str | None = None
    has_readings = False
    for ts, kind, payload in events:
        if line is not None and ts - start < window:
            if kind:
                if note is None:
                    note = cast("str", payload)
                    continue
            elif has_readings or ts - ts % step_us == start - start % step_us:
                values = cast("Sequence[float | None]", payload)
                if all(old is None or new is None
                       for old, new in zip(line, values, strict=True)):
                    for i, value in enumerate(values):
                        if value is not None:
                            line[i] = value
                    if not has_readings:  # a note's row, at the same time: now the reading's
                        start, has_readings = ts, True
                    continue
        if line is not None:
            at = start - start % step_us
            yield (at, line, note) if with_notes else (at, line)
        start = ts
        if kind:
            line, note, has_readings = [None] * width, cast("str", payload), False
        else:
            line, note, has_readings = list(cast("Sequence[float | None]", payload)), None, True
    if line is not None:
        at = start - start % step_us
        yield (at, line, note) if with_notes else (at, line)


def iter_csv(
    columns: Sequence[ExportColumn],
    rows: Iterable[Row | NotedRow],
    options: CsvOptions,
    *,
    chunk_rows: int = CHUNK_ROWS,
    notes: bool = False,
) -> Iterator[str]:
    """CSV text in chunks of ``chunk_rows`` rows; the BOM and header come in the first chunk.

    Lines end with ``\\r\\n``. Header cells are quoted by the ``csv`` module's rules; time
    and number cells never hold the delimiter, a quote or a line break, so they are never
    quoted. With ``notes``, each row carries a third item, its note or None (as
    :func:`shared_rows` gives them), written in a last column, guarded and quoted. Raises
    ``ValueError`` for a row whose value count is not ``len(columns)``.
    """
    _check_chunk_rows(chunk_rows)
    delimiter = options.delimiter
    buffer = io.StringIO()
    writer = csv.writer(buffer, delimiter=delimiter, lineterminator="\r\n")
    writer.writerow(csv_header(columns, options, notes=notes))
    first = ("\ufeff" if options.bom else "") + buffer.getvalue()
    after_time = delimiter if columns else ""
    if options.split_datetime:

        def frame(day: str, hour: str, offset: str) -> tuple[str, str]:
            return f"{day}{delimiter}{hour}:", after_time

    else:

        def frame(day: str, hour: str, offset: str) -> tuple[str, str]:
            return f"{day}T{hour}:", offset + after_time

    plain = _Numbers(
        ncols=len(columns),
        separator=delimiter,
        point=options.decimal,
        one=_csv_number,
        none_text="",
    )
    numbers = _NotedNumbers(plain, delimiter=delimiter) if notes else plain
    zone = None if options.timezone == "UTC" else _zone(options.timezone)
    for text in _iter_chunks(
        rows,
        chunk_rows=chunk_rows,
        clock=_Clock(zone),
        frame=frame,
        numbers=numbers,
        row_end="\r\n",
    ):
        yield first + text
        first = ""
    if first:
        yield first


def iter_json(
    columns: Sequence[ExportColumn],
    rows: Iterable[Row | NotedRow],
    *,
    chunk_rows: int = CHUNK_ROWS,
    timezone: str = "UTC",
) -> Iterator[str]:
    """A JSON document in chunks: ``{"columns":[...],"rows":[[time, value, ...], ...]}``.

    Times are RFC 3339 strings in ``timezone`` (an IANA name; ``UTC`` is written with
    ``Z``, others with their offset), values are JSON numbers or ``null``; one row per line.
    The chunks joined are one valid JSON document. Raises ``ValueError`` for a row whose
    value count is not ``len(columns)``.
    """
    _check_chunk_rows(chunk_rows)
    described = ",".join(
        json.dumps(
            {
                "device": column.device,
                "channel": column.channel,
                "quantity": column.quantity,
                "unit": column.unit,
                "label": column.label,
            },
            ensure_ascii=False,
            separators=(",", ":"),
        )
        for column in columns
    )
    after_time = '",' if columns else '"'

    def frame(day: str, hour: str, offset: str) -> tuple[str, str]:
        return f'["{day}T{hour}:', offset + after_time

    numbers = _Numbers(
        ncols=len(columns), separator=",", point=".", one=_json_number, none_text="null"
    )
    lead = '{"columns":[' + described + '],"rows":[\n'
    zone = None if timezone == "UTC" else _zone(timezone)
    for text in _iter_chunks(
        rows,
        chunk_rows=chunk_rows,
        clock=_Clock(zone),
        frame=frame,
        numbers=numbers,
        row_end="],\n",
    ):
        yield lead + text.removesuffix(",\n")  # the last row of a chunk ends in "]"
        lead = ",\n"
    yield ("" if lead == ",\n" else lead) + "\n]}\n"


# --- the engine --------------------------------------------------------------------------
#
# Per-row Python code is what makes an export slow, so a chunk is formatted one kind of
# work at a time with C-level ``map``/``itemgetter``/``zip``/``str.join`` passes: split
# the timestamps into seconds and fractions, look the "MM:SS" of each second and the
# fractions up in tables, look each column's numbers up in a text cache (or ``repr`` the
# column at once), and join the pieces of the whole chunk in one go. Python code runs once
# per chunk and column, per clock block (an hour) and per unusual number, not per row.

_CACHE_SIZE = 1 << 16  # numbers kept as text, all columns together (up to ~9 MB)
_COLUMN_CACHE_MIN = 4096  # per column, whatever the width: a 10-bit ADC has 1024 levels
_MISS_RATIO = 0.4  # above this share of cache misses in a chunk, repr is cheaper ...
_REPR_CHUNKS = 32  # ... for the next this many chunks, then the cache gets another try
_get_ts = itemgetter(0)
_get_values = itemgetter(1)
_get_first = itemgetter(0)
_get_note = itemgetter(2)


def _iter_chunks(
    rows: Iterable[Row | NotedRow],
    *,
    chunk_rows: int,
    clock: _Clock,
    frame: Callable[[str, str, str], tuple[str, str]],
    numbers: _Numbers | _NotedNumbers,
    row_end: str,
) -> Iterator[str]:
    """The text of each chunk of at most ``chunk_rows`` rows, each row ending in ``row_end``.

    A row is ``head + "MM:SS" + fraction + tail + cells``, where ``frame(day, hour,
    offset)`` gives ``head`` and ``tail`` once per block of the clock. Rows come sorted, so
    a chunk splits into runs of rows within one block, found by bisection and checked with
    min/max; a run that fails the check (unsorted input) shrinks to one row, which is
    slower but still right.
    """
    source = iter(rows)
    mmss = _MMSS
    lo = hi = base = 0  # the clock block [lo, hi) of UTC seconds; empty until the first row
    head = tail = ""
    while batch := list(islice(source, chunk_rows)):
        cells = numbers.cells(batch)
        stamps = list(map(_get_ts, batch))
        seconds = list(map(floordiv, stamps, repeat(US_PER_S)))
        fractions = _fraction_texts(list(map(mod, stamps, repeat(US_PER_S))))
        # One join per chunk over the pieces of every row: "MM:SS", fraction, tail, cells,
        # and the row end with the next row's head (the last row end goes without one).
        pieces: list[str] = []
        start, count = 0, len(batch)
        while start < count:
            second = seconds[start]
            if not lo <= second < hi:
                lo, hi, base, day, hour, offset = clock.block(second)
                head, tail = frame(day, hour, offset)
            end = bisect_left(seconds, hi, start + 1)
            run = seconds[start:end]
            if len(run) == 1 or min(run) < lo or max(run) >= hi:
                end = start + 1
                minutes: Sequence[str] = (mmss[second - base],)
            else:
                minutes = itemgetter(*map(sub, run, repeat(base)))(mmss)
            if pieces:
                pieces[-1] = row_end + head  # the run before ended with the old head
            else:
                pieces.append(head)
            between = repeat(row_end + head)
            if fractions is None:
                row_pieces: Iterable[tuple[str, ...]] = zip(
                    minutes, repeat(tail), cells[start:end], between, strict=False
                )
            else:
                row_pieces = zip(
                    minutes,
                    fractions[start:end],
                    repeat(tail),
                    cells[start:end],
                    between,
                    strict=False,
                )
            pieces.extend(chain.from_iterable(row_pieces))
            start = end
        pieces[-1] = row_end
        yield "".join(pieces)


def _fraction_texts(fractions: list[int]) -> list[str] | None:
    """The text after the seconds for each fraction in microseconds; None if all are 0.

    ``""`` for whole seconds, ``.mmm`` for whole milliseconds, ``.uuuuuu`` otherwise.
    """
    if not any(fractions):
        return None
    if not fractions[0] % _US_PER_MS:  # likely a sampling rate: whole milliseconds
        short = list(map(_WHOLE_MS_TEXT.get, fractions))
        if None not in short:
            return cast("list[str]", short)  # no None in it, as just checked
    # Times of arrival: microseconds, all six digits by one % of the whole chunk, then
    # the few whole milliseconds and seconds among them written short.
    texts = (".%06d\n" * len(fractions) % tuple(fractions)).split("\n")
    texts.pop()  # after the last "\n"
    below_ms = list(map(mod, fractions, repeat(_US_PER_MS)))
    at = -1
    with suppress(ValueError):  # list.index raises ValueError when none is left
        while True:
            at = below_ms.index(0, at + 1)
            texts[at] = _WHOLE_MS_TEXT[fractions[at]]
    return texts


class _Numbers:
    """The number cells of a chunk's rows, each row's cells joined by the separator.

    Each column is formatted on its own (a station's channels differ: a light sensor
    repeats a few hundred levels, a pressure channel hardly repeats at all) and chooses per
    chunk, by how its last chunk went, between a bounded cache of number text (a dict
    look-up instead of ``repr`` for readings that repeat) and, when most of its numbers are
    new, one ``repr`` of the whole column cut apart, where the few numbers ``repr`` writes
    differently (NaN, infinity, scientific notation, negative zero) are found and rewritten.
    """

    __slots__ = ("_columns", "_ncols", "_separator")

    def __init__(
        self,
        *,
        ncols: int,
        separator: str,
        point: str,
        one: Callable[[float | None], str],
        none_text: str,
    ) -> None:
        """``one`` writes one number (or None) with a decimal point; ``point`` replaces it."""
        self._ncols = ncols
        self._separator = separator
        size = max(_CACHE_SIZE // max(ncols, 1), _COLUMN_CACHE_MIN)
        self._columns = [_Column(one, point, none_text, size) for _ in range(ncols)]

    def cells(self, batch: list[Row | NotedRow]) -> list[str]:
        """One string per row; ``ValueError`` if a row's width is not the column count."""
        ncols = self._ncols
        values = list(map(_get_values, batch))
        if set(map(len, values)) != {ncols}:
            _raise_width(batch, ncols)
        if ncols == 1:
            return self._columns[0].texts(list(map(_get_first, values)))
        if not ncols:
            return [""] * len(batch)
        texts = [
            column.texts(list(numbers))
            for column, numbers in zip(self._columns, zip(*values, strict=True), strict=True)
        ]
        return list(map(self._separator.join, zip(*texts, strict=True)))


class _NotedNumbers:
    """The cells of :class:`_Numbers` with a last note cell per row (rows as
    :func:`shared_rows` gives them with notes: ``(ts, values, note)``)."""

    __slots__ = ("_delimiter", "_numbers")

    def __init__(self, numbers: _Numbers, *, delimiter: str) -> None:
        self._numbers = numbers
        self._delimiter = delimiter

    def cells(self, batch: list[Row | NotedRow]) -> list[str]:
        texts = self._numbers.cells(batch)
        notes = list(map(_get_note, batch))
        lead = self._delimiter  # the time's tail has none when there are no value columns
        if not any(notes):
            return [text + lead for text in texts]
        return [f"{text}{lead}{self._note_cell(note)}" if note else text + lead
                for text, note in zip(texts, notes, strict=True)]

    def _note_cell(self, note: str) -> str:
        buffer = io.StringIO()
        csv.writer(buffer, delimiter=self._delimiter, lineterminator="").writerow(
            [guard_formula(note)])
        return buffer.getvalue()


class _Column:
    """The cell texts of one column, by cache or by ``repr``; see :class:`_Numbers`."""

    __slots__ = ("_cache", "_none_text", "_one", "_point", "_repr_chunks", "_warming")

    def __init__(
        self, one: Callable[[float | None], str], point: str, none_text: str, size: int
    ) -> None:
        self._one = one
        self._point = point
        self._none_text = none_text
        if point == ".":
            self._cache = _TextCache(one, size)
        else:
            self._cache = _TextCache(lambda value: one(value).replace(".", point), size)
        self._repr_chunks = 0  # chunks left to format by repr before the cache is tried again
        self._warming = True  # the misses of a cold cache say nothing about the next chunk

    def texts(self, numbers: list[float | None]) -> list[str]:
        """One cell text per number."""
        if self._repr_chunks:
            self._repr_chunks -= 1
            self._warming = not self._repr_chunks
            return self._by_repr(numbers)
        cache = self._cache
        cache.misses = 0
        texts = list(map(cache.__getitem__, numbers))
        if self._warming:
            self._warming = False
        elif cache.misses > _MISS_RATIO * len(numbers):
            self._repr_chunks = _REPR_CHUNKS
        return texts

    def _by_repr(self, numbers: list[float | None]) -> list[str]:
        text = repr(numbers)[1:-1].replace(", ", "\n")  # one number (or None) a line
        if "N" in text:
            text = text.replace("None", self._none_text)
        if "-0.0" in text:  # negative zero is written 0.0, as the cache writes it
            text = text.replace("-0.0\n", "0.0\n")
            if text.endswith("-0.0"):
                text = text[:-4] + "0.0"
        if "e" in text or "a" in text or "i" in text:
            try:
                text = _rewrite_lines(text, self._one)
            except ValueError:  # not a float's repr (a numpy number, a bool): one at a time
                text = "\n".join(map(self._one, numbers))
        if self._point != ".":
            text = text.replace(".", self._point)
        return text.split("\n")


def _rewrite_lines(text: str, one: Callable[[float | None], str]) -> str:
    """``text`` (one number a line, as ``repr`` writes it) with each line holding ``e``,
    ``a`` or ``i`` (scientific notation, ``nan``, ``inf``) rewritten by ``one``.

    Scans for each letter move only forward, so this stays linear however many such lines
    there are; ``ValueError`` for a line that is not a float's text.
    """
    size = len(text)
    nearest = {letter: text.find(letter) for letter in "eai"}
    pieces: list[str] = []
    done = 0
    while True:
        found = [at for at in nearest.values() if at >= 0]
        if not found:
            break
        at = min(found)
        start = text.rfind("\n", 0, at) + 1
        end = text.find("\n", at)
        if end < 0:
            end = size
        pieces.append(text[done:start])
        pieces.append(one(float(text[start:end])))
        done = end
        for letter, where in nearest.items():
            if 0 <= where < done:
                nearest[letter] = text.find(letter, done)
    pieces.append(text[done:])
    return "".join(pieces)


class _TextCache(dict[float | None, str]):
    """Number to cell text, filled on look-up, emptied when it holds ``size`` numbers.

    Keys compare by value, so ``-0.0`` and ``0.0`` share an entry (both are written 0.0);
    NaN is never kept (it is not equal to itself, so it would never be found again).
    """

    __slots__ = ("_one", "_size", "misses")

    def __init__(self, one: Callable[[float | None], str], size: int) -> None:
        super().__init__()
        self._one = one
        self._size = size
        self.misses = 0
        self[None] = one(None)

    def __missing__(self, value: float | None) -> str:
        self.misses += 1
        text = self._one(value)
        if value == value:  # not NaN
            if len(self) >= self._size:
                self.clear()
                self[None] = self._one(None)
            self[value] = text
        return text


class _Clock:
    """UTC seconds to local date, hour and UTC offset, one cached block at a time.

    A block is a span of UTC seconds ``[lo, hi)`` with one local date and hour and one UTC
    offset: a local hour, cut short where the zone changes its offset. Offsets do not only
    change on UTC hours or quarter hours (``America/Goose_Bay`` changed at 00:01 local time
    until 2011, ``Africa/Monrovia`` at 00:44:30 UTC in 1972), so the block ends are found
    from the zone itself: if the offset at either end of the local hour differs from the
    offset at the looked-up second, a binary search over whole seconds finds the change.
    Changes of one zone are always days apart, so a block holds at most one of them.
    """

    __slots__ = ("_zone",)

    def __init__(self, zone: ZoneInfo | None) -> None:
        self._zone = zone  # None is UTC, written with "Z"

    def block(self, second: int) -> tuple[int, int, int, str, str, str]:
        """``(lo, hi, base, day, hour, offset)`` for the block holding ``second``.

        ``second - base`` indexes the hour's "MM:SS" table; ``day`` is ``YYYY-MM-DD``,
        ``hour`` is ``HH`` and ``offset`` is ``Z`` or ``+HH:MM`` (``+HH:MM:SS`` if needed).
        """
        if self._zone is None:
            offset = 0
            offset_text = "Z"
        else:
            offset = self._offset(second)
            offset_text = _offset_text(offset)
        local = second + offset
        local_hour = local - local % _S_PER_HOUR
        base = local_hour - offset  # the UTC second this local hour starts at, at this offset
        lo, hi = base, base + _S_PER_HOUR
        if self._zone is not None:
            if self._offset(lo) != offset:
                lo = self._first(lo, second, offset, same=True)
            if self._offset(hi - 1) != offset:
                hi = self._first(second, hi - 1, offset, same=False)
        moment = datetime.fromtimestamp(local_hour, UTC)
        return lo, hi, base, moment.date().isoformat(), f"{moment.hour:02d}", offset_text

    def _offset(self, second: int) -> int:
        moment = datetime.fromtimestamp(second, self._zone)
        return (moment.utcoffset() or timedelta(0)) // timedelta(seconds=1)

    def _first(self, after: int, upto: int, offset: int, *, same: bool) -> int:
        """The first second in ``(after, upto]`` whose offset is (``same``) or is not ``offset``.

        The offset at ``after`` is the opposite of what is looked for and the one at ``upto``
        is what is looked for.
        """
        while upto - after > 1:
            middle = (after + upto) // 2
            if (self._offset(middle) == offset) == same:
                upto = middle
            else:
                after = middle
        return upto


def _offset_text(offset: int) -> str:
    sign = "-" if offset < 0 else "+"
    hours, rest = divmod(abs(offset), _S_PER_HOUR)
    minutes, seconds = divmod(rest, 60)
    text = f"{sign}{hours:02d}:{minutes:02d}"
    return f"{text}:{seconds:02d}" if seconds else text


def _csv_number(value: float | None) -> str:
    """One CSV number cell, the slow way: empty for no value, NaN and infinity."""
    if value is None:
        return ""
    number = float(value)
    if not math.isfinite(number):
        return ""
    text = repr(number + 0.0)  # + 0.0 turns -0.0 into 0.0
    if "e" in text and _PLAIN_MIN <= abs(number) < _PLAIN_MAX:
        text = format(Decimal(text), "f")
    return text


def _json_number(value: float | None) -> str:
    """One JSON number, the slow way: ``null`` for no value, NaN and infinity."""
    if value is None:
        return "null"
    number = float(value)
    return repr(number + 0.0) if math.isfinite(number) else "null"


def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise ValueError(
            f"unknown time zone {name!r}: use an IANA name such as 'America/Santiago',"
            " 'America/Sao_Paulo' or 'UTC'"
        ) from None


def _check_chunk_rows(chunk_rows: int) -> None:
    if chunk_rows < 1:
        raise ValueError(f"chunk_rows must be at least 1, got {chunk_rows}")


def _raise_width(batch: list[Row | NotedRow], ncols: int) -> None:
    for ts, values, *_note in batch:
        if len(values) != ncols:
            raise ValueError(
                f"row at {ts} us has {len(values)} values for {ncols} columns: the query"
                " must give one value (or None) per column"
            )


def columns_for(series: Sequence[SeriesRow], lang: str) -> list[ExportColumn]:
    """Export columns for stored series, labelled in ``lang`` (the channel name when the
    series has no known quantity)."""
    return [
        ExportColumn(s.device, s.channel, s.quantity, s.unit, series_label(s, lang))
        for s in series
    ]


def series_label(series: SeriesRow, lang: str) -> str:
    """The series' quantity in ``lang``, or its channel name when it has none."""
    quantity = QUANTITIES.get(series.quantity or "")
    return series.channel if quantity is None else quantity.label(lang)
