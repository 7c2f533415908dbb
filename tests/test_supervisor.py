"""The device supervisor with real pseudo-terminals, a real pipeline and the registry:
boards found, registered, read, marked offline when pulled, and kept apart when their
serial numbers clash. And the devices API on top of it."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient
from signed_in import as_admin
from sqlalchemy import Engine
from usb import UsbPort
from waiting import wait_for

from firmware_bridge import discovery, registry
from firmware_bridge.actuators import CommandError, OutputSetting
from firmware_bridge.errors import DeviceReopeningError, DeviceUnavailableError, NoSuchDeviceError
from firmware_bridge.firmata import FirmataReader, open_board
from firmware_bridge.registry import DeviceSettings, FirmataSettings
from firmware_bridge.serial_lines import FakeLineTransport, LineTransport
from firmware_bridge.sim import climate
from firmware_bridge.sim.climate import VirtualClimateStation
from firmware_bridge.sim.firmata_board import VirtualFirmataBoard
from firmware_bridge.supervisor import RETRY_AFTER_S, Commanded, Supervisor
from labhub.app import create_app
from labhub.settings import Settings
from labhub.wiring import Hub
from sensors import queries
from sensors.pipeline import IngestPipeline


def _device(engine: Engine, device_id: str) -> registry.Device:
    with engine.connect() as conn:
        return registry.get_device(conn=conn, device_id=device_id)


def test_ids_recognise_boards_and_stay_stable() -> None:
    ports = [
        UsbPort("/dev/ttyACM0", 0x2341, 0x0043, "85736323838351F0D1C1"),
        UsbPort("/dev/ttyUSB0", 0x1A86, 0x7523, None, location="1-1.4:1.0"),
        UsbPort("/dev/ttyUSB1", 0x0BDA, 0x8153, "x"),  # a network adapter, not a board
        UsbPort("/dev/ttyUSB2", 0x10C4, 0xEA60, None),
    ]
    found = discovery.scan(["socket://192.0.2.10:4000"], comports=lambda: ports)
    assert [(p.url, p.device_id, p.chip) for p in found] == [
        ("/dev/ttyACM0", "usb-2341-0043-85736323838351F0D1C1", "Arduino"),
        ("/dev/ttyUSB0", "usb-1a86-7523@1-1.4", "CH340"),
        ("/dev/ttyUSB2", "usb-10c4-ea60@ttyUSB2", "CP210x"),
        ("socket://192.0.2.10:4000", "port-socket_192.0.2.10_4000", None),
    ]


def test_a_configured_virtual_station_is_registered_read_and_marked_offline(
    engine: Engine, pipeline: IngestPipeline
) -> None:
    station = VirtualClimateStation(interval_s=0.02).start()
    try:
        with Supervisor(engine=engine, pipeline=pipeline, configured_ports=[station.url],
                        scan_usb=False, site="VC-LP-014", default_baudrate=115200) as sup:
            device_id = discovery.stable_id(vid=None, pid=None, serial_number=None,
                                            url=station.url)
            wait_for(lambda: device_id in sup.readers()
                     and sup.readers()[device_id].status.stats.readings > 20, what="readings")
            wait_for(lambda: _device(engine, device_id).readings > 0, what="counters")
            device = _device(engine, device_id)
            assert device.online and device.site == "VC-LP-014"
            assert device.settings.baudrate == 115200 and device.kind == "lines"
            pulled = time.monotonic()
            station.unplug()
            wait_for(lambda: not _device(engine, device_id).online, timeout=2.0,
                     what="offline in the registry")
            assert time.monotonic() - pulled < 2.0
    finally:
        station.close()
    pipeline.flush(10)
    with engine.connect() as conn:
        channels = {s.channel for s in queries.list_series(conn=conn, device=device_id)}
    assert channels == {"temp", "hum", "light"}


def test_a_board_keeps_its_id_and_settings_on_another_port(
    engine: Engine, pipeline: IngestPipeline
) -> None:
    ports = [UsbPort("/dev/ttyACM0", 0x2341, 0x0043, "A1B2")]
    opened: dict[str, FakeLineTransport] = {}

    def open_port(url: str, baud: int) -> LineTransport:
        opened[url] = FakeLineTransport()
        return opened[url]

    with Supervisor(engine=engine, pipeline=pipeline, scan_interval_s=0.05,
                    open_transport=open_port, comports=lambda: list(ports)) as sup:
        wait_for(lambda: "/dev/ttyACM0" in opened, what="first port opened")
        with engine.begin() as conn:
            registry.configure(conn=conn, device_id="usb-2341-0043-A1B2", name="Estación 7B",
                               settings=registry.DeviceSettings(baudrate=57600))
        ports[:] = []  # pulled out ...
        wait_for(lambda: not _device(engine, "usb-2341-0043-A1B2").online, what="offline")
        ports[:] = [UsbPort("/dev/ttyACM1", 0x2341, 0x0043, "A1B2")]  # ... back elsewhere
        wait_for(lambda: "/dev/ttyACM1" in opened, what="second port opened")
        wait_for(lambda: _device(engine, "usb-2341-0043-A1B2").online, what="online again")
        device = _device(engine, "usb-2341-0043-A1B2")
        assert (device.port, device.name, device.settings.baudrate) == (
            "/dev/ttyACM1", "Estación 7B", 57600)
        assert sup.readers()["usb-2341-0043-A1B2"].baudrate == 57600


def test_two_boards_with_one_serial_number_are_kept_apart(
    engine: Engine, pipeline: IngestPipeline
) -> None:
    ports = [UsbPort("/dev/ttyUSB0", 0x0403, 0x6001, "0001"),
             UsbPort("/dev/ttyUSB1", 0x0403, 0x6001, "0001")]
    transports: dict[str, FakeLineTransport] = {}

    def open_port(url: str, baud: int) -> LineTransport:
        transports[url] = FakeLineTransport()
        return transports[url]

    with Supervisor(engine=engine, pipeline=pipeline, scan_interval_s=0.05,
                    open_transport=open_port, comports=lambda: ports) as sup:
        wait_for(lambda: len(sup.readers()) == 2 and len(transports) == 2, what="two readers")
        transports["/dev/ttyUSB0"].feed(b"\ntemp:1\n")
        transports["/dev/ttyUSB1"].feed(b"\ntemp:2\n")
        wait_for(lambda: all(r.status.stats.readings == 1 for r in sup.readers().values()),
                 what="a reading from each")
    pipeline.flush(10)
    with engine.connect() as conn:
        devices = {d.id: d for d in registry.list_devices(conn=conn)}
        values = {s.device: queries.latest(conn=conn, series_ids=[s.id])[s.id].value
                  for s in queries.list_series(conn=conn)}
    assert set(devices) == {"usb-0403-6001-0001", "usb-0403-6001-0001@ttyUSB1"}
    assert "same USB serial number" in devices["usb-0403-6001-0001@ttyUSB1"].status
    assert values == {"usb-0403-6001-0001": 1.0, "usb-0403-6001-0001@ttyUSB1": 2.0}


def test_devices_api_shows_and_configures_a_virtual_station(
    database_url: str, tmp_path: object
) -> None:
    with VirtualClimateStation(interval_s=0.02) as station:
        settings = Settings(database_url=database_url, data_dir=f"{tmp_path}/data",
                            serial_scan=False, serial_ports=[station.url])
        with as_admin(TestClient(create_app(settings))) as client:
            wait_for(lambda: any(s["device"].startswith("port-")
                                 for s in client.get("/api/v1/series").json()),
                     what="series of the station")
            devices = client.get("/api/v1/devices").json()
            assert len(devices) == 1 and devices[0]["online"]
            device_id = devices[0]["id"]
            r = client.patch(f"/api/v1/devices/{device_id}", json={
                "name": "Estación del patio",
                "settings": {"channels": {"light": {"name": "luz", "quantity": "light_level",
                                                    "calibration": {"sensor": "ldr"}}}}})
            assert r.status_code == 200, r.text
            assert r.json()["name"] == "Estación del patio"
            wait_for(lambda: any(s["channel"] == "luz" and s["latest_value"] is not None
                                 for s in client.get("/api/v1/series").json()),
                     what="a reading of the renamed channel")
            luz = next(s for s in client.get("/api/v1/series").json() if s["channel"] == "luz")
            assert luz["quantity"] == "light_level" and luz["unit"] == "%"
            assert 0 <= luz["latest_value"] <= 100
            bad = client.patch(f"/api/v1/devices/{device_id}",
                               json={"settings": {"baudrate": 7}})
            assert bad.status_code == 422 and "baudrate" in bad.json()["detail"]
            bad = client.patch(f"/api/v1/devices/{device_id}", json={"settings": {
                "channels": {"A0": {"calibration": {"sensor": "dht99"}}}}})
            assert bad.status_code == 422 and "dht99" in bad.json()["detail"]
            assert client.get("/api/v1/devices/nope").status_code == 404


# -- commands while a board is reopened ----------------------------------------------------

SERVO = {9: OutputSetting(kind="servo", min_angle=0, max_angle=180, safe=90)}


def _robot(**kw: object) -> DeviceSettings:
    """A Firmata robot kit with a servo on pin 9 and no inputs (no readings to store)."""
    firmata = {"reset_wait_s": 0.3, "sampling_ms": 50, "analog_pins": [], "outputs": SERVO}
    firmata.update(kw)
    return DeviceSettings(protocol="firmata", firmata=FirmataSettings.model_validate(firmata))


class GatedOpen:
    """Opens boards with the real factory, but only while ``gate`` is open: a board whose
    port takes as long to open as the test says. Counts the opens begun and waiting."""

    def __init__(self) -> None:
        self.gate = threading.Event()
        self.gate.set()
        self._lock = threading.Lock()
        self.begun = 0
        self.waiting = 0

    def __call__(self, url: str, baudrate: int) -> Any:
        with self._lock:
            self.begun += 1
            self.waiting += 1
        try:
            self.gate.wait(30)
        finally:
            with self._lock:
                self.waiting -= 1
        return open_board(url, baudrate)


def _firmata_ready(sup: Supervisor, device_id: str) -> bool:
    reader = sup.readers().get(device_id)
    return isinstance(reader, FirmataReader) and reader.status.online


def _reconfigure(engine: Engine, sup: Supervisor, device_id: str,
                 settings: DeviceSettings) -> None:
    """What a PATCH of the device's settings does: commit them, then reopen the board."""
    with engine.begin() as conn:
        registry.configure(conn=conn, device_id=device_id, settings=settings)
    sup.reconfigure(device_id)


def test_a_command_during_a_reopen_waits_for_the_board_or_is_told_when_to_retry(
    engine: Engine, pipeline: IngestPipeline
) -> None:
    opener = GatedOpen()
    with VirtualFirmataBoard() as board, Supervisor(
        engine=engine, pipeline=pipeline, scan_usb=False, scan_interval_s=0.05,
        open_firmata=opener, command_wait_s=20,
    ) as sup:
        sup.add_port(board.url, defaults=_robot())
        device_id = discovery.stable_id(vid=None, pid=None, serial_number=None, url=board.url)
        wait_for(lambda: _firmata_ready(sup, device_id), timeout=15, what="the board open")
        assert board.wait_for(lambda: board.servo_angles.get(9) == 90, timeout=15)

        # New settings: the board is reopened, and its port takes a while to open.
        opener.gate.clear()
        _reconfigure(engine, sup, device_id, _robot(sampling_ms=40))
        wait_for(lambda: opener.waiting == 1, what="the board being reopened")
        done: list[object] = []
        sender = threading.Thread(
            target=lambda: done.append(_try(lambda: sup.command(device_id, "servo", 9, 45))))
        sender.start()
        sender.join(0.3)
        assert not done, f"answered before the board was open again: {done}"
        opener.gate.set()
        sender.join(20)
        assert len(done) == 1 and isinstance(done[0], Commanded), done
        assert [(w.pin, w.value) for w in done[0].writes] == [(9, 45.0)]
        assert done[0].outputs == {9: 45.0}
        assert board.wait_for(lambda: board.servo_angles.get(9) == 45, timeout=15)

        # A reopen that outlasts the command's wait: one answer, saying when to retry.
        sup.command_wait_s = 0.3
        opener.gate.clear()
        _reconfigure(engine, sup, device_id, _robot(sampling_ms=30))
        for _ in range(3):  # whether the scan has adopted the board yet or not
            with pytest.raises(DeviceReopeningError, match=r"being (re)?opened") as refused:
                sup.command(device_id, "stop_all")
            assert refused.value.retry_after_s == RETRY_AFTER_S
        opener.gate.set()
        wait_for(lambda: _firmata_ready(sup, device_id), timeout=15, what="open again")
        assert [w.value for w in sup.command(device_id, "stop_all").writes] == [90.0]


def _try(call: Callable[[], object]) -> object:
    try:
        return call()
    except Exception as exc:
        return exc


def test_a_reconfigured_board_is_opened_by_one_reader_at_a_time(
    engine: Engine, pipeline: IngestPipeline
) -> None:
    """Two readers on one port split its bytes between them: the new reader may not open
    the port before the old one has closed it."""
    opener = GatedOpen()
    opener.gate.clear()  # the first open hangs (a board that is slow to reset)
    with VirtualFirmataBoard() as board, Supervisor(
        engine=engine, pipeline=pipeline, scan_usb=False, scan_interval_s=0.05,
        open_firmata=opener,
    ) as sup:
        sup.add_port(board.url, defaults=_robot())
        device_id = discovery.stable_id(vid=None, pid=None, serial_number=None, url=board.url)
        wait_for(lambda: opener.waiting == 1, what="the first open")
        patch = threading.Thread(
            target=_reconfigure, args=(engine, sup, device_id, _robot(sampling_ms=40)))
        patch.start()
        time.sleep(0.5)  # ten scans
        assert opener.begun == 1, "a second reader opened the port the first still holds"
        opener.gate.set()
        patch.join(20)
        wait_for(lambda: _firmata_ready(sup, device_id), timeout=15, what="the board open")
        assert opener.begun == 2
        reader = sup.readers()[device_id]
        assert isinstance(reader, FirmataReader) and reader.settings.sampling_ms == 40


def test_settings_changed_while_the_board_is_adopted_are_the_ones_it_runs_with(
    engine: Engine, pipeline: IngestPipeline
) -> None:
    """A PATCH that lands between the scan reading the registry and starting the reader
    must not leave the board running with the settings from before the PATCH."""
    patched = threading.Event()
    holder: list[Supervisor] = []

    def on_online(device: registry.Device) -> None:  # runs inside the adoption
        if not patched.is_set():
            patched.set()
            _reconfigure(engine, holder[0], device.id, _robot())

    with VirtualFirmataBoard() as board, Supervisor(
        engine=engine, pipeline=pipeline, scan_usb=False, scan_interval_s=0.05,
        on_online=on_online,
    ) as sup:
        holder.append(sup)
        sup.add_port(board.url, defaults=_robot(outputs={}))  # no outputs declared yet
        device_id = discovery.stable_id(vid=None, pid=None, serial_number=None, url=board.url)
        wait_for(lambda: _firmata_ready(sup, device_id), timeout=15, what="the board open")
        assert patched.is_set()
        assert [w.value for w in sup.command(device_id, "servo", 9, 30).writes] == [30.0]


def test_commands_name_the_device_and_the_site_they_may_reach(
    engine: Engine, pipeline: IngestPipeline
) -> None:
    with engine.begin() as conn:
        registry.record_seen(conn=conn, device_id="robot-1", kind="firmata", site="VC-LP-014")
        registry.record_seen(conn=conn, device_id="robot-2", kind="firmata")
    with Supervisor(engine=engine, pipeline=pipeline, scan_usb=False, site="HUB-SITE") as sup:
        with pytest.raises(NoSuchDeviceError, match="no device with id 'ghost'"):
            sup.command("ghost", "stop_all")
        with pytest.raises(NoSuchDeviceError):
            sup.outputs("ghost")
        with pytest.raises(DeviceUnavailableError, match="not connected"):
            sup.command("robot-1", "stop_all")
        with pytest.raises(CommandError, match="at site 'VC-LP-014', not 'OTHER'"):
            sup.command("robot-1", "stop_all", site="OTHER")
        with pytest.raises(DeviceUnavailableError, match="not connected"):
            sup.command("robot-1", "stop_all", site="VC-LP-014")
        # A device placed at no site stands at the hub's.
        with pytest.raises(CommandError, match="at site 'HUB-SITE'"):
            sup.command("robot-2", "stop_all", site="VC-LP-014")
        with pytest.raises(NoSuchDeviceError):
            sup.command("ghost", "stop_all", site="VC-LP-014")


def test_a_kit_attached_later_joins_the_one_supervisor_the_settings_describe(
    database_url: str, tmp_path: object
) -> None:
    """``labhub demo`` attaches its virtual kits to the hub ``labhub serve`` builds: the
    ports, the default protocol and baud rate of the settings hold for them too."""
    with VirtualClimateStation(interval_s=0.05) as station, VirtualFirmataBoard() as board:
        settings = Settings(database_url=database_url, data_dir=f"{tmp_path}/data",
                            serial_scan=False, serial_protocol="firmata",
                            serial_baudrate=115200)
        hub = Hub(settings).start()
        try:
            assert hub.supervisor is None  # no port to watch yet
            hub.attach(station.url, DeviceSettings(protocol="lines", baudrate=115200))
            sup = hub.supervisor
            assert sup is not None
            assert (sup.default_protocol, sup.default_baudrate) == ("firmata", 115200)
            hub.attach(board.url, _robot())
            assert hub.supervisor is sup
            station_id = discovery.stable_id(vid=None, pid=None, serial_number=None,
                                             url=station.url)
            board_id = discovery.stable_id(vid=None, pid=None, serial_number=None,
                                           url=board.url)
            wait_for(lambda: _firmata_ready(sup, board_id), timeout=15, what="the robot")
            wait_for(lambda: station_id in sup.readers()
                     and sup.readers()[station_id].status.stats.readings > 0,
                     timeout=15, what="the station's readings")
            assert [w.value for w in hub.command(board_id, "stop_all").writes] == [90.0]
        finally:
            hub.close()


def test_a_replugged_virtual_station_is_plugged_only_once_its_new_url_is_known(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A reader that sees the station plugged opens its URL at once: the old URL's pty
    number may by then belong to another process, whose port it would hold locked."""
    seen: list[tuple[bool, str]] = []
    real_ttyname = os.ttyname

    def ttyname(fd: int) -> str:  # the moment the new pty exists but is not yet named
        seen.append((station.plugged, station.url))
        return real_ttyname(fd)

    station = VirtualClimateStation(interval_s=1.0)
    try:
        old = station.url
        station.unplug()
        monkeypatch.setattr(climate.os, "ttyname", ttyname)
        new = station.replug()
        assert seen == [(False, old)], "plugged while the URL was still the old one"
        assert station.plugged and station.url == new
    finally:
        station.close()
