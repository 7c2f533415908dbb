"""Serial sketches: the line reader, which turns a port's lines into readings.

A :class:`LineReader` owns one port: it opens it through a
:class:`~firmware_bridge.serial_transport.LineTransport`, reads it in chunks (on its own
thread, or through the shared :class:`~firmware_bridge.serial_poller.LinePoller`), cuts
lines with a :class:`~firmware_bridge.line_splitter.LineSplitter`, decodes each line with
the format's decoder, stamps each line with its arrival time, and hands the readings to
the ingest pipeline with channels named as the sketch prints them (the pipeline applies
the device's channel map and calibrations, as for every source). Lines that do not decode
go to the dead-letter table; when most lines are noise, the device's status says to check
the baud rate. When the port vanishes or fails, the reader closes it and tries again with
a short backoff until it is stopped.

The transports, the poller, the splitter and the port-reader base each have a module of
their own; their names are importable from here too.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable, Sequence

from firmware_bridge.line_splitter import MAX_LINE_BYTES, LineSplitter
from firmware_bridge.port_reader import PortReader, ReaderStats, ReaderStatus, SketchId
from firmware_bridge.serial_poller import LinePoller
from firmware_bridge.serial_transport import (
    READ_COALESCE_S,
    READ_MAX_BYTES,
    READ_TIMEOUT_S,
    FakeLineTransport,
    LineTransport,
    PortGoneError,
    SerialTransport,
    describe_open_error,
)
from sensors import decoders
from sensors.errors import DecodeError
from sensors.pipeline import IngestPipeline, Ticket
from sensors.samples import Sample, now_us

log = logging.getLogger(__name__)

RECONNECT_FIRST_S = 0.2  # a replugged board re-enumerates within ~2 s
RECONNECT_MAX_S = 2.0
DETECT_LINES = 5  # lines looked at to detect the format
NOISE_WINDOW = 20  # lines looked at to decide a port carries noise
NOISE_SHARE = 0.8  # above this share of undecodable lines: probably the wrong baud rate
DEAD_LETTERS_PER_MINUTE = 60  # noise is counted, but only this many lines a minute are kept
SOURCE = "serial"
CHUNK_DECODING = True  # plotter lines of a known shape are decoded a chunk at a time
BITS_PER_BYTE = 10  # a UART sends a start bit, 8 data bits and a stop bit


class LineReader(PortReader):
    """Reads one port of a line-printing sketch into the ingest pipeline; see the module doc.

    ``open_transport(url, baudrate)`` opens the port (:class:`SerialTransport` by default;
    tests pass a fake). Channels reach the pipeline as the sketch names them: the device's
    channel map and calibrations are the pipeline's (``sensors.channels``).
    ``on_status`` is called whenever the status changes (from the reader's thread).
    """

    THREAD_PREFIX = "labhub-serial"

    def __init__(
        self,
        *,
        url: str,
        device_id: str,
        pipeline: IngestPipeline,
        baudrate: int = 9600,
        fmt: str = "auto",
        site: str | None = None,
        open_transport: Callable[[str, int], LineTransport] = SerialTransport,
        on_status: Callable[[ReaderStatus], None] | None = None,
        poller: LinePoller | None = None,
    ) -> None:
        if fmt != "auto" and fmt not in _LINE_FORMATS:
            raise ValueError(f"unknown line format {fmt!r}; use auto or {', '.join(_LINE_FORMATS)}")
        super().__init__(device_id=device_id, on_status=on_status)
        self.url = url
        self.pipeline = pipeline
        self.baudrate = baudrate
        self.site = site
        self._fixed_fmt = None if fmt == "auto" else fmt
        self._open = open_transport
        self._poller = poller
        self._lost = threading.Event()  # the poller saw the port fail
        self._lost_reason = ""
        self.status = ReaderStatus()
        self._splitter = LineSplitter()
        self._last_ts = 0
        self._pending: list[bytes] = []  # lines waiting for format detection
        self._csv: decoders.CsvLineDecoder | None = None
        # The shape of this sketch's plotter lines, learned from the last line decoded one
        # by one: whole chunks of lines of that shape are decoded at once (see _handle).
        self.chunk_decoding = CHUNK_DECODING
        self._shape: decoders.PlotterShape | None = None
        self._recent: list[bool] = []  # decoded or not, for the last NOISE_WINDOW lines
        self._dead_budget = DEAD_LETTERS_PER_MINUTE
        self._budget_since = time.monotonic()

    # -- the loop ---------------------------------------------------------------------

    def _stopping(self) -> None:
        self._lost.set()

    def _set_status(self, *, online: bool | None = None, message: str | None = None) -> None:
        self.status.stats.overlong = self._splitter.overlong
        super()._set_status(online=online, message=message)

    def _run(self) -> None:
        delay = RECONNECT_FIRST_S
        while not self._stop.is_set():
            try:
                transport = self._open(self.url, self.baudrate)
            except PortGoneError as exc:
                self.status.stats.failures += 1
                self._set_status(online=False, message=str(exc))
                self._stop.wait(delay)
                delay = min(delay * 2, RECONNECT_MAX_S)
                continue
            except OSError as exc:
                self.status.stats.failures += 1
                self._set_status(online=False, message=describe_open_error(self.url, exc))
                self._stop.wait(delay)
                delay = min(delay * 2, RECONNECT_MAX_S)
                continue
            delay = RECONNECT_FIRST_S
            self.status.stats.connects += 1
            self._splitter.reset()
            self._set_status(online=True, message=f"reading {self.url} at {self.baudrate} baud")
            try:
                fileno = getattr(transport, "fileno", None)
                fd = fileno() if self._poller is not None and fileno is not None else None
                if fd is not None and self._poller is not None:
                    self._read_polled(self._poller, fd)
                else:
                    while not self._stop.is_set():
                        self._chunk(transport.read_chunk(READ_TIMEOUT_S))
            except PortGoneError as exc:
                self.status.stats.failures += 1
                self._set_status(online=False, message=f"port lost ({exc}); waiting for it")
            except Exception as exc:  # a bug must not kill the reader: report and go on
                log.exception("device %s: reader failed", self.device_id)
                self._set_status(online=False, message=f"reader error: {exc}; restarting")
            finally:
                transport.close()
            if not self._stop.is_set():
                self._stop.wait(delay)
        self._set_status(online=False, message="stopped")

    def _chunk(self, data: bytes) -> None:
        if data:
            lines = self._splitter.feed(data)
            if lines:
                self._handle(lines, now_us(), self._splitter.pending)

    def _read_polled(self, poller: LinePoller, fd: int) -> None:
        """Let the shared poller read the port until it fails or the reader stops."""

        def on_lost(reason: str) -> None:
            self._lost_reason = reason
            self._lost.set()

        self._lost.clear()
        if self._stop.is_set():
            return
        poller.register(fd, self._chunk, on_lost)
        try:
            self._lost.wait()
        finally:
            poller.unregister(fd)
        if not self._stop.is_set():
            raise PortGoneError(self._lost_reason)

    # -- lines to readings ------------------------------------------------------------

    def _handle(self, lines: Sequence[bytes], arrival: int, tail: int = 0) -> None:
        """Decode lines read together at ``arrival`` (µs), ``tail`` bytes of a next line
        behind them, and submit their readings."""
        stats = self.status.stats
        stats.lines += len(lines)
        if any(raw[:ID_LINE_PREFIX_LEN] == ID_LINE_PREFIX for raw in lines):
            lines = [raw for raw in lines if not self._id_line(raw)]
        if self.status.fmt is None:
            self._pending.extend(lines)
            fmt = self._fixed_fmt or self._detect()
            if fmt is None:
                return
            self.status.fmt = fmt
            lines, self._pending = self._pending, []
        shape = self._shape
        if shape is not None and self.chunk_decoding \
                and self._handle_shaped(shape, lines, arrival, tail):
            return
        # When each line ended: the read came `tail` bytes after the last line's end, and
        # each earlier line one line's worth of bytes before the next (at the baud rate).
        byte_us = BITS_PER_BYTE * 1_000_000 / self.baudrate
        ends = [0] * len(lines)
        after = tail
        for i in range(len(lines) - 1, -1, -1):
            ends[i] = arrival - int(after * byte_us)
            after += len(lines[i]) + 2  # the sketch's println() ends lines with \r\n
        samples: list[Sample] = []
        add = samples.append
        make = tuple.__new__
        last = self._last_ts
        shaped: list[Sample] | None = None  # the last line decoded
        for raw, end in zip(lines, ends, strict=True):
            if not raw.strip():
                continue
            try:
                decoded = self._decode(raw)
            except DecodeError as exc:
                self._reject(raw, str(exc))
                continue
            shaped = decoded
            self._note(True)
            # Every line gets its own, increasing time, even when several arrive in one read.
            last = end if end > last else last + 1
            for s in decoded:
                ts = s[2] if s[2] is not None else last
                add(make(Sample, (s[0], s[1], ts, s[3], None)))
        self._last_ts = last
        if samples:
            ticket = self.pipeline.submit(samples, device=self.device_id, source=SOURCE,
                                          site=self.site)
            stats.readings += len(samples)
            self._refused(ticket)
        if shaped is not None and self.chunk_decoding and self.status.fmt == "plotter":
            self._shape = decoders.PlotterShape.of(shaped)

    def _handle_shaped(
        self, shape: decoders.PlotterShape, lines: Sequence[bytes], arrival: int, tail: int
    ) -> bool:
        """The lines decoded as a whole when all have the sketch's shape; False otherwise
        (nothing done: the caller goes line by line). Gives the same readings, times,
        counters and status as the line-by-line path, in bulk passes over the chunk."""
        columns = shape.decode(lines)
        if columns is None:
            return False
        names = shape.channels
        # The same times as the line-by-line path: each line ends one line's bytes (and
        # its \r\n) at the baud rate before the next; each time above the one before.
        byte_us = BITS_PER_BYTE * 1_000_000 / self.baudrate
        ends = []
        after = tail
        for raw in reversed(lines):
            ends.append(arrival - int(after * byte_us))
            after += len(raw) + 2
        ends.reverse()
        last = self._last_ts
        times = []
        for end in ends:
            last = end if end > last else last + 1
            times.append(last)
        self._last_ts = last
        recent = self._recent
        if len(recent) < NOISE_WINDOW or False in recent or "baud rate" in self.status.message:
            for _ in lines:
                self._note(True)
        ticket = self.pipeline.submit_columns(names, times, columns, device=self.device_id,
                                              source=SOURCE, site=self.site)
        self.status.stats.readings += len(lines) * len(names)
        self._refused(ticket)
        return True

    def _id_line(self, raw: bytes) -> bool:
        """Take a sketch's id line (True), or leave a line that is not one (False)."""
        found = parse_id_line(raw)
        if found is None:
            return False
        if found != self.status.sketch:
            self.status.sketch = found
            self._set_status()  # the supervisor records who the board says it is
        return True

    def _refused(self, ticket: Ticket) -> None:
        """Count the readings the pipeline refused (a bad site, a unit it cannot take) as
        rejects, with the reason in the status; say when they are taken again."""
        result = ticket.result
        if result.rejected:
            self.status.stats.readings -= result.rejected
            self.status.stats.rejects += result.rejected
            if result.reason != self.status.refused:
                self.status.refused = result.reason
                self._set_status()
        elif self.status.refused is not None:
            self.status.refused = None
            self._set_status()

    def _detect(self) -> str | None:
        # Decide as soon as the lines seen so far are unambiguous (a sketch may print once
        # a minute); a CSV header alone is not, so wait for the row after it.
        texts = [p.decode("utf-8", "replace") for p in self._pending if p.strip()]
        found = decoders.detect_line_format(texts) if texts else None
        if found is None and len(texts) >= DETECT_LINES:
            for raw in self._pending:
                self._reject(raw, "line does not look like Serial Plotter, CSV, JSON or a "
                                  "framed line")
            self._pending = []
        return found

    def _decode(self, raw: bytes) -> list[Sample]:
        fmt = self.status.fmt
        if fmt == "csv":
            if self._csv is None:
                self._csv = decoders.CsvLineDecoder()
            return self._csv.feed(raw)
        return _LINE_FORMATS[fmt or "plotter"](raw)

    def _note(self, ok: bool) -> None:
        recent = self._recent
        recent.append(ok)
        if len(recent) > NOISE_WINDOW:
            del recent[0]
        if len(recent) == NOISE_WINDOW:
            noisy = recent.count(False) / NOISE_WINDOW > NOISE_SHARE
            if noisy and "baud rate" not in self.status.message:
                self._set_status(message=(
                    f"lines do not decode; check the baud rate: the port is read at "
                    f"{self.baudrate} baud, does the sketch call Serial.begin({self.baudrate})?"
                ))
            elif not noisy and "baud rate" in self.status.message:
                self._set_status(message=f"reading {self.url} at {self.baudrate} baud")

    def _reject(self, raw: bytes, reason: str) -> None:
        self.status.stats.rejects += 1
        self._note(False)
        now = time.monotonic()
        if now - self._budget_since > 60:
            self._budget_since, self._dead_budget = now, DEAD_LETTERS_PER_MINUTE
        if self._dead_budget > 0:
            self._dead_budget -= 1
            self.pipeline.reject(source=SOURCE, payload=raw[:MAX_LINE_BYTES], reason=reason,
                                 device=self.device_id)


# A sketch's id line: "#id:" then its own id (letters, digits, . _ -), then optionally a
# name: "#id:climate-7B Estación 7B". A sketch prints it in setup() and now and then, so
# the hub knows the board on whatever path it comes back (docs/hardware.md).
ID_LINE_PREFIX = b"#id:"
ID_LINE_PREFIX_LEN = len(ID_LINE_PREFIX)
SKETCH_ID_MAX = 64
_SKETCH_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


def parse_id_line(raw: bytes) -> SketchId | None:
    """The id (and name) a sketch's id line gives, or None for any other line."""
    if not raw.startswith(ID_LINE_PREFIX):
        return None
    text = raw[ID_LINE_PREFIX_LEN:].decode("utf-8", "replace").strip()
    ident, _, name = text.partition(" ")
    if not _SKETCH_ID.fullmatch(ident):
        return None
    name = "".join(c for c in name.strip() if c.isprintable())[:200]
    return SketchId(ident, name or None)


_LINE_FORMATS: dict[str, Callable[[bytes], list[Sample]]] = {
    "plotter": decoders.decode_plotter_line,
    "jsonl": decoders.decode_json_line,
    "framed": decoders.decode_framed_line,
    "csv": decoders.decode_csv_line,
}


__all__ = [
    "BITS_PER_BYTE",
    "MAX_LINE_BYTES",
    "READ_COALESCE_S",
    "READ_MAX_BYTES",
    "READ_TIMEOUT_S",
    "SOURCE",
    "FakeLineTransport",
    "LinePoller",
    "LineReader",
    "LineSplitter",
    "LineTransport",
    "PortGoneError",
    "PortReader",
    "ReaderStats",
    "ReaderStatus",
    "SerialTransport",
]
