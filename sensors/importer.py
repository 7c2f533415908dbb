"""Importing readings that kits logged offline, on SD cards, while no hub was near.

Three layouts are common in labs: Serial Plotter lines (what the sketch printed, saved
to a file), plain CSV (with or without a header, sometimes with a time column) and the
Smart Citizen kit's SD-card CSV (four header rows, then ISO 8601 times). Lines go
through the same decoders and the same ingest pipeline as live data, so duplicates are
stored once (importing a card twice is safe) and every line that does not decode is kept
in the dead-letter table with its line number and the reason. Times in a time column are
read by :func:`labtext.times.parse_time` (RFC 3339, epoch seconds or milliseconds); a
time written without a zone, as a logger's clock writes it, is read in the ``zone`` the
import is given, and without one the line is refused with a message that says to add one
(a Smart Citizen file is UTC by its definition, so its zone-less times are read as UTC).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import tzinfo
from pathlib import Path

from labtext import csvtext, times
from sensors import decoders
from sensors.errors import DecodeError
from sensors.pipeline import IngestPipeline, Ticket
from sensors.samples import US_PER_S, Sample

SOURCE = "import"
CHUNK_LINES = 1000  # lines per pipeline submission
DETECT_LINES = 8  # lines looked at to tell the layout
FIRST_ERRORS = 5  # rejected lines named in the summary (all are in the dead-letter table)
TIME_COLUMNS = frozenset(
    {"time", "timestamp", "ts", "datetime", "date_time", "fecha_hora", "data_hora", "tiempo",
     "hora", "utc"}
)
FORMATS = ("auto", "plotter", "csv", "jsonl", "framed", "smartcitizen")


@dataclass(slots=True)
class ImportSummary:
    """What an import did."""

    lines: int = 0
    accepted: int = 0
    duplicate: int = 0
    suspect: int = 0
    rejected: int = 0
    first_errors: list[str] = field(default_factory=list)


def detect_format(head: list[str]) -> str:
    """The layout of a file from its first lines (``smartcitizen``, ``csv``, ``plotter``...)."""
    first = head[0].split(",")[0].strip().upper() if head else ""
    if first == "TIME" and len(head) > 1 and "ISO" in head[1].upper():
        return "smartcitizen"
    if head and _time_column(head[0]) is not None:
        return "csv"
    found = decoders.detect_line_format([h for h in head if h.strip()])
    if found is None:
        raise ValueError("cannot tell the file's format: give --format")
    return found


def _time_column(header: str) -> int | None:
    delimiter = csvtext.detect_delimiter(header)
    cells = [c.strip().strip('"').lower() for c in header.split(delimiter)]
    for i, cell in enumerate(cells):
        if cell in TIME_COLUMNS:
            return i
    return None


def _parse_time(text: str, where: str, zone: tzinfo | None) -> int:
    try:
        return times.parse_time(text.strip().strip('"'), naive_zone=zone)
    except times.TimeTextError as exc:
        hint = (" (or import with the zone the logger's clock kept)"
                if isinstance(exc, times.NaiveTimeError) else "")
        raise DecodeError(f"{exc}{hint}", fmt="csv", where=where) from None


def import_file(
    path: Path,
    *,
    pipeline: IngestPipeline,
    device: str,
    fmt: str = "auto",
    site: str | None = None,
    start: int | None = None,
    interval_s: float | None = None,
    progress: Callable[[int], object] | None = None,
    zone: tzinfo | None = None,
) -> ImportSummary:
    """Import ``path`` as readings of ``device``; see the module docstring.

    ``start`` (microseconds) and ``interval_s`` time lines that carry no time of their own;
    ``zone`` is the zone of times in a time column that are written without one.
    Raises ``ValueError`` for an unknown format, or lines without times and no ``start``.
    """
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; use one of {', '.join(FORMATS)}")
    with path.open("rb") as fh:
        head = [
            line.decode("utf-8", "replace").lstrip("\ufeff")
            for line in fh.read(64 * 1024).splitlines()[:DETECT_LINES]
        ]
    if fmt == "auto":
        fmt = detect_format(head)
    summary = ImportSummary()
    if fmt == "smartcitizen":
        text = path.read_bytes()
        _collect(summary, [_submit_decoded(pipeline, summary, device, site, text)])
        summary.lines = text.count(b"\n")
        if progress:
            progress(len(text))
        return summary
    time_col = _time_column(head[0]) if fmt == "csv" and head else None
    if time_col is None and fmt != "jsonl" and (start is None or interval_s is None):
        raise ValueError(
            f"the {fmt} lines in {path.name} carry no time: give --start and --interval "
            "(the time of the first line and the seconds between lines)"
        )
    step = round((interval_s or 0) * US_PER_S)
    tickets: list[Ticket] = []
    batch: list[Sample] = []
    n = 0  # data lines seen, for start + n * interval
    csv_decoder: decoders.CsvLineDecoder | None = None
    header: list[str] | None = None
    with path.open("rb") as fh:
        for number, raw in enumerate(fh, start=1):
            summary.lines += 1
            if progress:
                progress(len(raw))
            line = raw.decode("utf-8", "surrogateescape").rstrip("\r\n")
            if number == 1:
                line = line.lstrip("\ufeff")
            if not line.strip():
                continue
            try:
                if time_col is not None:
                    if header is None:
                        header = next(csv.reader([line],
                                                 delimiter=csvtext.detect_delimiter(line)))
                        continue
                    samples = _csv_timed(line, header, time_col,
                                         csvtext.detect_delimiter(head[0]), number, zone)
                else:
                    if fmt == "csv":
                        csv_decoder = csv_decoder or decoders.CsvLineDecoder()
                        samples = csv_decoder.feed(line)
                    else:
                        samples = _LINE_DECODERS[fmt](line)
                    if not samples:
                        continue
                    if fmt != "jsonl" or any(s.ts is None for s in samples):
                        ts = (start or 0) + n * step
                        samples = [s if s.ts is not None else s._replace(ts=ts)
                                   for s in samples]
                    n += 1
            except (DecodeError, UnicodeError) as exc:
                n += 1  # a line that does not decode still took its place in time
                reason = f"{path.name} line {number}: {exc}"
                tickets.append(pipeline.reject(source=SOURCE, payload=raw, reason=reason,
                                               device=device))
                if len(summary.first_errors) < FIRST_ERRORS:
                    summary.first_errors.append(reason)
                continue
            batch.extend(samples)
            if len(batch) >= CHUNK_LINES:
                tickets.append(pipeline.submit(batch, device=device, site=site, source=SOURCE))
                batch = []
    if batch:
        tickets.append(pipeline.submit(batch, device=device, site=site, source=SOURCE))
    _collect(summary, tickets)
    return summary


_LINE_DECODERS: dict[str, Callable[[str], list[Sample]]] = {
    "plotter": decoders.decode_plotter_line,
    "jsonl": decoders.decode_json_line,
    "framed": decoders.decode_framed_line,
}


def _csv_timed(
    line: str, header: list[str], time_col: int, delimiter: str, number: int,
    zone: tzinfo | None,
) -> list[Sample]:
    cells = next(csv.reader(io.StringIO(line), delimiter=delimiter), [])
    if len(cells) != len(header):
        raise DecodeError(f"{len(cells)} cells where the header has {len(header)}", fmt="csv",
                          where=f"line {number}")
    ts = _parse_time(cells[time_col], f"line {number}", zone)
    out: list[Sample] = []
    for i, cell in enumerate(cells):
        text = cell.strip()
        if i == time_col or not text or text.lower() in ("null", "nan", "na"):
            continue
        try:
            value = float(csvtext.decimal_point(text) if delimiter != "," else text)
        except ValueError:
            raise DecodeError(f"{text!r} in column {header[i]!r} is not a number", fmt="csv",
                              where=f"line {number}") from None
        out.append(Sample(header[i].strip(), value, ts))
    return out


def _submit_decoded(
    pipeline: IngestPipeline, summary: ImportSummary, device: str, site: str | None, text: bytes
) -> Ticket:
    try:
        samples = decoders.decode_smart_citizen_csv(text)
    except DecodeError as exc:
        summary.first_errors.append(str(exc))
        return pipeline.reject(source=SOURCE, payload=text[:65536], reason=str(exc),
                               device=device)
    return pipeline.submit(samples, device=device, site=site, source=SOURCE)


def _collect(summary: ImportSummary, tickets: list[Ticket]) -> None:
    for ticket in tickets:
        result = ticket.wait()
        summary.accepted += result.accepted
        summary.duplicate += result.duplicate
        summary.suspect += result.suspect
        summary.rejected += result.rejected
