"""The virtual StandardFirmata board, byte for byte through a real pseudo-terminal, and with
pyfirmata2 as the host: boot banner, queries, pin modes, reporting, writes, reset, resync,
silence, boot time, unplug, and random bytes that never take it off the line."""

from __future__ import annotations

import itertools
import os
import select
import statistics
import threading
import time
import tty
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from firmware_bridge.sim.firmata_board import VirtualFirmataBoard

# What StandardFirmata 2.5 on an Uno sends, written out by hand from the protocol
# (firmata/protocol protocol.md) and the sketch, not computed by the module under test.
VERSION = bytes.fromhex("f9 02 05")
FIRMWARE = bytes.fromhex(
    "f0 79 02 05"
    " 53 00 74 00 61 00 6e 00 64 00 61 00 72 00 64 00"  # S t a n d a r d
    " 46 00 69 00 72 00 6d 00 61 00 74 00 61 00"  # F i r m a t a
    " 2e 00 69 00 6e 00 6f 00"  # . i n o
    " f7"
)
BANNER = VERSION + FIRMWARE
CAPABILITY = bytes.fromhex(
    "f0 6c"
    " 7f"  # D0: RX of the serial link, nothing
    " 7f"  # D1: TX
    " 00 01 0b 01 01 01 04 0e 7f"  # D2: input, pullup, output, servo
    " 00 01 0b 01 01 01 03 08 04 0e 7f"  # D3: ... PWM 8 bits
    " 00 01 0b 01 01 01 04 0e 7f"  # D4
    " 00 01 0b 01 01 01 03 08 04 0e 7f"  # D5 PWM
    " 00 01 0b 01 01 01 03 08 04 0e 7f"  # D6 PWM
    " 00 01 0b 01 01 01 04 0e 7f"  # D7
    " 00 01 0b 01 01 01 04 0e 7f"  # D8
    " 00 01 0b 01 01 01 03 08 04 0e 7f"  # D9 PWM
    " 00 01 0b 01 01 01 03 08 04 0e 7f"  # D10 PWM
    " 00 01 0b 01 01 01 03 08 04 0e 7f"  # D11 PWM
    " 00 01 0b 01 01 01 04 0e 7f"  # D12
    " 00 01 0b 01 01 01 04 0e 7f"  # D13
    " 00 01 0b 01 01 01 02 0a 04 0e 7f"  # A0: ... analog 10 bits, servo
    " 00 01 0b 01 01 01 02 0a 04 0e 7f"  # A1
    " 00 01 0b 01 01 01 02 0a 04 0e 7f"  # A2
    " 00 01 0b 01 01 01 02 0a 04 0e 7f"  # A3
    " 00 01 0b 01 01 01 02 0a 04 0e 06 01 7f"  # A4: ... I2C (SDA)
    " 00 01 0b 01 01 01 02 0a 04 0e 06 01 7f"  # A5: ... I2C (SCL)
    " f7"
)
ANALOG_MAPPING = bytes.fromhex("f0 6a" + " 7f" * 14 + " 00 01 02 03 04 05 f7")
UNKNOWN_PIN_MODE = bytes.fromhex(
    "f0 71 55 00 6e 00 6b 00 6e 00 6f 00 77 00 6e 00 20 00"  # "Unknown "
    " 70 00 69 00 6e 00 20 00 6d 00 6f 00 64 00 65 00 f7"  # "pin mode"
)
MAX_SERVOS_ATTACHED = bytes.fromhex(
    "f0 71 4d 00 61 00 78 00 20 00 73 00 65 00 72 00 76 00 6f 00 73 00 20 00"  # "Max servos "
    " 61 00 74 00 74 00 61 00 63 00 68 00 65 00 64 00 f7"  # "attached"
)
# A pin-state query for a pin the Uno does not have: its answer marks a point in the stream.
MARK_QUERY = bytes.fromhex("f0 6d 7f f7")
MARK_ANSWER = bytes.fromhex("f0 6e 7f f7")

INPUT, OUTPUT, ANALOG, PWM, SERVO, PULLUP = 0x00, 0x01, 0x02, 0x03, 0x04, 0x0B


class Host:
    """The far end of the board's port, opened as a host program opens a serial port."""

    def __init__(self, url: str) -> None:
        self.fd = os.open(url, os.O_RDWR | os.O_NOCTTY)
        tty.setraw(self.fd)
        self.buffer = bytearray()

    def send(self, data: bytes) -> None:
        os.write(self.fd, data)

    def _fill(self, timeout: float) -> bool:
        ready, _, _ = select.select([self.fd], [], [], timeout)
        if ready:
            chunk = os.read(self.fd, 65536)
            self.buffer += chunk
            return bool(chunk)
        return False

    def read(self, n: int, timeout: float = 3.0) -> bytes:
        """Exactly the next ``n`` bytes."""
        deadline = time.monotonic() + timeout
        while len(self.buffer) < n:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"wanted {n} bytes, got {bytes(self.buffer).hex(' ')}")
            self._fill(left)
        data = bytes(self.buffer[:n])
        del self.buffer[:n]
        return data

    def read_until(self, pattern: bytes, timeout: float = 3.0) -> bytes:
        """Everything up to and including the first ``pattern``."""
        deadline = time.monotonic() + timeout
        while (at := self.buffer.find(pattern)) < 0:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no {pattern.hex(' ')} in {bytes(self.buffer).hex(' ')}")
            self._fill(left)
        data = bytes(self.buffer[: at + len(pattern)])
        del self.buffer[: at + len(pattern)]
        return data

    def collect(self, seconds: float) -> bytes:
        """Whatever arrives within ``seconds`` (plus what was already buffered)."""
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            self._fill(left)
        data = bytes(self.buffer)
        self.buffer.clear()
        return data

    def timed_messages(self, seconds: float) -> list[tuple[float, bytes]]:
        """Three-byte messages arriving within ``seconds``, each with its arrival time."""
        out: list[tuple[float, bytes]] = []
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            if self._fill(left):
                now = time.monotonic()
                while len(self.buffer) >= 3:
                    out.append((now, bytes(self.buffer[:3])))
                    del self.buffer[:3]
        return out

    def close(self) -> None:
        os.close(self.fd)


@pytest.fixture
def board() -> Iterator[VirtualFirmataBoard]:
    """A board that has powered on (so the host's open is what resets it)."""
    with VirtualFirmataBoard() as b:
        assert b.wait_for(lambda: b.boots == 1)
        yield b


@pytest.fixture
def host(board: VirtualFirmataBoard) -> Iterator[Host]:
    """The port opened; the board has reset and its banner has been read."""
    h = Host(board.url)
    try:
        assert h.read(len(BANNER)) == BANNER
        yield h
    finally:
        h.close()


# -- boot and queries -----------------------------------------------------------------------


def test_opening_the_port_resets_the_board_which_then_sends_its_banner(
    board: VirtualFirmataBoard,
) -> None:
    h = Host(board.url)
    try:
        assert h.read(len(BANNER)) == BANNER  # REPORT_VERSION then REPORT_FIRMWARE, as at boot
        h.send(bytes.fromhex("f4 0d 00"))  # D13 to INPUT
        assert board.wait_for(lambda: board.pin_modes[13] == INPUT)
    finally:
        h.close()
    boots = board.boots
    h = Host(board.url)  # reopening resets the board: D13 is an output again
    try:
        assert h.read(len(BANNER)) == BANNER
        assert board.boots == boots + 1
        assert board.pin_modes[13] == OUTPUT
        assert h.collect(0.05) == b""  # and nothing else: reporting is off after boot
    finally:
        h.close()


def test_version_and_firmware_queries(board: VirtualFirmataBoard, host: Host) -> None:
    host.send(bytes.fromhex("f9"))
    assert host.read(3) == VERSION
    host.send(bytes.fromhex("f0 79 f7"))
    assert host.read(len(FIRMWARE)) == FIRMWARE
    assert list(board.commands) == [("query_version",), ("query_firmware",)]


def test_capability_query_lists_the_uno_as_standardfirmata_does(host: Host) -> None:
    host.send(bytes.fromhex("f0 6b f7"))
    assert host.read(len(CAPABILITY)) == CAPABILITY
    assert host.collect(0.03) == b""


def test_analog_mapping_query(host: Host) -> None:
    host.send(bytes.fromhex("f0 69 f7"))
    assert host.read(len(ANALOG_MAPPING)) == ANALOG_MAPPING


def test_pin_state_query_gives_mode_and_state_in_7_bit_groups(host: Host) -> None:
    host.send(bytes.fromhex("f0 6d 0d f7"))
    assert host.read(6) == bytes.fromhex("f0 6e 0d 01 00 f7")  # D13 output, low
    host.send(bytes.fromhex("91 20 00  f0 6d 0d f7"))  # D13 high
    assert host.read(6) == bytes.fromhex("f0 6e 0d 01 01 f7")
    host.send(bytes.fromhex("f4 09 03  e9 7f 01  f0 6d 09 f7"))  # D9 PWM at 255
    assert host.read(7) == bytes.fromhex("f0 6e 09 03 7f 01 f7")  # 255 needs a second byte
    host.send(bytes.fromhex("f0 6d 0e f7  f0 6d 28 f7"))  # A0; pin 40 (no such pin)
    assert host.read(10) == bytes.fromhex("f0 6e 0e 02 00 f7  f0 6e 28 f7")


# -- reporting ------------------------------------------------------------------------------


def test_analog_reporting_sends_at_once_then_every_sampling_interval(
    board: VirtualFirmataBoard, host: Host
) -> None:
    board.set_analog(0, 700)  # 700 = 5 * 128 + 60
    host.send(bytes.fromhex("f0 7a 14 00 f7"))  # sampling every 20 ms
    host.send(bytes.fromhex("f4 0e 02"))  # A0 to ANALOG: the sketch turns reporting on
    host.send(bytes.fromhex("c0 01"))  # REPORT_ANALOG A0 on
    # Each enabling sends the value at once, before any sampling tick.
    assert host.read(6) == bytes.fromhex("e0 3c 05  e0 3c 05")
    messages = host.timed_messages(0.6)
    assert {m for _, m in messages} == {bytes.fromhex("e0 3c 05")}
    gaps = [b - a for (a, _), (b, _) in itertools.pairwise(messages)]
    assert 0.014 <= statistics.median(gaps) <= 0.026  # loose: timing is measured in bench/
    board.set_analog(0, 1023)
    host.read_until(bytes.fromhex("e0 7f 07"))
    assert board.reporting_analog == {0}
    assert board.sampling_interval_ms == 20
    assert ("sampling_interval", 20) in board.commands
    assert ("set_pin_mode", 14, ANALOG) in board.commands


def test_channels_report_in_channel_order_and_only_in_analog_mode(
    board: VirtualFirmataBoard, host: Host
) -> None:
    for ch, value in ((2, 127), (3, 128), (5, 1023)):  # 7-bit edges: 7f 00, 00 01, 7f 07
        board.set_analog(ch, value)
    host.send(bytes.fromhex("f0 7a 0a 00 f7  c5 01  c2 01  c3 01"))
    assert host.read(9) == bytes.fromhex("e5 7f 07  e2 7f 00  e3 00 01")  # in request order
    assert host.read(9) == bytes.fromhex("e2 7f 00  e3 00 01  e5 7f 07")  # a tick: by channel
    host.send(bytes.fromhex("f4 10 01  f4 11 00"))  # A2 to OUTPUT, A3 to INPUT
    assert board.wait_for(lambda: board.reporting_analog == {5})  # both stop reporting
    host.collect(0.03)  # what was already on its way
    messages = host.timed_messages(0.1)
    assert messages and {m for _, m in messages} == {bytes.fromhex("e5 7f 07")}


def test_digital_port_reporting_sends_the_port_then_each_change(
    board: VirtualFirmataBoard, host: Host
) -> None:
    host.send(bytes.fromhex("f4 02 00  f4 03 0b"))  # D2 input, D3 input with pull-up
    host.send(bytes.fromhex("d0 01"))  # report port 0: sent at once; D3 floats high
    assert host.read(3) == bytes.fromhex("90 08 00")
    board.set_digital_input(2, 1)
    assert host.read(3) == bytes.fromhex("90 0c 00")
    board.set_digital_input(3, 0)  # a button to ground on the pulled-up pin
    assert host.read(3) == bytes.fromhex("90 04 00")
    board.set_digital_input(7, 1)  # D7 is an output: not reported
    host.send(bytes.fromhex("d0 00"))
    assert board.wait_for(lambda: board.reporting_digital == set())
    board.set_digital_input(2, 0)
    assert host.collect(0.05) == b""
    assert ("report_digital", 0, 1) in board.commands


# -- writes -------------------------------------------------------------------------------------


def test_digital_message_drives_output_pins_and_leaves_the_rest(
    board: VirtualFirmataBoard, host: Host
) -> None:
    host.send(bytes.fromhex("f4 0c 00"))  # D12 input
    host.send(bytes.fromhex("91 30 00"))  # port 1 = D8..D15: D12 and D13 high
    assert board.wait_for(lambda: board.outputs.get(13) == 1)
    assert 12 not in board.outputs  # an input pin takes a write as "pull-up on"
    host.send(bytes.fromhex("90 7f 01"))  # port 0 all high: D0/D1 are the serial link
    assert board.wait_for(lambda: board.outputs.get(7) == 1)
    host.send(bytes.fromhex("f5 0d 00"))  # SET_DIGITAL_PIN_VALUE D13 low
    assert board.wait_for(lambda: board.outputs.get(13) == 0)
    # A port write sets every OUTPUT pin of the port: D8..D11 (outputs since boot) went low.
    assert board.outputs == {2: 1, 3: 1, 4: 1, 5: 1, 6: 1, 7: 1, 8: 0, 9: 0, 10: 0, 11: 0, 13: 0}
    assert ("digital_write", 1, 0x30) in board.commands
    assert ("set_digital_pin_value", 13, 0) in board.commands
    host.send(bytes.fromhex("d1 01"))  # the pulled-up D12 reads high
    assert host.read(3) == bytes.fromhex("91 10 00")


def test_servo_config_then_analog_message_moves_the_servo(
    board: VirtualFirmataBoard, host: Host
) -> None:
    host.send(bytes.fromhex("f0 70 09 20 04 60 12 f7"))  # D9 servo, 544..2400 us
    host.send(bytes.fromhex("e9 5a 00"))  # 90 degrees
    assert board.wait_for(lambda: board.servo_angles.get(9) == 90)
    assert board.servo_config[9] == (544, 2400)
    assert board.pin_modes[9] == SERVO
    assert board.servo_pulses_us[9] == 544 + 90 * (2400 - 544) // 180
    host.send(bytes.fromhex("e9 5c 0b"))  # 1500: 544 and above is a pulse width (Servo.write)
    assert board.wait_for(lambda: board.servo_pulses_us.get(9) == 1500)
    assert board.servo_angles[9] == (1500 - 544) * 180 // (2400 - 544)
    assert ("servo_config", 9, 544, 2400) in board.commands
    assert ("servo", 9, 90) in board.commands


def test_extended_analog_reaches_pins_above_15_and_wide_values(
    board: VirtualFirmataBoard, host: Host
) -> None:
    host.send(bytes.fromhex("f0 70 12 20 04 60 12 f7"))  # a servo on A4 (pin 18)
    host.send(bytes.fromhex("f0 6f 12 2d f7"))  # 45 degrees, one value byte
    assert board.wait_for(lambda: board.servo_angles.get(18) == 45)
    host.send(bytes.fromhex("f4 0b 03  f0 6f 0b 7f 01 f7"))  # D11 PWM at 255
    assert board.wait_for(lambda: board.pwm.get(11) == 255)
    host.send(bytes.fromhex("e3 40 00"))  # D3 is an output, not PWM: ignored
    host.send(bytes.fromhex("f0 6d 03 f7"))
    assert host.read(6) == bytes.fromhex("f0 6e 03 01 00 f7")
    assert 3 not in board.pwm
    assert ("analog_write", 3, 0x40) in board.commands


def test_unknown_pin_mode_and_a_13th_servo_get_the_sketchs_messages(
    board: VirtualFirmataBoard, host: Host
) -> None:
    host.send(bytes.fromhex("f4 05 10"))
    assert host.read(len(UNKNOWN_PIN_MODE)) == UNKNOWN_PIN_MODE
    host.send(b"".join(bytes((0xF4, pin, SERVO)) for pin in range(2, 14)))  # 12 servos
    assert board.wait_for(lambda: board.pin_modes[13] == SERVO)
    host.send(bytes.fromhex("f4 0e 04"))  # a 13th on A0
    assert host.read(len(MAX_SERVOS_ATTACHED)) == MAX_SERVOS_ATTACHED
    host.send(bytes.fromhex("f0 6f 0e 5a f7"))
    assert board.wait_for(lambda: ("servo", 14, 90) in board.commands)
    assert 14 not in board.servo_angles  # mode set, but no servo was attached


# -- reset, resync, silence, boot time, unplug ----------------------------------------------------


def test_system_reset_stops_reporting_and_restores_pin_modes(
    board: VirtualFirmataBoard, host: Host
) -> None:
    host.send(bytes.fromhex("f0 7a 0a 00 f7  c0 01  c1 01  f4 0d 00  d1 01"))
    host.timed_messages(0.05)
    host.send(bytes.fromhex("ff f9"))
    host.read_until(VERSION)
    assert host.collect(0.1) == b""  # ten sampling intervals, not a message
    assert board.reporting_analog == set() and board.reporting_digital == set()
    assert board.pin_modes[13] == OUTPUT and board.pin_modes[14] == ANALOG
    assert board.sampling_interval_ms == 10  # the sketch keeps the interval
    assert ("system_reset",) in board.commands


def test_garbage_and_truncated_messages_resync_on_the_next_command(
    board: VirtualFirmataBoard, host: Host
) -> None:
    host.send(
        bytes.fromhex(
            "05 7f 3c"  # data bytes with no command: the stream joined mid-message
            " f0 79"  # a sysex cut short
            " e3 10"  # an analog message cut short
            " f4 0d"  # a pin mode cut short
            " a5 01 f1 fe"  # commands Firmata does not have
            " f0 01 02 03 f7"  # a sysex Firmata does not have
            " f7"  # an end with no start
            " f9"
        )
    )
    assert host.read(3) == VERSION
    host.send(bytes.fromhex("f0 6b 01  f0 69 f7"))  # a cut capability query, then mapping
    assert host.read(len(ANALOG_MAPPING)) == ANALOG_MAPPING
    assert host.collect(0.05) == b""
    assert board.pin_modes[13] == OUTPUT
    assert ("unknown", 0xA5) in board.commands and ("unknown", 0xFE) in board.commands
    assert ("sysex", 0x01, b"\x02\x03") in board.commands
    assert board.running and board.errors == []


def test_a_silent_board_never_answers_but_hears_everything() -> None:
    with VirtualFirmataBoard(silent=True) as board:
        assert board.wait_for(lambda: board.boots == 1)
        h = Host(board.url)
        try:
            assert board.wait_for(lambda: board.boots == 2)  # the open's reset
            h.send(bytes.fromhex("f9  f0 79 f7  f0 6b f7  f0 7a 0a 00 f7  c0 01"))
            assert board.wait_for(lambda: ("report_analog", 0, 1) in board.commands)
            assert h.collect(0.1) == b""
            assert board.reporting_analog == {0}
        finally:
            h.close()


def test_input_during_boot_is_lost_and_the_banner_comes_after_the_boot_delay() -> None:
    with VirtualFirmataBoard(boot_delay_s=0.3) as board:
        opened = time.monotonic()
        h = Host(board.url)
        try:
            h.send(bytes.fromhex("f9"))  # still in the bootloader
            assert h.read(len(BANNER)) == BANNER
            assert time.monotonic() - opened >= 0.3
            assert h.collect(0.05) == b""  # the early query was never seen
            h.send(bytes.fromhex("f9"))
            assert h.read(3) == VERSION
            board.reset(boot_delay_s=0)  # the reset button
            assert h.read(len(BANNER)) == BANNER
            assert ("query_version",) in board.commands
        finally:
            h.close()


def test_unplug_fails_the_hosts_port_and_replug_boots_on_a_new_one(
    board: VirtualFirmataBoard, host: Host
) -> None:
    board.unplug()
    assert select.select([host.fd], [], [], 1.0)[0]
    assert os.read(host.fd, 16) == b""  # hang-up
    with pytest.raises(OSError, match="Input/output error"):
        os.write(host.fd, bytes.fromhex("f9"))
    url = board.replug()
    h = Host(url)
    try:
        assert h.read(len(BANNER)) == BANNER
        h.send(bytes.fromhex("f9"))
        assert h.read(3) == VERSION
    finally:
        h.close()


def test_reports_are_dropped_not_queued_while_nobody_listens() -> None:
    with VirtualFirmataBoard(reset_on_open=False) as board:
        assert board.wait_for(lambda: board.boots == 1)
        h = Host(board.url)
        try:
            assert h.collect(0.05) == b""  # the banner went out before anyone listened: lost
            h.send(bytes.fromhex("f0 7a 0a 00 f7  c0 01"))
            h.read(6)
        finally:
            h.close()
        dropped = board.bytes_dropped
        time.sleep(0.3)  # 30 ticks of A0 with the port closed
        assert board.bytes_dropped > dropped
        h = Host(board.url)
        try:
            ready, _, _ = select.select([h.fd], [], [], 0)
            backlog = os.read(h.fd, 4096) if ready else b""
            assert len(backlog) < 3 * 10  # not the 30 messages sent while closed
            assert h.read_until(bytes.fromhex("e0"))  # and reporting goes on
        finally:
            h.close()


def test_close_stops_the_thread_promptly() -> None:
    board = VirtualFirmataBoard().start()
    assert board.running
    started = time.monotonic()
    board.close()
    assert not board.running
    assert time.monotonic() - started < 2.0
    board.close()  # twice is harmless


# -- random bytes -----------------------------------------------------------------------------


def test_random_bytes_never_stop_the_board_answering(
    board: VirtualFirmataBoard, host: Host
) -> None:
    @settings(max_examples=60, deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow])
    @given(noise=st.binary(max_size=200))
    def check(noise: bytes) -> None:
        # After the noise: F7 ends any open sysex, the mark query shows where the noise's
        # answers end, and the version query must still be answered.
        host.send(noise + b"\xf7" + MARK_QUERY + VERSION[:1])
        host.read_until(MARK_ANSWER)
        host.read_until(VERSION)
        assert board.running and board.errors == []

    check()


# -- pyfirmata2 as the host ------------------------------------------------------------------------


@pytest.fixture
def pyfirmata2(monkeypatch: pytest.MonkeyPatch) -> Any:
    """pyfirmata2, waiting 0.3 s (not 5 s) for the board's reset after opening the port."""
    import pyfirmata2 as module

    monkeypatch.setattr(module.pyfirmata2, "BOARD_SETUP_WAIT_TIME", 0.3)
    return module


def test_pyfirmata2_reads_version_firmware_and_analog_values(
    board: VirtualFirmataBoard, pyfirmata2: Any
) -> None:
    board.set_analog(0, 700)
    arduino = pyfirmata2.Arduino(board.url)
    try:
        assert arduino.get_firmata_version() == (2, 5)
        assert arduino.firmware == "StandardFirmata.ino"
        assert arduino.firmware_version == (2, 5)
        values: list[float] = []
        changed = threading.Event()

        def on_value(value: float) -> None:
            values.append(value)
            if value == round(300 / 1023, 4):
                changed.set()

        a0 = arduino.get_pin("a:0:i")
        a0.register_callback(on_value)
        arduino.samplingOn(10)
        a0.enable_reporting()
        assert board.wait_for(lambda: board.sampling_interval_ms == 10)
        deadline = time.monotonic() + 3
        while len(values) < 10 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert len(values) >= 10 and set(values) == {round(700 / 1023, 4)}
        board.set_analog(0, 300)
        assert changed.wait(3)
    finally:
        arduino.exit()
    assert board.wait_for(lambda: board.reporting_analog == set())  # exit() turns it off


def test_pyfirmata2_drives_a_servo_an_led_and_a_motor(
    board: VirtualFirmataBoard, pyfirmata2: Any
) -> None:
    arduino = pyfirmata2.Arduino(board.url)
    try:
        arduino.get_pin("d:9:s").write(90)
        arduino.get_pin("d:13:o").write(1)
        arduino.get_pin("d:5:p").write(0.5)
        assert board.wait_for(lambda: board.servo_angles.get(9) == 90
                              and board.outputs.get(13) == 1 and 5 in board.pwm
                              and board.pwm[5] != 0)
        assert abs(board.pwm[5] - 127.5) <= 1  # pyfirmata2 sends round(0.5 * 255)
        assert board.servo_config[9] == (544, 2400)
        assert board.pin_modes[13] == OUTPUT and board.pin_modes[5] == PWM
    finally:
        arduino.exit()
    assert board.wait_for(lambda: board.pin_modes[9] == OUTPUT)  # exit() detaches servos


def test_pyfirmata2_auto_setup_trips_over_standardfirmatas_pullup_capability(
    board: VirtualFirmataBoard, pyfirmata2: Any
) -> None:
    """pyfirmata2 2.5.1 expects digital pins as ``0 1 1 1`` (input, output); StandardFirmata
    2.5 lists the pull-up in between, so ``Board(url)`` without a layout finds 2 digital
    pins and fails (berndporr/pyFirmata2#19). A real Uno does the same; pass a layout."""
    with pytest.raises(IndexError):
        pyfirmata2.Board(board.url)
    assert ("query_capability",) in board.commands
