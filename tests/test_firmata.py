"""Firmata boards end to end: the Firmata reader on a real pseudo-terminal against the
virtual StandardFirmata board and against a scripted one (byte for byte), readings into
the pipeline, commands out, and the hub never frozen or spinning while a board resets."""

from __future__ import annotations

import itertools
import os
import select
import time
import tty
from collections.abc import Callable, Iterator

import pytest
from fastapi.testclient import TestClient
from signed_in import as_admin
from sqlalchemy import Engine
from waiting import wait_for as _wait_for

from firmware_bridge.actuators import CommandError, OutputSetting
from firmware_bridge.firmata import FirmataError, FirmataReader
from firmware_bridge.firmata_protocol import QUERY_FIRMWARE, QUERY_VERSION, firmware_report
from firmware_bridge.registry import FirmataSettings
from firmware_bridge.sim.firmata_board import VirtualFirmataBoard
from labhub.app import create_app
from labhub.settings import Settings
from sensors import queries
from sensors.channels import ChannelMap, ChannelRule, StaticChannelMaps
from sensors.pipeline import IngestPipeline

OUTPUTS = {
    13: OutputSetting(kind="digital", label="LED"),
    5: OutputSetting(kind="pwm", label="motor"),
    9: OutputSetting(kind="servo", min_angle=20, max_angle=160, safe=90, label="arm"),
}



def wait_for(check: Callable[[], bool], timeout: float = 15.0, what: str = "condition") -> None:
    """As waiting.wait_for, with more time: a board resets before it answers."""
    _wait_for(check, timeout, what)


@pytest.fixture
def board() -> Iterator[VirtualFirmataBoard]:
    with VirtualFirmataBoard() as b:
        yield b


def _settings(**kw: object) -> FirmataSettings:
    base: dict[str, object] = {"sampling_ms": 20, "analog_pins": [0, 1], "outputs": OUTPUTS,
                               "reset_wait_s": 0.3}
    base.update(kw)
    return FirmataSettings.model_validate(base)


def test_pins_become_readings_and_commands_reach_the_board(
    board: VirtualFirmataBoard, pipeline: IngestPipeline, engine: Engine,
    channel_maps: StaticChannelMaps,
) -> None:
    # The device's channel map (applied by the pipeline) renames and calibrates A1.
    channel_maps.set("robot", ChannelMap({"A1": ChannelRule(name="light",
                                                            calibration=lambda x: x / 10)}))
    board.set_analog(0, 512)
    board.set_analog(1, 100)
    with FirmataReader(url=board.url, device_id="robot", pipeline=pipeline,
                       settings=_settings()) as reader:
        wait_for(lambda: reader.status.online, what="online")
        assert reader.status.firmware is not None and "StandardFirmata" in reader.status.firmware
        # The board takes the hub's SAMPLING_INTERVAL in its own thread, perhaps just after
        # the hub calls itself online.
        assert board.wait_for(lambda: board.sampling_interval_ms == 20, timeout=15)
        # Outputs start at their safe values.
        assert board.wait_for(lambda: board.servo_angles.get(9) == 90, timeout=15)
        wait_for(lambda: reader.status.stats.readings >= 20, what="readings")

        writes = reader.command("servo", 9, 200)
        assert (writes[0].value, writes[0].clamped) == (160.0, True)
        assert board.wait_for(lambda: board.servo_angles.get(9) == 160, timeout=15)
        reader.command("digital_write", 13, 1)
        assert board.wait_for(lambda: board.outputs.get(13) == 1, timeout=15)
        reader.command("pwm", 5, 0.5)
        assert board.wait_for(lambda: board.pwm.get(5) in (127, 128), timeout=15)
        assert reader.status.outputs == {13: 1.0, 5: 0.5, 9: 160.0}
        with pytest.raises(CommandError, match="pin 7 is not declared"):
            reader.command("digital_write", 7, 1)
        reader.command("stop_all")
        assert board.wait_for(lambda: board.servo_angles.get(9) == 90
                              and board.outputs.get(13) == 0 and board.pwm.get(5) == 0,
                              timeout=15)
    pipeline.flush(10)
    with engine.connect() as conn:
        series = {s.channel: s for s in queries.list_series(conn=conn, device="robot")}
        a0 = queries.read_range(conn=conn, series_id=series["A0"].id)
        light = queries.read_range(conn=conn, series_id=series["light"].id)
    assert series["A0"].quantity == "analog" and {v for _, v, _ in a0} == {512.0}
    assert {v for _, v, _ in light} == {10.0}


def test_opening_a_board_neither_blocks_nor_spins(
    board: VirtualFirmataBoard, pipeline: IngestPipeline
) -> None:
    started = time.monotonic()
    cpu = time.process_time()
    reader = FirmataReader(url=board.url, device_id="slow", pipeline=pipeline,
                           settings=_settings(reset_wait_s=1.5)).start()
    try:
        assert time.monotonic() - started < 0.2, "start() waited for the board"
        time.sleep(1.2)  # inside the reset wait
        used = time.process_time() - cpu
        assert used < 0.5, f"{used:.2f} s of CPU while a board reset (pyfirmata2 spins 5 s)"
        wait_for(lambda: reader.status.online, what="online after the reset wait")
    finally:
        reader.stop()


def test_a_board_that_never_answers_is_reported(pipeline: IngestPipeline) -> None:
    with VirtualFirmataBoard(silent=True) as mute, FirmataReader(
        url=mute.url, device_id="mute", pipeline=pipeline, settings=_settings(reset_wait_s=0.1)
    ) as reader:
        wait_for(lambda: "no Firmata answer" in reader.status.message, what="the message")
        assert not reader.status.online
        with pytest.raises(FirmataError, match="not connected"):
            reader.command("stop_all")


def test_a_pin_the_boards_layout_lacks_is_refused_by_name(
    board: VirtualFirmataBoard, pipeline: IngestPipeline
) -> None:
    with FirmataReader(url=board.url, device_id="uno", pipeline=pipeline,
                       settings=_settings(analog_pins=[0, 7])) as reader:
        wait_for(lambda: "A7 is not on an arduino board" in reader.status.message,
                 what="the message")
        assert not reader.status.online and reader.status.stats.readings == 0


def test_a_pulled_cable_marks_the_board_offline(
    board: VirtualFirmataBoard, pipeline: IngestPipeline
) -> None:
    with FirmataReader(url=board.url, device_id="robot", pipeline=pipeline,
                       settings=_settings()) as reader:
        wait_for(lambda: reader.status.online, what="online")
        pulled = time.monotonic()
        board.unplug()
        wait_for(lambda: not reader.status.online, timeout=2.0, what="offline")
        assert time.monotonic() - pulled < 2.0


def test_a_servo_command_through_the_api_reaches_the_virtual_board(
    board: VirtualFirmataBoard, database_url: str, tmp_path: object
) -> None:
    settings = Settings(database_url=database_url, data_dir=f"{tmp_path}/data",
                        serial_scan=False, firmata_ports=[board.url])
    with as_admin(TestClient(create_app(settings))) as client:
        wait_for(lambda: len(client.get("/api/v1/devices").json()) == 1, what="registered")
        device = client.get("/api/v1/devices").json()[0]
        assert device["kind"] == "firmata"
        firmata = {"reset_wait_s": 0.3, "sampling_ms": 50, "analog_pins": [0],
                   "outputs": {"9": {"kind": "servo", "min_angle": 10, "max_angle": 170,
                                     "safe": 90}}}
        r = client.patch(f"/api/v1/devices/{device['id']}", json={"settings": {
            "protocol": "firmata", "firmata": firmata}})
        assert r.status_code == 200, r.text

        def online() -> bool:
            return bool(client.get(f"/api/v1/devices/{device['id']}").json()["online"])

        def commanded() -> int:
            r = client.post(f"/api/v1/devices/{device['id']}/commands",
                            json={"command": "servo", "pin": 9, "value": 45})
            return r.status_code

        wait_for(lambda: online() and commanded() == 200, what="a command accepted")
        assert board.wait_for(lambda: board.servo_angles.get(9) == 45, timeout=15)
        assert client.get(f"/api/v1/devices/{device['id']}/outputs").json() == {"9": 45.0}
        r = client.post(f"/api/v1/devices/{device['id']}/commands",
                        json={"command": "digital_write", "pin": 13, "value": 1})
        assert r.status_code == 422 and "not declared" in r.json()["detail"]
        wait_for(lambda: any(s["channel"] == "A0" for s in client.get("/api/v1/series").json()),
                 what="analog readings")
        assert "StandardFirmata" in (client.get(f"/api/v1/devices/{device['id']}").json()
                                     ["firmware"] or "")


def test_two_boards_keep_their_own_readings(pipeline: IngestPipeline, engine: Engine) -> None:
    with VirtualFirmataBoard() as one, VirtualFirmataBoard() as two:
        one.set_analog(0, 100)
        two.set_analog(0, 900)
        with FirmataReader(url=one.url, device_id="kit-1", pipeline=pipeline,
                           settings=_settings(analog_pins=[0])) as r1, FirmataReader(
            url=two.url, device_id="kit-2", pipeline=pipeline, settings=_settings(analog_pins=[0])
        ) as r2:
            wait_for(lambda: r1.status.stats.readings >= 10 and r2.status.stats.readings >= 10,
                     what="readings from both boards")
    pipeline.flush(10)
    with engine.connect() as conn:
        values = {}
        for device in ("kit-1", "kit-2"):
            sid = queries.get_series(conn=conn, device=device, channel="A0").id
            values[device] = {v for _, v, _ in queries.read_range(conn=conn, series_id=sid)}
    assert values == {"kit-1": {100.0}, "kit-2": {900.0}}


# -- the reader against a scripted board, byte for byte ---------------------------------------

# What the reader must send once the board has answered, written out by hand from the
# protocol: the sampling interval, the outputs by pin number in their modes at their safe
# values, the digital input and its port's reporting, then the analog reporting.
SETUP = bytes.fromhex(
    "f0 7a 14 00 f7"  # SAMPLING_INTERVAL 20 ms
    " f4 05 03  e5 00 00"  # pin 5 PWM, duty 0
    " f0 70 09 20 04 60 12 f7  e9 5a 00"  # servo on 9 (544..2400 us), at 90 degrees
    " f4 0d 01  91 00 00"  # pin 13 OUTPUT, port 1 all low
    " f4 02 00  d0 01"  # pin 2 INPUT, report port 0
    " c0 01  c1 01"  # report A0, A1
)


class ScriptedBoard:
    """The board's end of a real pseudo-terminal, written and read by the test."""

    def __init__(self) -> None:
        self.master, self.slave = os.openpty()
        tty.setraw(self.master)
        tty.setraw(self.slave)
        self.url = os.ttyname(self.slave)
        self.buffer = bytearray()

    def expect(self, expected: bytes, timeout: float = 10.0) -> None:
        """The next bytes from the host are exactly ``expected``."""
        deadline = time.monotonic() + timeout
        while len(self.buffer) < len(expected) and (left := deadline - time.monotonic()) > 0:
            if select.select([self.master], [], [], left)[0]:
                self.buffer += os.read(self.master, 4096)
        got = bytes(self.buffer[:len(expected)])
        del self.buffer[:len(expected)]
        assert got.hex(" ") == expected.hex(" ")

    def send(self, data: bytes) -> None:
        os.write(self.master, data)

    def close(self) -> None:
        os.close(self.master)
        os.close(self.slave)


def test_the_reader_speaks_firmata_byte_for_byte(
    pipeline: IngestPipeline, engine: Engine
) -> None:
    board = ScriptedBoard()
    settings = _settings(reset_wait_s=0, digital_inputs=[2])
    try:
        with FirmataReader(url=board.url, device_id="scripted", pipeline=pipeline,
                           settings=settings) as reader:
            board.expect(QUERY_VERSION + QUERY_FIRMWARE)
            board.send(bytes.fromhex("f9 02 05") + firmware_report("Scripted", 2, 5))
            board.expect(SETUP)
            wait_for(lambda: reader.status.online, what="online")
            assert reader.status.firmware == "Scripted 2.5"
            assert reader.status.outputs == {5: 0.0, 9: 90.0, 13: 0.0}

            # Three sampling intervals' reports read in one chunk, and pin 2 going high:
            # the last report of each pin is stamped at the chunk's arrival, each earlier
            # one an interval (20 ms) before the next.
            board.send(bytes.fromhex("e0 00 04 e1 64 00" * 3 + "90 04 00"))
            wait_for(lambda: reader.status.stats.readings >= 7, what="the chunk's readings")

            reader.command("digital_write", 13, 1)
            board.expect(bytes.fromhex("91 20 00"))  # pin 13 is bit 5 of port 1
            reader.command("pwm", 5, 0.5)
            board.expect(bytes.fromhex("e5 00 01"))  # round(0.5 * 255) = 128
            reader.command("servo", 9, 200)
            board.expect(bytes.fromhex("e9 20 01"))  # clamped to 160 degrees
        board.expect(bytes.fromhex("e5 00 00  e9 5a 00  91 00 00"))  # stop_all on stopping
    finally:
        board.close()
    pipeline.flush(10)
    with engine.connect() as conn:
        stored = {s.channel: queries.read_range(conn=conn, series_id=s.id)
                  for s in queries.list_series(conn=conn, device="scripted")}
    assert {ch: [v for _, v, _ in rows] for ch, rows in stored.items()} == {
        "A0": [512.0] * 3, "A1": [100.0] * 3, "D2": [1.0]}
    a0 = [ts for ts, _, _ in stored["A0"]]
    assert [b - a for a, b in itertools.pairwise(a0)] == [20_000, 20_000]
    assert [ts for ts, _, _ in stored["A1"]] == a0
    assert [ts for ts, _, _ in stored["D2"]] == a0[-1:], "digital: stamped at the arrival"
