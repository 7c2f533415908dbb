"""A virtual Arduino Uno running StandardFirmata 2.5, on a pseudo-terminal.

The hub (and pyfirmata2, or any Firmata host) opens ``board.url`` like a board on USB
and talks Firmata to it byte for byte (https://github.com/firmata/protocol): the boot
banner, the version, firmware, capability, analog-mapping and pin-state queries, pin
modes, analog and digital reporting at the sampling interval, digital, PWM and servo
writes, and system reset, with the behaviour of StandardFirmata 2.5's sketch
(firmata/arduino ``StandardFirmata.ino``): enabling an analog channel's reporting sends its
value at once, enabling a port's reporting sends the port at once, an analog pin set to
ANALOG mode starts reporting, a 13th servo gets "Max servos attached", an unknown pin mode
gets "Unknown pin mode".

What a real board does and a pty does not, emulated here: the auto-reset whenever the
port is opened (``reset_on_open``; a pty has no DTR, so the board sees each open of the
slave with inotify, or, where inotify is missing, as the master's hang-up ending), the
boot time during which input is lost (``boot_delay_s``), and a UART's indifference to
whether anyone listens: while nobody has the port open, or the host does not read,
reports are dropped, never queued for the next reader.

The bytes themselves (constants, encoders, the framing of the host's messages) are
:mod:`firmware_bridge.firmata_protocol`'s; this module is the Uno and the sketch's
behaviour. One deliberate difference: the real parser keeps a sysex open until ``F7`` and
swallows any command byte inside it; this board frames as that module does, abandoning an
open sysex (or an incomplete message) at the next command byte, so a truncated message
costs only itself.
I2C, serial, stepper and other optional sysex features are recorded in ``commands`` but
not emulated.

Tests and the demo set inputs with ``set_analog``/``analog_source``/``set_digital_input``
and read what the host commanded from ``pin_modes``, ``outputs``, ``pwm``,
``servo_angles``, ``servo_config``, ``sampling_interval_ms``, ``reporting_analog``,
``reporting_digital`` and ``commands``; ``wait_for`` waits for a condition on them.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import math
import os
import select
import threading
import time
from collections import deque
from collections.abc import Callable

from firmware_bridge.firmata_protocol import (
    ANALOG_MAPPING_QUERY,
    ANALOG_MESSAGE,
    CAPABILITY_QUERY,
    DIGITAL_MESSAGE,
    EXTENDED_ANALOG,
    I2C_CONFIG,
    MODE_ANALOG,
    MODE_I2C,
    MODE_IGNORE,
    MODE_INPUT,
    MODE_OUTPUT,
    MODE_PULLUP,
    MODE_PWM,
    MODE_SERIAL,
    MODE_SERVO,
    PIN_STATE_QUERY,
    REPORT_ANALOG,
    REPORT_DIGITAL,
    REPORT_FIRMWARE,
    REPORT_VERSION,
    SAMPLING_INTERVAL,
    SERVO_CONFIG,
    SERVO_MAX_PULSE_US,
    SERVO_MIN_PULSE_US,
    SET_DIGITAL_PIN_VALUE,
    SET_PIN_MODE,
    START_SYSEX,
    SYSTEM_RESET,
    TO_BOARD,
    Decoder,
    Message,
    analog_mapping_response,
    analog_message,
    capability_response,
    digital_message,
    firmware_report,
    pin_state_response,
    string_message,
    version_report,
)
from firmware_bridge.sim.pty import OpenWatch, close_fds, open_raw_pty

log = logging.getLogger(__name__)

PROTOCOL_VERSION = (2, 5)  # REPORT_VERSION of the Firmata 2.5.x library
FIRMWARE_VERSION = (2, 5)  # REPORT_FIRMWARE of StandardFirmata 2.5.x
KIT_ID = "virtual-robot-kit"  # the device id the hub knows the virtual robot kit by
KIT_NAME = "Robot kit (virtual)"
FIRMWARE_NAME = "StandardFirmata.ino"  # the library keeps the sketch's file name, extension too

# -- the board: an Arduino Uno (ATmega328P) as Firmata's Boards.h describes it --------------

TOTAL_PINS = 20  # D0..D13, then A0..A5 as pins 14..19
FIRST_ANALOG_PIN = 14
TOTAL_ANALOG_PINS = 6
TOTAL_PORTS = 3  # 8 pins per port: 0-7, 8-15, 16-19
DIGITAL_PINS = frozenset(range(2, 20))  # D0/D1 carry the serial link to the host
PWM_PINS = frozenset({3, 5, 6, 9, 10, 11})  # the Uno's timer outputs
I2C_PINS = frozenset({18, 19})  # A4 = SDA, A5 = SCL
MAX_SERVOS = 12  # Servo library limit on a 328P (one 16-bit timer)
ADC_MAX = 1023  # 10-bit ADC
MAX_SYSEX_DATA = 64  # the Firmata library's input buffer (MAX_DATA_BYTES); more is dropped

DEFAULT_SAMPLING_INTERVAL_MS = 19  # StandardFirmata's samplingInterval after boot
MIN_SAMPLING_INTERVAL_MS = 1  # StandardFirmata 2.5's MINIMUM_SAMPLING_INTERVAL

# -- the simulation ---------------------------------------------------------------------------

OPEN_SETTLE_S = 0.05  # a reset on open answers no sooner: pyserial flushes input just after open()
OPEN_POLL_S = 0.01  # without inotify, how often a port nobody holds is checked for an opener
IDLE_WAIT_S = 0.25  # longest sleep with nothing scheduled (input and set_* calls wake it at once)
CATCH_UP_LIMIT_S = 0.5  # a schedule this far behind (machine busy) restarts instead of bursting
READ_CHUNK = 4096  # bytes per os.read of the host's commands
COMMAND_LOG_MAX = 10_000  # decoded commands kept for tests and the demo
ERROR_LOG_MAX = 100  # exceptions from the board's loop kept (the loop itself carries on)
JOIN_TIMEOUT_S = 5.0  # close() waits at most this for the thread (woken, it exits at once)

Command = tuple[str | int | bytes, ...]
AnalogSource = Callable[[float], float]

_ANALOG_PERIODS_S = (7.0, 11.0, 13.0, 17.0, 19.0, 23.0)  # distinct, so channels look different


def _is_analog(pin: int) -> bool:
    return FIRST_ANALOG_PIN <= pin < FIRST_ANALOG_PIN + TOTAL_ANALOG_PINS


def uno_capabilities() -> list[list[tuple[int, int]]]:
    """Per pin, the (mode, resolution) pairs StandardFirmata 2.5 lists on an Uno.

    D0/D1 list nothing (serial to the host); every other pin lists INPUT 0/1, PULLUP 0B/1,
    OUTPUT 1/1; A0..A5 add ANALOG 2/10; PWM pins add PWM 3/8; every digital pin adds SERVO
    4/14 (the sketch lists it for pins 14..19 too); A4/A5 add I2C 6/1.
    """
    pins: list[list[tuple[int, int]]] = []
    for pin in range(TOTAL_PINS):
        modes: list[tuple[int, int]] = []
        if pin in DIGITAL_PINS:
            modes += [(MODE_INPUT, 1), (MODE_PULLUP, 1), (MODE_OUTPUT, 1)]
        if _is_analog(pin):
            modes.append((MODE_ANALOG, 10))
        if pin in PWM_PINS:
            modes.append((MODE_PWM, 8))
        if pin in DIGITAL_PINS:
            modes.append((MODE_SERVO, 14))
        if pin in I2C_PINS:
            modes.append((MODE_I2C, 1))
        pins.append(modes)
    return pins


def uno_analog_mapping() -> list[int | None]:
    """Per pin its analog channel, None for pins without an ADC."""
    return [pin - FIRST_ANALOG_PIN if _is_analog(pin) else None for pin in range(TOTAL_PINS)]


def default_analog_source(channel: int) -> AnalogSource:
    """A slowly varying reading (a sine around mid-scale, its own period per channel)."""
    period = _ANALOG_PERIODS_S[channel % len(_ANALOG_PERIODS_S)]

    def reading(t: float) -> float:
        return 512.0 + 320.0 * math.sin(2.0 * math.pi * t / period + channel)

    return reading


def _constant(value: float) -> AnalogSource:
    def reading(t: float) -> float:
        return value

    return reading


class VirtualFirmataBoard:
    """An Uno with StandardFirmata 2.5 on a pseudo-terminal; see the module docstring.

    ``reset_on_open``: reboot whenever the host opens the port, as an Uno's DTR auto-reset
    does (the banner then follows ``max(boot_delay_s, OPEN_SETTLE_S)`` after the open).
    ``boot_delay_s``: time from a reset to the banner, during which input is lost.
    ``silent``: parse and apply commands but never send a byte (no Firmata on the board,
    or a wrong baud rate): a handshake with it never completes.

    ``commands`` holds one tuple per message received, oldest first: ``("query_version",)``,
    ``("query_firmware",)``, ``("query_capability",)``, ``("query_analog_mapping",)``,
    ``("query_pin_state", pin)``, ``("set_pin_mode", pin, mode)``,
    ``("report_analog", channel, on)``, ``("report_digital", port, on)``,
    ``("sampling_interval", ms_asked)``, ``("digital_write", port, mask)``,
    ``("set_digital_pin_value", pin, value)``, ``("servo_config", pin, min_us, max_us)``,
    ``("system_reset",)``, an analog write (ANALOG_MESSAGE or EXTENDED_ANALOG) named by its
    effect: ``("servo", pin, value)``, ``("pwm", pin, value)`` or ``("analog_write", pin,
    value)`` (neither mode: ignored), and ``("sysex", command, data)`` / ``("unknown", byte)``
    for what StandardFirmata does not handle. An ``analog_source`` is called with the
    seconds since the board was made and returns counts (clamped to 0..1023, rounded).
    """

    def __init__(
        self,
        *,
        reset_on_open: bool = True,
        boot_delay_s: float = 0.0,
        silent: bool = False,
        firmware_name: str = FIRMWARE_NAME,
        kit_id: str = KIT_ID,
        name: str = KIT_NAME,
    ) -> None:
        # A real board's id comes from its USB serial number; a pty has none, and its
        # number changes with every start: the kit's own id, the same at every start.
        self.kit_id = kit_id
        self.name = name
        self.reset_on_open = reset_on_open
        self.boot_delay_s = boot_delay_s
        self.silent = silent
        self.firmware_name = firmware_name
        self.url = ""

        # What the host commanded (read them under wait_for or after it returns).
        self.pin_modes: dict[int, int] = {}
        self.outputs: dict[int, int] = {}  # pin -> last level written to an OUTPUT pin
        self.pwm: dict[int, int] = {}  # pin -> last duty (0..255) written to a PWM pin
        self.servo_angles: dict[int, int] = {}  # pin -> angle (degrees) the servo was sent to
        self.servo_pulses_us: dict[int, int] = {}  # pin -> the pulse width that angle gives
        self.servo_config: dict[int, tuple[int, int]] = {}  # pin -> (min, max) pulse in us
        self.sampling_interval_ms = DEFAULT_SAMPLING_INTERVAL_MS
        self.reporting_analog: set[int] = set()  # analog channels 0..5 reporting
        self.reporting_digital: set[int] = set()  # ports 0..2 reporting
        self.commands: deque[Command] = deque(maxlen=COMMAND_LOG_MAX)

        # The world outside the board.
        self.analog_source: dict[int, AnalogSource] = {
            ch: default_analog_source(ch) for ch in range(TOTAL_ANALOG_PINS)
        }
        self._input_levels: dict[int, int] = {}  # pin -> level driven from outside

        # Counters.
        self.boots = 0  # banners sent (power-on, reset(), opens with reset_on_open)
        self.reports_sent = 0  # analog and digital messages handed to the port
        self.bytes_received = 0
        self.bytes_dropped = 0  # output lost: nobody listening, or the host not reading
        self.errors: list[BaseException] = []
        # How late the board's own thread sent its analog reports, the machine being busy
        # (a real board's timer is never late): the largest delay of one sampling tick past
        # its time, in s, and the ticks given up after a stall (see CATCH_UP_LIMIT_S).
        self.tick_lateness_max_s = 0.0
        self.ticks_skipped = 0

        # Firmware state behind the public dicts.
        self._pin_state = [0] * TOTAL_PINS
        self._pullups: set[int] = set()  # INPUT pins whose pull-up a digital write enabled
        self._servos: set[int] = set()  # pins with an attached servo
        self._port_inputs = [0] * TOTAL_PORTS  # portConfigInputs: bit set = INPUT/PULLUP pin
        self._previous_port = [0] * TOTAL_PORTS  # last port value sent
        self._i2c_enabled = False
        self._resetting = False

        # The host's commands, framed a read at a time.
        self._decoder = Decoder(TO_BOARD, max_sysex=MAX_SYSEX_DATA, unknown=True)

        # Schedule.
        self._t0 = time.monotonic()
        self._booted = False
        self._boot_at = 0.0
        self._last_sample = 0.0
        self._reset_delay: float | None = None  # a reset the thread is to perform

        self._cond = threading.Condition()  # guards the state above; notified on changes
        self._io_lock = threading.Lock()  # guards the master fd; serialises writes
        self._master = -1
        self._generation = 0  # bumped on every unplug/replug, so the thread re-registers
        self._listening = False  # someone holds the slave end open
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self._opens = OpenWatch.create()
        self._power_on()
        self._open_pty()

    # -- the port -------------------------------------------------------------------------

    def _open_pty(self) -> None:
        master, slave, self.url = open_raw_pty()
        os.set_blocking(master, False)
        # Nobody holds the slave from here on, so the master shows POLLHUP until the host
        # opens it: that is how an open is seen, and why nothing is queued before it.
        close_fds(slave)
        if self._opens is not None:
            try:
                self._opens.watch(self.url)  # after our own close: only the host's opens count
            except OSError:
                log.warning("cannot watch %s for opens; watching for hang-ups", self.url,
                            exc_info=True)
                self._opens.close()
                self._opens = None
        self._master = master
        self._generation += 1

    def write(self, data: bytes) -> None:
        """Put raw bytes on the line as the board would (noise, a cut message, ...).

        Unlike the board's own output, these are written even when nobody listens (the pty
        then keeps them for the next reader) and even when the board is ``silent``."""
        self._send(bytes(data), force=True)

    def _send(self, data: bytes, *, force: bool = False) -> None:
        if not data or (self.silent and not force):
            return
        with self._io_lock:
            if self._master < 0 or not (self._listening or force):
                self.bytes_dropped += len(data)
                return
            try:
                written = os.write(self._master, data)
            except OSError as exc:
                if exc.errno not in (errno.EAGAIN, errno.EIO, errno.EBADF):
                    raise
                written = 0  # host not reading (buffer full) or gone: a UART loses it too
            self.bytes_dropped += len(data) - written

    @property
    def listening(self) -> bool:
        """True while someone holds the port open."""
        return self._listening

    @property
    def running(self) -> bool:
        """True while the board's thread is alive."""
        return self._thread is not None and self._thread.is_alive()

    def _wake(self) -> None:
        with contextlib.suppress(OSError):  # pipe full (already awake) or closed (closing)
            os.write(self._wake_w, b"\0")

    # -- life cycle -----------------------------------------------------------------------

    def start(self) -> VirtualFirmataBoard:
        """Power the board on: it boots on a thread of its own and sends its banner."""
        if self._thread is None:
            self._stop.clear()
            with self._cond:
                self._reset_delay = self.boot_delay_s
            self._thread = threading.Thread(target=self._run, daemon=True,
                                            name="labhub-virtual-firmata")
            self._thread.start()
        return self

    def reset(self, boot_delay_s: float | None = None) -> None:
        """Reboot, as the reset button or a DTR pulse does: state back to power-on, input
        lost for ``boot_delay_s`` (default: the board's), then the banner."""
        with self._cond:
            self._reset_delay = self.boot_delay_s if boot_delay_s is None else boot_delay_s
        self._wake()

    def unplug(self) -> None:
        """Pull the cable: the port fails for the host (EIO), the board stays powered off."""
        with self._io_lock:
            if self._master >= 0:
                os.close(self._master)
                self._master = -1
                self._generation += 1
            self._listening = False
        self._wake()

    def replug(self) -> str:
        """Plug back in, on a new pseudo-terminal (the board boots afresh); returns its URL."""
        with self._io_lock:
            plugged_in = self._master < 0
            if plugged_in:
                self._open_pty()
                self._listening = False
        if plugged_in:
            self.reset()
        return self.url

    def close(self) -> None:
        """Stop the board's thread and close the port."""
        self._stop.set()
        self._wake()
        if self._thread is not None:
            self._thread.join(JOIN_TIMEOUT_S)
            self._thread = None
        self.unplug()
        for fd in (self._wake_r, self._wake_w):
            if fd >= 0:
                os.close(fd)
        self._wake_r = self._wake_w = -1
        with self._io_lock:
            if self._opens is not None:
                self._opens.close()
                self._opens = None

    def __enter__(self) -> VirtualFirmataBoard:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the world outside ------------------------------------------------------------------

    def set_analog(self, channel: int, value: float) -> None:
        """Hold analog channel 0..5 at ``value`` counts (0..1023)."""
        if not 0 <= channel < TOTAL_ANALOG_PINS:
            raise ValueError(f"analog channel {channel} is not 0..{TOTAL_ANALOG_PINS - 1}")
        with self._cond:
            self.analog_source[channel] = _constant(value)

    def set_digital_input(self, pin: int, level: int | None) -> None:
        """Drive digital pin 2..19 high (1) or low (0) from outside; None lets it float."""
        if pin not in DIGITAL_PINS:
            raise ValueError(f"pin {pin} is not a digital pin (2..19)")
        with self._cond:
            if level is None:
                self._input_levels.pop(pin, None)
            else:
                self._input_levels[pin] = 1 if level else 0
        self._wake()

    def analog_value(self, channel: int) -> int:
        """What the ADC reads on ``channel`` now (0..1023)."""
        with self._cond:
            return self._read_analog(channel)

    def wait_for(self, predicate: Callable[[], bool], timeout: float = 5.0) -> bool:
        """Wait until ``predicate()`` (checked under the board's lock) holds; its last value."""
        with self._cond:
            return self._cond.wait_for(predicate, timeout)

    # -- the thread -------------------------------------------------------------------------

    def _run(self) -> None:
        generation, master = -1, -1
        busy = select.poll()  # someone listens: the port, the wake pipe, the open watch
        idle = select.poll()  # nobody does: the port shows POLLHUP all along, so leave it out
        look = select.poll()  # the port alone, checked without waiting
        opens: OpenWatch | None = None
        opens_fd = -1
        while not self._stop.is_set():
            with self._io_lock:
                if self._generation != generation:
                    generation, master = self._generation, self._master
                    opens = self._opens
                    opens_fd = opens.fd if opens is not None else -1
                    busy, idle, look = select.poll(), select.poll(), select.poll()
                    for poller in (busy, idle):
                        poller.register(self._wake_r, select.POLLIN)
                        if opens_fd >= 0:
                            poller.register(opens_fd, select.POLLIN)
                    if master >= 0:
                        busy.register(master, select.POLLIN)
                        look.register(master, select.POLLIN)
            timeout_s = self._timeout()
            if master >= 0 and self._listening:
                busy.poll(timeout_s * 1000)
            elif master < 0 or opens_fd >= 0:
                idle.poll(timeout_s * 1000)
            else:  # no inotify: look for an opener every OPEN_POLL_S
                idle.poll(min(timeout_s, OPEN_POLL_S) * 1000)
            self._drain_wake()
            received = b""
            listening = False
            if master >= 0:
                flags = dict(look.poll(0)).get(master, 0)
                if flags & select.POLLIN:
                    received = self._read(master, generation)
                listening = not flags & (select.POLLHUP | select.POLLERR | select.POLLNVAL)
            # Opens are read after the look: an open seen as listening is then always counted.
            opened = opens.read_opens() if opens is not None else 0
            if opens is None and listening and not self._listening:
                opened = 1  # without inotify, an open is seen as the hang-up ending
            self._set_listening(listening, generation, opened)
            self._work(received)

    def _timeout(self) -> float:
        with self._cond:
            now = time.monotonic()
            if self._reset_delay is not None:
                return 0.0
            if not self._booted:
                due = self._boot_at
            elif self.reporting_analog:
                due = self._last_sample + self.sampling_interval_ms / 1000.0
            else:
                due = now + IDLE_WAIT_S
            return min(max(0.0, due - now), IDLE_WAIT_S)

    def _read(self, master: int, generation: int) -> bytes:
        with self._io_lock:
            if generation != self._generation:
                return b""
            try:
                return os.read(master, READ_CHUNK)
            except OSError as exc:
                if exc.errno in (errno.EAGAIN, errno.EIO, errno.EBADF):
                    return b""  # EIO: the far end closed; seen as POLLHUP next time round
                raise

    def _set_listening(self, listening: bool, generation: int, opened: int) -> None:
        with self._io_lock:
            if generation == self._generation:
                self._listening = listening
        # DTR pulses on every open, so the Uno resets (the watch follows replug: always ours).
        if opened and self.reset_on_open:
            with self._cond:
                self._reset_delay = max(self.boot_delay_s, OPEN_SETTLE_S)

    def _drain_wake(self) -> None:
        with contextlib.suppress(OSError):  # EAGAIN: empty
            while os.read(self._wake_r, 512):
                pass

    def _work(self, received: bytes) -> None:
        out = bytearray()
        try:
            with self._cond:
                now = time.monotonic()
                if self._reset_delay is not None:
                    self._power_on()
                    self._boot_at = now + self._reset_delay
                    self._reset_delay = None
                if not self._booted and now >= self._boot_at:
                    self._booted = True
                    self._last_sample = now
                    self.boots += 1
                    out += version_report(*PROTOCOL_VERSION)
                    out += firmware_report(self.firmware_name, *FIRMWARE_VERSION)
                if received:
                    self.bytes_received += len(received)
                    if self._booted:  # input during boot goes to the bootloader, not Firmata
                        self._check_digital_inputs(out)
                        for message in self._decoder.feed(received):
                            self._handle(message, out)
                if self._booted:
                    self._check_digital_inputs(out)
                    self._sample_analog(now, out)
                self._cond.notify_all()
        except Exception as exc:  # a bug must not take the board off the line
            log.exception("virtual Firmata board: error in the board's loop")
            self.errors.append(exc)
            del self.errors[:-ERROR_LOG_MAX]
        self._send(bytes(out))

    # -- firmware: boot and reset ---------------------------------------------------------------

    def _power_on(self) -> None:
        """Power-on state: what setup() leaves (registers cleared, then systemReset)."""
        self._booted = False
        self._decoder.reset()
        self.pin_modes.clear()
        self.pin_modes.update({pin: MODE_INPUT for pin in range(TOTAL_PINS)})
        self.outputs.clear()
        self.pwm.clear()
        self.servo_angles.clear()
        self.servo_pulses_us.clear()
        self.servo_config.clear()
        self.sampling_interval_ms = DEFAULT_SAMPLING_INTERVAL_MS
        self._pin_state = [0] * TOTAL_PINS
        self._pullups.clear()
        self._servos.clear()
        self._i2c_enabled = False
        self._system_reset(bytearray())

    def _system_reset(self, out: bytearray) -> None:
        """systemResetCallback: analog pins to ANALOG, digital pins to OUTPUT, no reporting.

        The sampling interval is kept, as in the sketch."""
        self._resetting = True
        self._i2c_enabled = False
        self.reporting_digital.clear()
        self._port_inputs = [0] * TOTAL_PORTS
        self._previous_port = [0] * TOTAL_PORTS
        for pin in range(TOTAL_PINS):
            if _is_analog(pin):
                self._set_pin_mode(pin, MODE_ANALOG, out)
            elif pin in DIGITAL_PINS:
                self._set_pin_mode(pin, MODE_OUTPUT, out)
        self.reporting_analog.clear()
        self._servos.clear()
        self._resetting = False

    # -- firmware: the host's messages --------------------------------------------------------

    def _handle(self, message: Message, out: bytearray) -> None:
        command, channel, data = message
        if command == START_SYSEX:
            self._handle_sysex(data, out)
        elif command == REPORT_VERSION:
            self._log("query_version")
            out += version_report(*PROTOCOL_VERSION)
        elif command == SYSTEM_RESET:
            self._log("system_reset")
            self._system_reset(out)
        elif command in TO_BOARD:
            self._handle_message(command, channel, data, out)
        else:
            self._log("unknown", command | channel)

    def _log(self, *command: str | int | bytes) -> None:
        self.commands.append(command)

    # -- firmware: messages ------------------------------------------------------------------

    def _handle_message(self, kind: int, channel: int, data: bytes, out: bytearray) -> None:
        if kind == DIGITAL_MESSAGE:
            mask = data[0] | data[1] << 7
            self._log("digital_write", channel, mask)
            self._digital_write(channel, mask)
        elif kind == ANALOG_MESSAGE:
            self._analog_write(channel, data[0] | data[1] << 7)
        elif kind == REPORT_ANALOG:
            self._log("report_analog", channel, data[0])
            self._report_analog(channel, data[0] != 0, out)
        elif kind == REPORT_DIGITAL:
            self._log("report_digital", channel, data[0])
            self._report_digital(channel, data[0] != 0, out)
        elif kind == SET_PIN_MODE:
            self._log("set_pin_mode", data[0], data[1])
            self._set_pin_mode(data[0], data[1], out)
        elif kind == SET_DIGITAL_PIN_VALUE:
            self._log("set_digital_pin_value", data[0], data[1])
            pin = data[0]
            if pin in DIGITAL_PINS and self.pin_modes[pin] == MODE_OUTPUT:
                self._pin_state[pin] = data[1]
                self.outputs[pin] = 1 if data[1] else 0

    def _handle_sysex(self, data: bytes, out: bytearray) -> None:
        if not data:
            self._log("sysex", b"")
            return
        command, args = data[0], data[1:]
        if command == REPORT_FIRMWARE:
            self._log("query_firmware")
            out += firmware_report(self.firmware_name, *FIRMWARE_VERSION)
        elif command == CAPABILITY_QUERY:
            self._log("query_capability")
            out += capability_response(uno_capabilities())
        elif command == ANALOG_MAPPING_QUERY:
            self._log("query_analog_mapping")
            out += analog_mapping_response(uno_analog_mapping())
        elif command == PIN_STATE_QUERY and args:
            self._log("query_pin_state", args[0])
            out += self._pin_state_response(args[0])
        elif command == SAMPLING_INTERVAL and len(args) > 1:
            requested = args[0] | args[1] << 7
            self._log("sampling_interval", requested)
            self.sampling_interval_ms = max(MIN_SAMPLING_INTERVAL_MS, requested)
        elif command == EXTENDED_ANALOG and len(args) > 1:
            value = args[1]
            if len(args) > 2:
                value |= args[2] << 7
            if len(args) > 3:
                value |= args[3] << 14
            self._analog_write(args[0], value & 0xFFFF)  # the sketch's int is 16 bits
        elif command == SERVO_CONFIG and len(args) > 4:
            pin, low, high = args[0], args[1] | args[2] << 7, args[3] | args[4] << 7
            self._log("servo_config", pin, low, high)
            if pin in DIGITAL_PINS:
                self._servos.discard(pin)
                self._attach_servo(pin, low, high, out)
                self._set_pin_mode(pin, MODE_SERVO, out)
        elif command == I2C_CONFIG:
            self._log("sysex", command, bytes(args))
            if not self._i2c_enabled:
                for pin in sorted(I2C_PINS):
                    self._set_pin_mode(pin, MODE_I2C, out)
                self._i2c_enabled = True
        else:
            self._log("sysex", command, bytes(args))

    def _pin_state_response(self, pin: int) -> bytes:
        if pin < TOTAL_PINS:
            return pin_state_response(pin, (self.pin_modes[pin], self._pin_state[pin]))
        return pin_state_response(pin, None)

    def _set_pin_mode(self, pin: int, mode: int, out: bytearray) -> None:
        """setPinModeCallback of StandardFirmata 2.5."""
        if pin >= TOTAL_PINS or self.pin_modes[pin] == MODE_IGNORE:
            return
        if self.pin_modes[pin] == MODE_I2C and self._i2c_enabled and mode != MODE_I2C:
            self._i2c_enabled = False
        if pin in DIGITAL_PINS and mode != MODE_SERVO:
            self._servos.discard(pin)
        if _is_analog(pin):
            self._report_analog(pin - FIRST_ANALOG_PIN, mode == MODE_ANALOG, out)
        if pin in DIGITAL_PINS:
            bit = 1 << (pin & 7)
            if mode in (MODE_INPUT, MODE_PULLUP):
                self._port_inputs[pin // 8] |= bit
            else:
                self._port_inputs[pin // 8] &= ~bit
        self._pin_state[pin] = 0
        if mode == MODE_ANALOG:
            if _is_analog(pin):
                self._pullups.discard(pin)
                self.pin_modes[pin] = MODE_ANALOG
        elif mode == MODE_INPUT:
            if pin in DIGITAL_PINS:
                self._pullups.discard(pin)  # pinMode(INPUT) turns the pull-up off
                self.pin_modes[pin] = MODE_INPUT
        elif mode == MODE_PULLUP:
            if pin in DIGITAL_PINS:
                self.pin_modes[pin] = MODE_PULLUP
                self._pin_state[pin] = 1
        elif mode == MODE_OUTPUT:
            if pin in DIGITAL_PINS:
                if self.pin_modes[pin] == MODE_PWM:
                    self.outputs[pin] = 0  # digitalWrite(LOW) ends the PWM
                self.pin_modes[pin] = MODE_OUTPUT
        elif mode == MODE_PWM:
            if pin in PWM_PINS:
                self.pin_modes[pin] = MODE_PWM
                self.pwm[pin] = 0  # analogWrite(pin, 0)
        elif mode == MODE_SERVO:
            if pin in DIGITAL_PINS:
                self.pin_modes[pin] = MODE_SERVO
                if pin not in self._servos:
                    self._attach_servo(pin, -1, -1, out)
        elif mode == MODE_I2C:
            if pin in I2C_PINS:
                self.pin_modes[pin] = MODE_I2C
        elif mode == MODE_SERIAL:
            self.pin_modes[pin] = MODE_SERIAL  # SerialFirmata.handlePinMode takes any pin
        else:
            out += string_message("Unknown pin mode")

    def _attach_servo(self, pin: int, low: int, high: int, out: bytearray) -> None:
        if len(self._servos) >= MAX_SERVOS:
            out += string_message("Max servos attached")
            return
        self._servos.add(pin)
        if low > 0 and high > 0:
            self.servo_config[pin] = (low, high)
        else:
            self.servo_config[pin] = (SERVO_MIN_PULSE_US, SERVO_MAX_PULSE_US)

    def _analog_write(self, pin: int, value: int) -> None:
        """analogWriteCallback: a servo angle (or pulse) or a PWM duty, by the pin's mode."""
        mode = self.pin_modes.get(pin)
        if mode == MODE_SERVO:
            self._log("servo", pin, value)
            self._pin_state[pin] = value
            if pin in self._servos:
                self._servo_write(pin, value)
        elif mode == MODE_PWM:
            self._log("pwm", pin, value)
            self._pin_state[pin] = value
            self.pwm[pin] = value
        else:
            self._log("analog_write", pin, value)  # the sketch ignores it

    def _servo_write(self, pin: int, value: int) -> None:
        """Servo.write: below 544 an angle (0..180), else a pulse width in microseconds."""
        low, high = self.servo_config.get(pin, (SERVO_MIN_PULSE_US, SERVO_MAX_PULSE_US))
        if value < SERVO_MIN_PULSE_US:
            angle = min(180, max(0, value))
            pulse = low + angle * (high - low) // 180
        else:
            pulse = min(high, max(low, value))
            angle = (pulse - low) * 180 // max(1, high - low)
        self.servo_angles[pin] = angle
        self.servo_pulses_us[pin] = pulse

    def _digital_write(self, port: int, value: int) -> None:
        """digitalWriteCallback: OUTPUT pins take their bit; a 1 to an INPUT pin pulls it up."""
        if port >= TOTAL_PORTS:
            return
        for pin in range(port * 8, min(port * 8 + 8, TOTAL_PINS)):
            mode = self.pin_modes[pin]
            if pin not in DIGITAL_PINS or mode not in (MODE_OUTPUT, MODE_INPUT):
                continue
            level = (value >> (pin & 7)) & 1
            if mode == MODE_OUTPUT:
                self.outputs[pin] = level
            elif level and self._pin_state[pin] != 1:
                self._pullups.add(pin)
            self._pin_state[pin] = level

    # -- firmware: reporting -------------------------------------------------------------------

    def _read_analog(self, channel: int) -> int:
        source = self.analog_source.get(channel)
        if source is None:
            return 0
        return min(ADC_MAX, max(0, round(source(time.monotonic() - self._t0))))

    def _report_analog(self, channel: int, on: bool, out: bytearray) -> None:
        if channel >= TOTAL_ANALOG_PINS:
            return
        if not on:
            self.reporting_analog.discard(channel)
            return
        if not self.reporting_analog:
            self._rephase(time.monotonic())  # the first tick comes within one interval
        self.reporting_analog.add(channel)
        if not self._resetting:  # the sketch sends the value at once (not during a reset)
            out += analog_message(channel, self._read_analog(channel))
            self.reports_sent += 1

    def _report_digital(self, port: int, on: bool, out: bytearray) -> None:
        if port >= TOTAL_PORTS:
            return
        if not on:
            self.reporting_digital.discard(port)
            return
        self.reporting_digital.add(port)
        self._output_port(port, force=True, out=out)

    def _read_port(self, port: int) -> int:
        value = 0
        for pin in range(port * 8, min(port * 8 + 8, TOTAL_PINS)):
            if not self._port_inputs[port] & (1 << (pin & 7)):
                continue
            floating = 1 if self.pin_modes[pin] == MODE_PULLUP or pin in self._pullups else 0
            if self._input_levels.get(pin, floating):
                value |= 1 << (pin & 7)
        return value

    def _output_port(self, port: int, *, force: bool, out: bytearray) -> None:
        value = self._read_port(port)
        if force or value != self._previous_port[port]:
            out += digital_message(port, value)
            self._previous_port[port] = value
            self.reports_sent += 1

    def _check_digital_inputs(self, out: bytearray) -> None:
        for port in sorted(self.reporting_digital):
            self._output_port(port, force=False, out=out)

    def _rephase(self, now: float) -> None:
        """Move the sampling schedule to its latest tick before ``now``, keeping its phase."""
        interval = self.sampling_interval_ms / 1000.0
        self._last_sample = now - (now - self._last_sample) % interval

    def _sample_analog(self, now: float, out: bytearray) -> None:
        if not self.reporting_analog:
            return
        interval = self.sampling_interval_ms / 1000.0
        behind = now - self._last_sample
        if behind < interval:
            return
        if behind > CATCH_UP_LIMIT_S:
            self.ticks_skipped += int(behind / interval) - 1
            self._rephase(now)  # the machine stalled: skip the missed ticks, no burst
        else:
            self._last_sample += interval  # a fixed schedule: a late tick does not delay the next
        self.tick_lateness_max_s = max(self.tick_lateness_max_s, now - self._last_sample)
        for channel in sorted(self.reporting_analog):
            if self.pin_modes[FIRST_ANALOG_PIN + channel] == MODE_ANALOG:
                out += analog_message(channel, self._read_analog(channel))
                self.reports_sent += 1
