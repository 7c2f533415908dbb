"""Firmata boards: a StandardFirmata board's pins become readings, commands drive its outputs.

A :class:`FirmataReader` owns one board's port. It opens it (pyserial, 57600 baud), sleeps
through the board's auto-reset on its own thread (never the caller's, and never spinning:
pyfirmata2's own wait keeps a core busy for 5 s), asks for the protocol version and the
firmware, sets the sampling interval, the declared outputs to their safe values and the
inputs to report, then reads. The bytes are Firmata's (:mod:`firmware_bridge.firmata_protocol`
encodes and decodes them); pyfirmata2 is used only for its table of board layouts.

Reading goes a chunk at a time: one wait on the port, then everything waiting is read in
one call and decoded in one pass (an incomplete last message is kept for the next read),
and the chunk's readings go to the ingest pipeline in one bulk submission, a column per
channel. A chunk holds several sampling intervals' worth of analog reports: the board sends
one report per pin each interval, so the last report of a pin in a chunk is stamped with
the chunk's arrival and each earlier one an interval before the next. Digital reports
(sent on change) are stamped with the arrival. pyfirmata2's own reading thread, by
contrast, wakes every millisecond and reads a byte per system call.

A board with ``sample_every_s`` set is sampled slowly instead (a climate log every 10
minutes): the reader sets it up without reporting, so the board is quiet, and
:meth:`FirmataReader.sample` (called by the hub's "firmata-sampling" job) turns reporting
on, takes the first fresh value of each channel, turns reporting off and stores the values
as one sample set, all stamped with one time. Reports that trail the "off" are dropped.

Readings are named ``A0``..``A5`` (counts 0..1023) and ``D2``.. (0/1); the device's
channel map renames and calibrates them like any sketch's channels. A pulled cable shows as
a failed read: the board is marked offline and the port reopened with a backoff.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from firmware_bridge import firmata_protocol as fp
from firmware_bridge.actuators import CommandName, PinCommand, check_command
from firmware_bridge.registry import FirmataSettings
from firmware_bridge.serial_lines import (
    PortGoneError,
    PortReader,
    ReaderStats,
    ReaderStatus,
    SerialTransport,
)
from sensors.pipeline import IngestPipeline
from sensors.samples import now_us

log = logging.getLogger(__name__)

READ_TIMEOUT_S = 0.2  # an idle port is checked this often for a stop request
RECONNECT_FIRST_S = 0.5
RECONNECT_MAX_S = 5.0
SOURCE = "firmata"
HANDSHAKE_S = 2.0  # a board that has not answered the version query by then has no Firmata
QUERY_RESEND_S = 0.5  # a query sent while the board was still booting is lost: ask again
PWM_MAX = 255  # Arduino's analogWrite takes a duty of 0..255
US_PER_MS = 1000
# A slow sample waits at most this long for every channel's first value: StandardFirmata
# sends an analog value as soon as its reporting is enabled, and a port's at once.
SAMPLE_WAIT_S = 2.0


class FirmataError(Exception):
    """A board that does not answer as StandardFirmata, or a command it cannot take."""


class FirmataPort(Protocol):
    """One open port, as the Firmata reader needs it (:class:`SerialTransport` is one)."""

    def read_chunk(self, timeout: float) -> bytes:
        """Bytes that arrived, or ``b""`` after ``timeout`` s; PortGoneError when it is gone."""
        ...

    def write(self, data: bytes) -> None:
        """Send bytes to the board; PortGoneError when it is gone."""
        ...

    def close(self) -> None:
        """Close the port."""
        ...


BoardFactory = Callable[[str, int], FirmataPort]


def open_board(url: str, baudrate: int) -> FirmataPort:
    """Open a board's port (the reader then waits for its reset and asks for Firmata)."""
    return SerialTransport(url, baudrate)


@dataclass(frozen=True, slots=True)
class Layout:
    """The pins a board has, from pyfirmata2's table of layouts."""

    digital: frozenset[int]
    analog: frozenset[int]
    pwm: frozenset[int]

    @classmethod
    def named(cls, name: str) -> Layout:
        import pyfirmata2

        board = pyfirmata2.BOARDS[name]
        usable = set(board["digital"]) - set(board.get("disabled", ()))
        return cls(frozenset(usable), frozenset(board["analog"]), frozenset(board["pwm"]))


def check_layout(settings: FirmataSettings) -> None:
    """FirmataError naming the first pin of ``settings`` the board's layout does not have."""
    layout = Layout.named(settings.layout)
    for number in settings.analog_pins:
        if number not in layout.analog:
            raise FirmataError(f"analog pin A{number} is not on an {settings.layout} board")
    for number in settings.digital_inputs:
        if number not in layout.digital:
            raise FirmataError(f"digital input {number} is not a free digital pin of an "
                               f"{settings.layout} board")
    for number, output in settings.outputs.items():
        if number not in layout.digital:
            raise FirmataError(f"output {number} is not a free digital pin of an "
                               f"{settings.layout} board")
        if output.kind == "pwm" and number not in layout.pwm:
            raise FirmataError(f"output {number} has no PWM on an {settings.layout} board")


def setup_messages(settings: FirmataSettings) -> bytes:
    """What the reader sends once the board has answered: the sampling interval, each
    output (by pin number) in its mode at its safe value, the digital inputs and their
    ports' reporting, then the analog reporting (last, so the first reports come at the
    interval set). A board sampled slowly (``sample_every_s``) gets its reporting turned
    off: it stays quiet until a sample."""
    out = bytearray(fp.sampling_interval(settings.sampling_ms))
    levels: dict[int, int] = {}
    for number, output in sorted(settings.outputs.items()):
        if output.kind == "servo":
            out += fp.servo_config(number) + fp.analog_write(number, round(output.safe))
        elif output.kind == "pwm":
            out += fp.set_pin_mode(number, fp.MODE_PWM)
            out += fp.analog_write(number, round(output.safe * PWM_MAX))
        else:
            out += fp.set_pin_mode(number, fp.MODE_OUTPUT)
            port = number // 8
            if output.safe:
                levels[port] = levels.get(port, 0) | 1 << (number % 8)
            out += fp.digital_message(port, levels.get(port, 0))
    for number in settings.digital_inputs:
        out += fp.set_pin_mode(number, fp.MODE_INPUT)
    # Sampled slowly: reporting only while sampling, and off now in case a board that did
    # not reset on open still reports as an earlier setup told it.
    out += reporting_messages(settings, settings.sample_every_s is None)
    return bytes(out)


def reporting_messages(settings: FirmataSettings, on: bool) -> bytes:
    """Turn the reporting of the digital inputs' ports, then the analog inputs, on or off."""
    out = bytearray()
    ports = list(dict.fromkeys(number // 8 for number in settings.digital_inputs))
    for port in ports:
        out += fp.report_digital(port, on)
    for number in settings.analog_pins:
        out += fp.report_analog(number, on)
    return bytes(out)


@dataclass(slots=True)
class FirmataStatus(ReaderStatus):
    """A reader's status plus what the board said of itself and was last told to do."""

    firmware: str | None = None
    outputs: dict[int, float] = field(default_factory=dict)
    samples: int = 0  # slow samples taken since the reader started
    last_sample_at: int | None = None  # µs of the last slow sample


@dataclass(slots=True)
class _Sample:
    """A slow sample under way: the channels wanted and the first values that came."""

    wanted: frozenset[str]
    values: dict[str, float] = field(default_factory=dict)
    done: threading.Event = field(default_factory=threading.Event)


class FirmataReader(PortReader):
    """Reads one Firmata board into the pipeline and drives its outputs."""

    THREAD_PREFIX = "labhub-firmata"
    STOP_TIMEOUT_S = 15.0  # stopping sets the outputs safe and closes the board first
    status: FirmataStatus

    def __init__(
        self,
        *,
        url: str,
        device_id: str,
        pipeline: IngestPipeline,
        settings: FirmataSettings,
        site: str | None = None,
        open_board: BoardFactory = open_board,
        on_status: Callable[[ReaderStatus], None] | None = None,
    ) -> None:
        super().__init__(device_id=device_id, on_status=on_status)
        self.url = url
        self.pipeline = pipeline
        self.settings = settings
        self.site = site
        self.baudrate = settings.baudrate
        self._open = open_board
        self.status = FirmataStatus(fmt="firmata", stats=ReaderStats())
        self._port: FirmataPort | None = None
        self._lock = threading.Lock()  # guards _port and _levels (commands come from others)
        self._levels: dict[int, int] = {}  # digital port -> the output levels last sent
        self._decoder = fp.Decoder(fp.FROM_BOARD)
        self._last_ts: dict[str, int] = {}  # channel -> its last reading's time (µs)
        self._analog = {number: f"A{number}" for number in settings.analog_pins}
        self._inputs: dict[int, list[tuple[int, str]]] = {}  # port -> (bit, channel) pairs
        for number in settings.digital_inputs:
            self._inputs.setdefault(number // 8, []).append((number % 8, f"D{number}"))
        self._sample: _Sample | None = None  # the slow sample under way (under _lock)
        self._sampling = threading.Lock()  # one slow sample at a time

    # -- the loop ---------------------------------------------------------------------

    def _run(self) -> None:
        delay = RECONNECT_FIRST_S
        while not self._stop.is_set():
            s = self.settings
            self._set_status(message=f"opening {self.url}; waiting {s.reset_wait_s:g} s for "
                                     "the board to reset")
            try:
                check_layout(s)
                port = self._open(self.url, self.baudrate)
            except Exception as exc:
                self.status.stats.failures += 1
                reason = str(exc) or type(exc).__name__
                self._set_status(online=False, message=reason if isinstance(exc, OSError)
                                 and reason.startswith("cannot open") else
                                 f"cannot open {self.url}: {reason}")
                self._stop.wait(delay)
                delay = min(delay * 2, RECONNECT_MAX_S)
                continue
            try:
                if self._stop.wait(s.reset_wait_s):
                    break
                self.status.firmware = self._handshake(port)
                delay = RECONNECT_FIRST_S
                self._attach(port)
                self.status.stats.connects += 1
                pace = (f"every {s.sampling_ms} ms" if s.sample_every_s is None
                        else f"one sample every {s.sample_every_s} s")
                self._set_status(online=True, message=f"reading {self.url} "
                                 f"({self.status.firmware}, {pace})")
                self._read(port)
            except FirmataError as exc:
                self.status.stats.failures += 1
                self._set_status(online=False, message=f"cannot open {self.url}: {exc}")
                delay = min(delay * 2, RECONNECT_MAX_S)
            except PortGoneError as exc:
                self.status.stats.failures += 1
                self._set_status(online=False, message=f"port lost ({exc}); waiting for it")
            except Exception as exc:  # a bug must not kill the reader: report and go on
                log.exception("device %s: Firmata board failed", self.device_id)
                self._set_status(online=False, message=f"board error: {exc}")
            finally:
                self._detach(port)
            if not self._stop.is_set():
                self._stop.wait(delay)
        self._set_status(online=False, message="stopped")

    def _handshake(self, port: FirmataPort) -> str:
        """Ask for the protocol version and the firmware; what the board calls itself.

        FirmataError when no version comes within HANDSHAKE_S (no Firmata on the board, or
        another baud rate). Readings that arrive meanwhile (a board that did not reset) are
        dropped: the board is set up afresh next."""
        decoder = self._decoder
        decoder.reset()
        version: tuple[int, int] | None = None
        firmware: fp.Firmware | None = None
        started = time.monotonic()
        asked = 0.0
        while version is None or firmware is None:
            now = time.monotonic()
            if now - started >= HANDSHAKE_S or self._stop.is_set():
                break
            if now - asked >= QUERY_RESEND_S:
                port.write((fp.QUERY_VERSION if version is None else b"")
                           + (fp.QUERY_FIRMWARE if firmware is None else b""))
                asked = now
            for message in decoder.feed(port.read_chunk(min(READ_TIMEOUT_S, QUERY_RESEND_S))):
                if message.command == fp.REPORT_VERSION:
                    version = (message.data[0], message.data[1])
                elif message.command == fp.START_SYSEX:
                    firmware = fp.parse_firmware(message.data) or firmware
        if version is None:
            raise FirmataError(f"no Firmata answer: is StandardFirmata uploaded, at "
                               f"{self.baudrate} baud?")
        name = firmware.name if firmware is not None else "Firmata"
        return f"{name} {version[0]}.{version[1]}"

    def _attach(self, port: FirmataPort) -> None:
        s = self.settings
        levels: dict[int, int] = {}
        for number, output in s.outputs.items():
            if output.kind == "digital" and output.safe:
                levels[number // 8] = levels.get(number // 8, 0) | 1 << (number % 8)
            self.status.outputs[number] = output.safe
        with self._lock:
            port.write(setup_messages(s))
            self._port = port
            self._levels = levels
        self._last_ts = {}

    def _detach(self, port: FirmataPort) -> None:
        with self._lock:
            attached = self._port is port
        if attached and self._stop.is_set():
            self._safe_outputs()
        with self._lock:
            self._port = None
        port.close()

    def _read(self, port: FirmataPort) -> None:
        decoder = self._decoder
        while not self._stop.is_set():
            chunk = port.read_chunk(READ_TIMEOUT_S)
            if chunk:
                self._readings(decoder.feed(chunk), now_us())

    # -- readings -----------------------------------------------------------------------

    def _readings(self, messages: Sequence[fp.Message], arrival: int) -> None:
        """Submit the readings among one chunk's messages, read at ``arrival`` (µs)."""
        if self.settings.sample_every_s is not None:
            self._sampled(messages)
            return
        analog: dict[str, list[float]] = {}
        digital: dict[str, list[float]] = {}
        names = self._analog
        for command, channel, data in messages:
            if command == fp.ANALOG_MESSAGE:
                name = names.get(channel)
                if name is not None:
                    analog.setdefault(name, []).append(data[0] | data[1] << 7)
            elif command == fp.DIGITAL_MESSAGE:
                mask = data[0] | data[1] << 7
                for bit, name in self._inputs.get(channel, ()):
                    digital.setdefault(name, []).append(1.0 if mask >> bit & 1 else 0.0)
            elif command == fp.START_SYSEX:
                text = fp.parse_string(data)
                if text is not None:
                    log.info("device %s says: %s", self.device_id, text)
        if not analog and not digital:
            return
        interval = self.settings.sampling_ms * US_PER_MS
        groups: dict[tuple[int, ...], tuple[list[str], list[list[float]]]] = {}
        for columns, step in ((analog, interval), (digital, 0)):
            for name, values in columns.items():
                times = self._times(name, len(values), arrival, step)
                group = groups.setdefault(times, ([], []))
                group[0].append(name)
                group[1].append(values)
        for times, (channels, columns_) in groups.items():
            self._submit(channels, list(times), columns_)

    def _sampled(self, messages: Sequence[fp.Message]) -> None:
        """Keep each wanted channel's first value for the slow sample under way; outside
        a sample (a report that trailed the last "off") the values are dropped."""
        with self._lock:
            pending = self._sample
        if pending is None:
            return
        for command, channel, data in messages:
            if command == fp.ANALOG_MESSAGE:
                name = self._analog.get(channel)
                if name is not None:
                    pending.values.setdefault(name, float(data[0] | data[1] << 7))
            elif command == fp.DIGITAL_MESSAGE:
                mask = data[0] | data[1] << 7
                for bit, name in self._inputs.get(channel, ()):
                    pending.values.setdefault(name, 1.0 if mask >> bit & 1 else 0.0)
        if pending.wanted <= pending.values.keys():
            pending.done.set()

    def sample(self, timeout: float = SAMPLE_WAIT_S) -> dict[str, float]:
        """Take one slow sample: reporting on, each channel's first fresh value (waiting at
        most ``timeout`` s), reporting off, and the values stored as one sample set at one
        time. The values by channel (``A0``, ``D2``); a channel that did not answer in
        time is left out (and logged). FirmataError when the board is not sampled slowly,
        not connected, its port fails, or no channel answered."""
        s = self.settings
        if s.sample_every_s is None:
            raise FirmataError(f"device {self.device_id} reports continuously; it has no "
                               "sample_every_s")
        wanted = frozenset([*self._analog.values(),
                            *(name for pairs in self._inputs.values() for _, name in pairs)])
        if not wanted:
            raise FirmataError(f"device {self.device_id} has no input to sample")
        pending = _Sample(wanted)
        with self._sampling:
            with self._lock:
                port = self._port
                if port is None or not self.status.online:
                    raise FirmataError(f"device {self.device_id} is not connected")
                self._sample = pending
                try:
                    port.write(reporting_messages(s, True))
                except PortGoneError as exc:
                    self._sample = None
                    raise FirmataError(f"device {self.device_id}: the port failed while "
                                       f"sampling ({exc})") from exc
            try:
                pending.done.wait(timeout)
            finally:
                with self._lock:
                    self._sample = None
                    port = self._port
                    if port is not None:
                        # Gone: the reader notices and reopens it; a new board is quiet.
                        with contextlib.suppress(PortGoneError):
                            port.write(reporting_messages(s, False))
        values = dict(pending.values)
        if not values:
            raise FirmataError(f"device {self.device_id}: no channel answered within "
                               f"{timeout:g} s")
        missing = sorted(wanted - values.keys())
        if missing:
            log.warning("device %s: no value from %s within %g s in this sample",
                        self.device_id, ", ".join(missing), timeout)
        at = now_us()
        channels = sorted(values)
        self._submit(channels, [at], [[values[c]] for c in channels])
        self.status.samples += 1
        self.status.last_sample_at = at
        return values

    def _times(self, channel: str, count: int, arrival: int, step: int) -> tuple[int, ...]:
        """``count`` increasing times for one channel's readings of a chunk: the last at
        ``arrival``, each earlier one ``step`` µs before the next, all after the channel's
        previous reading."""
        last = self._last_ts.get(channel, 0)
        times = []
        for k in range(count - 1, -1, -1):
            ts = arrival - k * step
            last = ts if ts > last else last + 1
            times.append(last)
        self._last_ts[channel] = last
        return tuple(times)

    def _submit(self, channels: list[str], times: list[int],
                columns: list[list[float]]) -> None:
        ticket = self.pipeline.submit_columns(channels, times, columns,
                                              device=self.device_id, source=SOURCE,
                                              site=self.site)
        count = len(times) * len(channels)
        stats = self.status.stats
        stats.lines += count
        result = ticket.result
        stats.readings += count - result.rejected
        if result.rejected:
            # Refused by the pipeline (a bad site, a unit it cannot take): counted, and why.
            stats.rejects += result.rejected
            if result.reason != self.status.refused:
                self.status.refused = result.reason
                self._set_status()
        elif self.status.refused is not None:
            self.status.refused = None
            self._set_status()

    # -- commands -----------------------------------------------------------------------

    def command(self, command: CommandName, pin: int | None = None,
                value: float | None = None) -> list[PinCommand]:
        """Check a command against the declared outputs and send it; the writes done.

        Raises CommandError (not allowed) or FirmataError (board not connected, or its
        port failed while sending).
        """
        writes = check_command(self.settings.outputs, command, pin, value)
        with self._lock:
            port = self._port
            if port is None:
                raise FirmataError(f"device {self.device_id} is not connected")
            out = bytearray()
            for w in writes:
                if w.kind == "digital":
                    bank, bit = w.pin // 8, 1 << (w.pin % 8)
                    level = self._levels.get(bank, 0)
                    self._levels[bank] = level | bit if w.value else level & ~bit
                    out += fp.digital_message(bank, self._levels[bank])
                elif w.kind == "pwm":
                    out += fp.analog_write(w.pin, round(w.value * PWM_MAX))
                else:
                    out += fp.analog_write(w.pin, round(w.value))
            try:
                port.write(bytes(out))
            except PortGoneError as exc:
                raise FirmataError(f"device {self.device_id}: the port failed while "
                                   f"sending ({exc})") from exc
            for w in writes:
                self.status.outputs[w.pin] = w.value
        return writes

    def _safe_outputs(self) -> None:
        if self.settings.outputs:
            try:
                self.command("stop_all")
            except Exception:
                log.warning("device %s: could not set outputs safe", self.device_id,
                            exc_info=True)
