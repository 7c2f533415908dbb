"""Firmata boards: a StandardFirmata board's pins become readings, commands drive its outputs.

pyfirmata2 speaks the protocol. Three of its habits are handled here: it spins a whole
core (``time.sleep(0)`` in a loop) while the board resets after the port opens, so the
wait is replaced by a real sleep and runs on the board's own thread, never the caller's;
it reports analog values as ``round(raw / 1023, 4)``, so they are turned back into counts
(exact: four decimals of 1/1023 steps round to the right count); and when the cable is
pulled its reading thread ends silently, so this module watches that thread and reopens
the port with a backoff.

Readings are named ``A0``..``A5`` (counts 0..1023) and ``D2``.. (0/1); the device's
channel map renames and calibrates them like any sketch's channels. Samples are gathered
from pyfirmata2's callbacks and handed to the ingest pipeline in batches every
``FLUSH_S``, so a board reporting 6 pins every 10 ms costs a few submissions a second.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from firmware_bridge.actuators import CommandName, PinCommand, check_command
from firmware_bridge.registry import FirmataSettings
from firmware_bridge.serial_lines import PortReader, ReaderStats, ReaderStatus
from sensors.pipeline import IngestPipeline
from sensors.samples import Sample, now_us

log = logging.getLogger(__name__)

ADC_MAX = 1023  # pyfirmata2 divides raw 10-bit values by this
FLUSH_S = 0.05  # gathered samples go to the pipeline this often
WATCH_S = 0.2  # how often the reading thread is checked (a pulled cable shows within it)
RECONNECT_FIRST_S = 0.5
RECONNECT_MAX_S = 5.0
SOURCE = "firmata"
HANDSHAKE_S = 2.0  # a board that has not answered the version query by then has no Firmata
REPORT_VERSION = 0xF9
START_SYSEX = 0xF0
REPORT_FIRMWARE = 0x79
END_SYSEX = 0xF7


class FirmataError(Exception):
    """A board that does not answer as StandardFirmata, or a command it cannot take."""


def _board_class() -> Any:
    import pyfirmata2

    class QuietBoard(pyfirmata2.Board):  # type: ignore[misc]
        """pyfirmata2's Board, but sleeping (not spinning) through the reset wait."""

        def __init__(self, port: str, reset_wait_s: float, baudrate: int, layout: str) -> None:
            self._reset_wait_s = reset_wait_s
            # pyfirmata2 keeps these on the class: every board would share (and the last
            # one opened would take) the message handlers, mixing up two boards' readings.
            self._command_handlers: dict[int, Any] = {}
            self._stored_data: list[int] = []
            # A named layout, not pyfirmata2's capability-query setup: that setup misreads
            # StandardFirmata 2.5's answer (pull-up modes listed) and fails on a real Uno.
            super().__init__(port, layout=pyfirmata2.BOARDS[layout], baudrate=baudrate)
            try:
                self._handshake()
            except BaseException:
                self.sp.close()
                raise

        def __del__(self) -> None:
            """Nothing: the reader closes boards itself. pyfirmata2's own ``__del__`` calls
            ``exit()``, which raises during garbage collection once the port has failed."""

        def _handshake(self) -> None:
            """Ask for the protocol version and firmware name; fail if nothing answers."""
            if getattr(self, "firmata_version", None) is None:
                self.sp.write(bytes([REPORT_VERSION]))
            if getattr(self, "firmware", None) is None:
                self.sp.write(bytes([START_SYSEX, REPORT_FIRMWARE, END_SYSEX]))
            deadline = time.monotonic() + HANDSHAKE_S
            while time.monotonic() < deadline:
                if getattr(self, "firmata_version", None) and getattr(self, "firmware", None):
                    return
                if self.bytes_available():
                    self.iterate()
                else:
                    time.sleep(0.01)
            if getattr(self, "firmata_version", None) is None:
                raise FirmataError("no Firmata answer: is StandardFirmata uploaded, at "
                                   f"{self.sp.baudrate} baud?")

        def _Board__pass_time(self, t: float) -> None:  # overrides pyfirmata2's private wait
            if t == pyfirmata2.pyfirmata2.BOARD_SETUP_WAIT_TIME:
                t = self._reset_wait_s
            time.sleep(t)

    return QuietBoard


BoardFactory = Callable[[str, float, int, str], Any]


def open_board(url: str, reset_wait_s: float, baudrate: int, layout: str = "arduino") -> Any:
    """Open a StandardFirmata board with pyfirmata2 (blocks for the reset wait)."""
    return _board_class()(url, reset_wait_s, baudrate, layout)


@dataclass(slots=True)
class FirmataStatus(ReaderStatus):
    """A reader's status plus what the board said of itself and was last told to do."""

    firmware: str | None = None
    outputs: dict[int, float] = field(default_factory=dict)


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
        self._board: Any = None
        self._pins: dict[int, Any] = {}  # output pin number -> pyfirmata2 pin
        self._lock = threading.Lock()  # guards _board, _pins and the sample buffer
        self._samples: list[Sample] = []
        self._last_ts = 0

    # -- the loop ---------------------------------------------------------------------

    def _run(self) -> None:
        delay = RECONNECT_FIRST_S
        while not self._stop.is_set():
            self._set_status(message=f"opening {self.url}; waiting "
                                     f"{self.settings.reset_wait_s:g} s for the board to reset")
            try:
                board = self._open(self.url, self.settings.reset_wait_s, self.baudrate,
                                   self.settings.layout)
            except Exception as exc:
                reason = str(exc) or type(exc).__name__
                self._set_status(online=False, message=f"cannot open {self.url}: {reason}")
                self._stop.wait(delay)
                delay = min(delay * 2, RECONNECT_MAX_S)
                continue
            delay = RECONNECT_FIRST_S
            try:
                self._attach(board)
                self.status.stats.connects += 1
                version = board.get_firmata_version()
                name = getattr(board, "firmware", None) or "Firmata"
                self.status.firmware = f"{name} {version[0]}.{version[1]}" if version else name
                self._set_status(online=True, message=f"reading {self.url} "
                                 f"({self.status.firmware}, every {self.settings.sampling_ms} ms)")
                self._watch(board)
            except Exception as exc:
                log.exception("device %s: Firmata board failed", self.device_id)
                self._set_status(online=False, message=f"board error: {exc}")
            finally:
                self._detach(board)
            if not self._stop.is_set():
                self._set_status(online=False, message="port lost; waiting for the board")
                self._stop.wait(delay)
        self._set_status(online=False, message="stopped")

    def _attach(self, board: Any) -> None:
        s = self.settings
        with self._lock:
            self._board = board
            self._pins = {}
        for number in s.analog_pins:
            pin = board.get_pin(f"a:{number}:i")  # this also turns its reporting on
            pin.register_callback(self._analog_callback(f"A{number}"))
        for number in s.digital_inputs:
            pin = board.get_pin(f"d:{number}:i")
            pin.register_callback(self._digital_callback(f"D{number}"))
            pin.enable_reporting()
        pins: dict[int, Any] = {}
        for number, output in s.outputs.items():
            if output.kind == "servo":
                board.servo_config(number, angle=int(output.safe))
                pins[number] = board.digital[number]
            else:
                mode = "o" if output.kind == "digital" else "p"
                pins[number] = board.get_pin(f"d:{number}:{mode}")
                pins[number].write(output.safe)
            self.status.outputs[number] = output.safe
        with self._lock:
            self._pins = pins
        board.samplingOn(s.sampling_ms)

    def _detach(self, board: Any) -> None:
        with self._lock:
            self._board = None
            self._pins = {}
        self._flush()
        try:
            board.exit()
        except Exception:
            log.debug("closing a board whose port had failed", exc_info=True)

    def _watch(self, board: Any) -> None:
        next_flush = time.monotonic() + FLUSH_S
        while not self._stop.is_set():
            thread = getattr(board, "samplerThread", None)
            if thread is None or not thread.is_alive():
                return  # pyfirmata2's reader ended: the port failed or was pulled
            self._stop.wait(min(WATCH_S, max(0.0, next_flush - time.monotonic())))
            if time.monotonic() >= next_flush:
                self._flush()
                next_flush = time.monotonic() + FLUSH_S
        self._safe_outputs()

    # -- readings -----------------------------------------------------------------------

    def _add(self, channel: str, value: float) -> None:
        now = now_us()
        with self._lock:
            ts = now if now > self._last_ts else self._last_ts + 1
            self._last_ts = ts
            self._samples.append(Sample(channel, value, ts))

    def _analog_callback(self, channel: str) -> Callable[[float], None]:
        def on_value(fraction: float) -> None:
            if fraction is not None:
                self._add(channel, float(round(fraction * ADC_MAX)))

        return on_value

    def _digital_callback(self, channel: str) -> Callable[[Any], None]:
        def on_value(state: Any) -> None:
            if state is not None:
                self._add(channel, 1.0 if state else 0.0)

        return on_value

    def _flush(self) -> None:
        with self._lock:
            samples, self._samples = self._samples, []
        if samples:
            self.pipeline.submit(samples, device=self.device_id, source=SOURCE, site=self.site)
            self.status.stats.readings += len(samples)
            self.status.stats.lines += len(samples)

    # -- commands -----------------------------------------------------------------------

    def command(self, command: CommandName, pin: int | None = None,
                value: float | None = None) -> list[PinCommand]:
        """Check a command against the declared outputs and send it; the writes done.

        Raises CommandError (not allowed) or FirmataError (board not connected).
        """
        writes = check_command(self.settings.outputs, command, pin, value)
        with self._lock:
            if self._board is None:
                raise FirmataError(f"device {self.device_id} is not connected")
            for w in writes:
                target = self._pins[w.pin]
                if w.kind == "digital":
                    target.write(int(w.value))
                elif w.kind == "pwm":
                    target.write(w.value)
                else:
                    target.write(round(w.value))
                self.status.outputs[w.pin] = w.value
        return writes

    def _safe_outputs(self) -> None:
        if self.settings.outputs:
            try:
                self.command("stop_all")
            except Exception:
                log.warning("device %s: could not set outputs safe", self.device_id,
                            exc_info=True)
