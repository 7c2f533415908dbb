"""Serial sketches: bytes from a port become lines, lines become readings.

A :class:`LineSplitter` cuts a byte stream into lines the way the Arduino IDE's monitor
does: records end in ``\\r?\\n``, the first line after opening is discarded (it is almost
always cut), and a line longer than the bound is dropped and counted instead of growing
the buffer without end (a wrong baud rate often produces no newline at all).

A :class:`LineReader` owns one port: it opens it through a :class:`LineTransport`, reads in
chunks (one system call per chunk, never per byte: pyserial's ``readline`` costs ~220 us of
CPU per line), decodes each line with the format's decoder, stamps each line with its
arrival time, and hands the readings to the ingest pipeline. Lines that do not decode go
to the dead-letter table; when most lines are noise, the device's status says to check the
baud rate. When the port vanishes or fails, the reader closes it and tries again with a
short backoff until it is stopped.
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import selectors
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol, Self

from sensors import decoders
from sensors.errors import DecodeError
from sensors.pipeline import IngestPipeline
from sensors.samples import Sample, now_us

log = logging.getLogger(__name__)

MAX_LINE_BYTES = 4096  # a Serial Plotter line is ~30 bytes; 4 KiB is room for any sketch
READ_COALESCE_S = 0.05  # wait this long after data arrives so one read takes many lines
READ_MAX_BYTES = 65_536  # more than a 115200-baud link carries in READ_COALESCE_S
READ_TIMEOUT_S = 0.2  # an idle port is checked this often for a stop request
RECONNECT_FIRST_S = 0.2  # a replugged board re-enumerates within ~2 s
RECONNECT_MAX_S = 2.0
DETECT_LINES = 5  # lines looked at to detect the format
NOISE_WINDOW = 20  # lines looked at to decide a port carries noise
NOISE_SHARE = 0.8  # above this share of undecodable lines: probably the wrong baud rate
DEAD_LETTERS_PER_MINUTE = 60  # noise is counted, but only this many lines a minute are kept
SOURCE = "serial"
CHUNK_DECODING = True  # plotter lines of a known shape are decoded a chunk at a time
BITS_PER_BYTE = 10  # a UART sends a start bit, 8 data bits and a stop bit


class PortGoneError(OSError):
    """The port vanished or failed (unplugged, reset, permission lost)."""


class LineTransport(Protocol):
    """One open serial port, as the line reader needs it."""

    def read_chunk(self, timeout: float) -> bytes:
        """Bytes that arrived, or ``b""`` after ``timeout`` s; PortGoneError when it is gone."""
        ...

    def close(self) -> None:
        """Close the port."""
        ...


class SerialTransport:
    """A real port through pyserial (device paths and ``socket://``/``rfc2217://`` URLs)."""

    def __init__(self, url: str, baudrate: int) -> None:
        import serial

        self._serial_mod = serial
        try:
            self._port = serial.serial_for_url(url, baudrate=baudrate, timeout=0,
                                               exclusive=True if url.startswith("/") else None)
        except (serial.SerialException, OSError, ValueError) as exc:
            raise PortGoneError(f"cannot open {url}: {exc}") from exc
        self._fd: int | None = None
        if url.startswith("/"):
            self._fd = self._port.fileno()

    def read_chunk(self, timeout: float) -> bytes:
        serial = self._serial_mod
        try:
            fd = self._fd
            if fd is None:  # a network port (socket://, rfc2217://): pyserial reads it
                self._port.timeout = timeout
                first: bytes = self._port.read(1)
                if not first:
                    return b""
                time.sleep(READ_COALESCE_S)
                return first + bytes(self._port.read(self._port.in_waiting or 0))
            # A device file: wait on it directly and read everything in one call, so a
            # chunk of many lines costs three system calls (pyserial's own read would also
            # reconfigure the port whenever the timeout changes).
            ready, _, _ = select.select([fd], [], [], timeout)
            if not ready:
                return b""
            time.sleep(READ_COALESCE_S)
            data = os.read(fd, READ_MAX_BYTES)
        except (serial.SerialException, OSError, TypeError, ValueError) as exc:
            raise PortGoneError(str(exc) or type(exc).__name__) from exc
        if not data:  # readable but empty: the device is gone (unplugged)
            raise PortGoneError("device reports readiness to read but returned no data")
        return data

    def write(self, data: bytes) -> None:
        """Send bytes to the board (the Firmata probe's queries); PortGoneError if it is gone."""
        try:
            self._port.write(data)
        except (self._serial_mod.SerialException, OSError, TypeError, ValueError) as exc:
            raise PortGoneError(str(exc) or type(exc).__name__) from exc

    def fileno(self) -> int | None:
        """The device file's descriptor for a shared poller, or None (network ports)."""
        return self._fd

    def close(self) -> None:
        try:
            self._port.close()
        except Exception:
            log.debug("closing a port that had failed", exc_info=True)

    def __enter__(self) -> SerialTransport:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class FakeLineTransport:
    """A transport fed by the caller: for tests and for virtual devices in one process.

    ``feed(b"...")`` makes bytes arrive; ``unplug()`` makes the next read fail.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._data = bytearray()
        self._gone = False
        self.closed = False

    def feed(self, data: bytes) -> None:
        with self._cond:
            self._data += data
            self._cond.notify_all()

    def unplug(self) -> None:
        with self._cond:
            self._gone = True
            self._cond.notify_all()

    def read_chunk(self, timeout: float) -> bytes:
        with self._cond:
            if not self._data and not self._gone:
                self._cond.wait(timeout)
            if self._data:
                out = bytes(self._data)
                self._data.clear()
                return out
            if self._gone:
                raise PortGoneError("unplugged")
            return b""

    def close(self) -> None:
        self.closed = True

    def __enter__(self) -> FakeLineTransport:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class LinePoller:
    """One thread that reads every open line port: many boards, one wake-up per interval.

    A thread per port wakes up per chunk on every port and hands the interpreter lock back
    and forth; one poller waits on all of them at once, sleeps ``READ_COALESCE_S`` so
    chunks fill up, then reads every port that has data. Readers register a port's file
    descriptor while it is open; ``on_data`` and ``on_lost`` run on the poller's thread.
    Registrations are applied by the poller itself (woken through a pipe), so nothing
    changes the selector while it waits.
    """

    def __init__(self) -> None:
        self._selector = selectors.DefaultSelector()
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self._selector.register(self._wake_r, selectors.EVENT_READ, None)
        self._lock = threading.Lock()
        self._requests: list[tuple[int, _PollTarget | None, threading.Event]] = []
        self._stop = False
        self._thread: threading.Thread | None = None

    def start(self) -> LinePoller:
        """Start the poller's thread."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, daemon=True,
                                            name="labhub-line-poller")
            self._thread.start()
        return self

    def stop(self) -> None:
        """Stop reading; registered readers see nothing more."""
        self._stop = True
        self._wake()
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None
        self._selector.close()
        os.close(self._wake_r)
        os.close(self._wake_w)

    def __enter__(self) -> LinePoller:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def register(self, fd: int, on_data: Callable[[bytes], None],
                 on_lost: Callable[[str], None]) -> None:
        """Read ``fd`` from now on; returns once the poller has taken it."""
        self._request(fd, _PollTarget(on_data, on_lost))

    def unregister(self, fd: int) -> None:
        """Stop reading ``fd``; once this returns, no callback for it runs any more."""
        self._request(fd, None)

    def _request(self, fd: int, target: _PollTarget | None) -> None:
        done = threading.Event()
        with self._lock:
            if self._thread is None or self._stop:
                return
            self._requests.append((fd, target, done))
        self._wake()
        done.wait(5)

    def _wake(self) -> None:
        with contextlib.suppress(OSError):  # the pipe is full (already woken) or closed
            os.write(self._wake_w, b"\0")

    def _apply(self) -> None:
        with self._lock:
            requests, self._requests = self._requests, []
        for fd, target, done in requests:
            with contextlib.suppress(KeyError, ValueError, OSError):
                self._selector.unregister(fd)
            if target is not None:
                self._selector.register(fd, selectors.EVENT_READ, target)
            done.set()

    def _run(self) -> None:
        while not self._stop:
            self._apply()
            try:
                events = self._selector.select(READ_TIMEOUT_S * 5)
            except OSError:
                log.exception("line poller: select failed")
                time.sleep(READ_TIMEOUT_S)
                continue
            ports = [key for key, _ in events if key.data is not None]
            if any(key.data is None for key, _ in events):
                with contextlib.suppress(OSError):
                    os.read(self._wake_r, 4096)
            if not ports:
                continue
            time.sleep(READ_COALESCE_S)
            for key in ports:
                target: _PollTarget = key.data
                fd = int(key.fd)
                try:
                    data = os.read(fd, READ_MAX_BYTES)
                except OSError as exc:
                    self._drop(fd, target, str(exc) or type(exc).__name__)
                    continue
                if not data:
                    self._drop(fd, target, "device reports readiness to read but returned no "
                                           "data")
                    continue
                try:
                    target.on_data(data)
                except Exception:
                    log.exception("line poller: handling data failed")
        with self._lock:
            for _fd, _target, done in self._requests:
                done.set()

    def _drop(self, fd: int, target: _PollTarget, reason: str) -> None:
        with contextlib.suppress(KeyError, ValueError, OSError):
            self._selector.unregister(fd)
        try:
            target.on_lost(reason)
        except Exception:
            log.exception("line poller: lost-port callback failed")


@dataclass(frozen=True, slots=True)
class _PollTarget:
    on_data: Callable[[bytes], None]
    on_lost: Callable[[str], None]


class LineSplitter:
    """Bytes in, complete lines out (without their line ends); bounded memory."""

    def __init__(self, *, max_line: int = MAX_LINE_BYTES, discard_first: bool = True) -> None:
        self.max_line = max_line
        self._buffer = bytearray()
        self._skipping = discard_first  # inside a line that is dropped (first or too long)
        self._first = discard_first
        self.overlong = 0  # lines dropped for being longer than max_line

    @property
    def pending(self) -> int:
        """Bytes of an unfinished line waiting for its end."""
        return len(self._buffer)

    def reset(self) -> None:
        """Forget partial input (after a reconnect) and drop the next first line again."""
        self._buffer.clear()
        self._skipping = True
        self._first = True

    def feed(self, data: bytes) -> list[bytes]:
        """The lines that ``data`` completes."""
        buffer = self._buffer
        buffer += data
        if b"\n" not in data:
            if len(buffer) > self.max_line:
                if not self._skipping:
                    self.overlong += 1
                self._skipping = True
                buffer.clear()
            return []
        parts = bytes(buffer).split(b"\n")
        tail = parts.pop()
        buffer[:] = tail
        if self._skipping:
            parts.pop(0)
            self._skipping = False
            self._first = False
        if not parts:
            lines: list[bytes] = []
        elif max(map(len, parts)) <= self.max_line:
            # No line too long (nearly always): drop one \r before each \n in one pass.
            lines = (b"\n".join(parts) + b"\n").replace(b"\r\n", b"\n").split(b"\n")
            lines.pop()
        else:
            lines = []
            for part in parts:
                if len(part) > self.max_line:
                    self.overlong += 1
                    continue
                lines.append(part[:-1] if part.endswith(b"\r") else part)
        if len(buffer) > self.max_line:
            self.overlong += 1
            self._skipping = True
            buffer.clear()
        return lines


Calibration = Callable[[float], float]


@dataclass(slots=True)
class ReaderStats:
    """What a reader has seen since it started."""

    lines: int = 0
    readings: int = 0
    rejects: int = 0
    overlong: int = 0
    connects: int = 0


@dataclass(slots=True)
class ReaderStatus:
    """Whether the port is open, and a message a teacher can act on."""

    online: bool = False
    message: str = "not started"
    fmt: str | None = None
    stats: ReaderStats = field(default_factory=ReaderStats)


class PortReader:
    """What every reader of one port shares: a thread of its own that opens and reads the
    port (and reopens it after a failure), ``start``/``stop``, and a status reported to a
    callback whenever it changes."""

    THREAD_PREFIX = "labhub-reader"
    STOP_TIMEOUT_S = 5.0
    status: ReaderStatus

    def __init__(
        self, *, device_id: str, on_status: Callable[[ReaderStatus], None] | None
    ) -> None:
        self.device_id = device_id
        self._on_status = on_status
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> Self:
        """Start on a thread of its own (opening a port never blocks the caller)."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, daemon=True,
                                            name=f"{self.THREAD_PREFIX}-{self.device_id}")
            self._thread.start()
        return self

    def stop(self, timeout: float | None = None) -> None:
        """Stop reading and close the port."""
        self._stop.set()
        self._stopping()
        if self._thread is not None:
            self._thread.join(self.STOP_TIMEOUT_S if timeout is None else timeout)
            self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        """True while the reader's thread is alive."""
        return self._thread is not None and self._thread.is_alive()

    def _stopping(self) -> None:
        """Wake the reader's thread wherever it waits (a subclass hook)."""

    def _set_status(self, *, online: bool | None = None, message: str | None = None) -> None:
        if online is not None:
            self.status.online = online
        if message is not None and message != self.status.message:
            self.status.message = message
            log.info("device %s: %s", self.device_id, message)
        if self._on_status is not None:
            try:
                self._on_status(self.status)
            except Exception:
                log.exception("status callback of %s failed", self.device_id)

    def _run(self) -> None:
        raise NotImplementedError


class LineReader(PortReader):
    """Reads one port of a line-printing sketch into the ingest pipeline; see the module doc.

    ``open_transport(url, baudrate)`` opens the port (:class:`SerialTransport` by default;
    tests pass a fake). ``channels`` renames channels (``{"t": "temperature"}``) and
    ``calibrations`` turns raw values into physical ones before the pipeline sees them.
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
        channels: dict[str, str] | None = None,
        calibrations: dict[str, Calibration] | None = None,
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
        self.channels = dict(channels or {})
        self.calibrations = dict(calibrations or {})
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
            except (PortGoneError, OSError) as exc:
                self._set_status(online=False, message=f"cannot open {self.url}: {exc}")
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
        plain = not (self.channels or self.calibrations)
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
                if plain:
                    add(make(Sample, (s[0], s[1], ts, s[3], None)))
                    continue
                channel = self.channels.get(s.channel, s.channel)
                value = s.value
                cal = self.calibrations.get(channel)
                if cal is not None:
                    value = cal(value)
                add(Sample(channel, value, ts, s.unit))
        self._last_ts = last
        if samples:
            self.pipeline.submit(samples, device=self.device_id, source=SOURCE, site=self.site)
            stats.readings += len(samples)
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
        if self.channels or self.calibrations:
            names = tuple(self.channels.get(name, name) for name in names)
            try:
                for index, name in enumerate(names):
                    cal = self.calibrations.get(name)
                    if cal is not None:
                        columns[index] = [cal(value) for value in columns[index]]
            except Exception:  # the line-by-line path meets it at its line, and reports it
                return False
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
        self.pipeline.submit_columns(names, times, columns, device=self.device_id,
                                     source=SOURCE, site=self.site)
        self.status.stats.readings += len(lines) * len(names)
        return True

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


_LINE_FORMATS: dict[str, Callable[[bytes], list[Sample]]] = {
    "plotter": decoders.decode_plotter_line,
    "jsonl": decoders.decode_json_line,
    "framed": decoders.decode_framed_line,
    "csv": decoders.decode_csv_line,
}
