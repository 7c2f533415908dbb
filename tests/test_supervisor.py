"""The device supervisor with real pseudo-terminals, a real pipeline and the registry:
boards found, registered, read, marked offline when pulled, and kept apart when their
serial numbers clash. And the devices API on top of it."""

from __future__ import annotations

import time

from fastapi.testclient import TestClient
from sqlalchemy import Engine
from usb import UsbPort
from waiting import wait_for

from firmware_bridge import discovery, registry
from firmware_bridge.serial_lines import FakeLineTransport, LineTransport
from firmware_bridge.sim.climate import VirtualClimateStation
from firmware_bridge.supervisor import Supervisor
from labhub.app import create_app
from labhub.settings import Settings
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
        with TestClient(create_app(settings)) as client:
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
