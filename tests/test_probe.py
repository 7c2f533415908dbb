"""Telling a StandardFirmata board from a sketch on a port never seen, on real
pseudo-terminals: the virtual Firmata board (with its reset and boot time), the virtual
climate station, a silent port, noise, and a port that vanishes. Then the supervisor and
the hub with ``protocol: auto``: each board is read the way it speaks, and a board
reflashed between two plug-ins is read the new way."""

from __future__ import annotations

import os
import random
import threading
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import Engine
from usb import UsbPort
from waiting import wait_for

from firmware_bridge import discovery, registry
from firmware_bridge.errors import DeviceReopeningError
from firmware_bridge.firmata import FirmataReader
from firmware_bridge.firmata_protocol import firmware_report
from firmware_bridge.probe import Prober, analyse, probe
from firmware_bridge.serial_lines import LineReader, PortGoneError
from firmware_bridge.sim.climate import VirtualClimateStation
from firmware_bridge.sim.firmata_board import VirtualFirmataBoard
from firmware_bridge.supervisor import Supervisor
from labhub.settings import Settings
from labhub.wiring import Hub
from sensors import queries
from sensors.pipeline import IngestPipeline

SERIAL = "5573932313135171E0B1"
DEVICE_ID = f"usb-2341-0043-{SERIAL}"


def _device(engine: Engine, device_id: str) -> registry.Device:
    with engine.connect() as conn:
        return registry.get_device(conn=conn, device_id=device_id)


# -- the verdict on bytes -----------------------------------------------------------------

def test_a_firmware_report_names_the_firmware() -> None:
    verdict = analyse(b"\x00\xfe" + firmware_report("StandardFirmata.ino", 2, 5))
    assert verdict is not None and verdict.kind == "firmata"
    assert verdict.firmware == "StandardFirmata.ino 2.5"


def test_a_version_report_is_enough_and_an_odd_version_is_not() -> None:
    verdict = analyse(bytes([0xF9, 2, 5]))
    assert verdict is not None and verdict.kind == "firmata" and "2.5" in verdict.reason
    assert analyse(bytes([0xF9, 0x41, 0x42])) is None


def test_text_lines_are_a_sketch_and_a_half_line_is_not_yet() -> None:
    verdict = analyse(b"mp:21.4\r\ntemp:21.5,hum:60\r\n")
    assert verdict is not None and verdict.kind == "lines"
    assert "temp:21.5" in verdict.reason
    assert analyse(b"mp:21.4\r\ntemp:21.") is None, "the first line may be a tail; wait"
    assert analyse(b"\xfe\xf8\n\x80\xc0\xe0\n") is None, "noise is no text"


@given(st.binary(max_size=600).map(lambda b: bytes(x for x in b if x not in (0xF0, 0xF9))))
def test_bytes_without_firmata_messages_are_never_taken_for_firmata(data: bytes) -> None:
    verdict = analyse(data)
    assert verdict is None or verdict.kind == "lines"


# -- the probe on real pseudo-terminals -----------------------------------------------------

def test_a_firmata_board_that_resets_on_open_is_recognised() -> None:
    with VirtualFirmataBoard(reset_on_open=True, boot_delay_s=0.8) as board:
        cpu, wall = time.thread_time(), time.monotonic()
        result = probe(board.url, timeout_s=4.0)
        cpu, wall = time.thread_time() - cpu, time.monotonic() - wall
    assert result.kind == "firmata", result
    assert result.firmware == "StandardFirmata.ino 2.5"
    assert 0.8 <= wall < 3.0, "it waited for the boot, and no longer than needed"
    assert cpu < 0.25 * wall, f"the probe spun while the board booted: {cpu:.2f} s CPU"


def test_a_sketch_printing_lines_is_recognised_without_waiting_out_the_timeout() -> None:
    with VirtualClimateStation(interval_s=0.05) as station:
        started = time.monotonic()
        result = probe(station.url, timeout_s=10.0)
    assert result.kind == "lines" and "prints text lines" in result.reason
    assert time.monotonic() - started < 3.0


def test_a_silent_port_is_read_as_a_sketch_after_the_timeout_without_spinning() -> None:
    master, slave = os.openpty()
    try:
        cpu, wall = time.thread_time(), time.monotonic()
        result = probe(os.ttyname(slave), timeout_s=1.0)
        cpu, wall = time.thread_time() - cpu, time.monotonic() - wall
        sent = os.read(master, 100)
    finally:
        os.close(master)
        os.close(slave)
    assert result.kind == "lines" and "no Firmata answer at 57600 baud" in result.reason
    assert 1.0 <= wall < 1.6
    assert cpu < 0.2, f"{cpu:.2f} s of CPU for a 1 s wait"
    assert sent.startswith(bytes([0xF9, 0xF0, 0x79, 0xF7])), "the queries were sent"
    assert len(sent) >= 8, "and sent again while the board may still be booting"


def test_noise_of_a_wrong_baud_rate_is_not_taken_for_firmata() -> None:
    # A 9600-baud sketch read at 57600 gives bytes made of long runs of equal bits.
    master, slave = os.openpty()
    stop = threading.Event()
    rng = random.Random(7)

    def noise() -> None:
        while not stop.is_set():
            os.write(master, bytes(rng.choice((0x00, 0x80, 0xC0, 0xE0, 0xF8, 0xFC, 0xFE, 0xFF))
                                   for _ in range(64)))
            time.sleep(0.005)

    writer = threading.Thread(target=noise, daemon=True)
    writer.start()
    try:
        result = probe(os.ttyname(slave), timeout_s=1.0)
    finally:
        stop.set()
        writer.join()
        os.close(master)
        os.close(slave)
    assert result.kind == "lines" and "no Firmata answer" in result.reason


def test_a_port_that_vanishes_while_probed_is_a_clear_error() -> None:
    master, slave = os.openpty()
    path = os.ttyname(slave)
    os.close(slave)
    threading.Timer(0.3, os.close, (master,)).start()
    with pytest.raises(PortGoneError, match="failed while probing"):
        probe(path, timeout_s=5.0)


def test_a_port_that_does_not_exist_is_tried_again_with_its_reason_in_the_status() -> None:
    prober = Prober(url="/dev/labhub-no-such-port", device_id="ghost", timeout_s=0.5)
    with prober:
        wait_for(lambda: "cannot open /dev/labhub-no-such-port" in prober.status.message,
                 what="the message")
        assert not prober.status.online and prober.result is None
    assert not prober.running


# -- the supervisor and the hub --------------------------------------------------------------

def test_the_supervisor_reads_each_board_the_way_it_speaks(
    engine: Engine, pipeline: IngestPipeline
) -> None:
    with VirtualFirmataBoard(boot_delay_s=0.3) as board, \
            VirtualClimateStation(interval_s=0.05) as station:
        board.set_analog(0, 512)
        robot_id = discovery.stable_id(vid=None, pid=None, serial_number=None, url=board.url)
        climate_id = discovery.stable_id(vid=None, pid=None, serial_number=None,
                                         url=station.url)
        with Supervisor(engine=engine, pipeline=pipeline, scan_usb=False,
                        configured_ports=[board.url, station.url],
                        default_protocol="auto") as sup:
            wait_for(lambda: isinstance(sup.readers().get(robot_id), FirmataReader)
                     and isinstance(sup.readers().get(climate_id), LineReader),
                     timeout=15, what="both boards identified")
            wait_for(lambda: sup.readers()[robot_id].status.stats.readings > 5
                     and sup.readers()[climate_id].status.stats.readings > 5,
                     timeout=15, what="readings from both")
            wait_for(lambda: _device(engine, robot_id).firmware is not None,
                     what="the firmware recorded")
        robot, climate = _device(engine, robot_id), _device(engine, climate_id)
    assert (robot.kind, climate.kind) == ("firmata", "lines")
    assert robot.settings.protocol == climate.settings.protocol == "auto", \
        "auto stays auto, so the next plug-in asks again"
    assert "StandardFirmata" in (robot.firmware or "")
    with engine.connect() as conn:
        channels = {(s.device, s.channel) for s in queries.list_series(conn=conn)}
    assert (robot_id, "A0") in channels and (climate_id, "temp") in channels


def test_a_board_reflashed_between_two_plug_ins_is_read_the_new_way(
    engine: Engine, database_url: str, tmp_path: object
) -> None:
    """A teacher uploads a climate sketch onto the robot kit's Uno: same USB serial number,
    same device, same name; the hub reads it as lines from the next plug-in on."""
    ports: list[UsbPort] = []
    settings = Settings(data_dir=f"{tmp_path}/data", database_url=database_url,
                        serial_baudrate=115200)
    assert settings.serial_protocol == "auto", "the default for a board never seen"
    hub = Hub(settings, comports=lambda: list(ports)).start()
    try:
        sup = hub.supervisor
        assert sup is not None
        with VirtualFirmataBoard(boot_delay_s=0.2) as board:
            ports.append(UsbPort(board.url, 0x2341, 0x0043, SERIAL))
            wait_for(lambda: isinstance(sup.readers().get(DEVICE_ID), FirmataReader),
                     timeout=15, what="read as Firmata")
            wait_for(lambda: sup.readers()[DEVICE_ID].status.online, timeout=15,
                     what="the Firmata board open")
            ports.clear()
            wait_for(lambda: not _device(engine, DEVICE_ID).online, what="unplugged")
        assert _device(engine, DEVICE_ID).kind == "firmata"
        with VirtualClimateStation(interval_s=0.05) as station:
            ports.append(UsbPort(station.url, 0x2341, 0x0043, SERIAL))
            wait_for(lambda: isinstance(sup.readers().get(DEVICE_ID), LineReader),
                     timeout=15, what="read as a sketch")
            wait_for(lambda: sup.readers()[DEVICE_ID].status.stats.readings > 3,
                     timeout=15, what="climate readings")
            ports.clear()
    finally:
        hub.close()
    device = _device(engine, DEVICE_ID)
    assert device.kind == "lines" and device.settings.protocol == "auto"


def test_a_command_while_the_board_is_identified_says_so(
    engine: Engine, pipeline: IngestPipeline
) -> None:
    master, slave = os.openpty()
    url = os.ttyname(slave)
    device_id = discovery.stable_id(vid=None, pid=None, serial_number=None, url=url)
    try:
        with Supervisor(engine=engine, pipeline=pipeline, scan_usb=False,
                        configured_ports=[url], default_protocol="auto") as sup:
            wait_for(lambda: isinstance(sup.readers().get(device_id), Prober),
                     what="the probe running")
            with pytest.raises(DeviceReopeningError, match="still being identified"):
                sup.command(device_id, "stop_all")
            wait_for(lambda: "identifying the board" in _device(engine, device_id).status,
                     what="the registry saying what the hub is doing")
    finally:
        os.close(master)
        os.close(slave)
