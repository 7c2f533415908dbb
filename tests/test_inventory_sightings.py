"""Boards meet their assets: a hub with a site reads a real pseudo-terminal board that has
a USB serial number, and the asset with that serial number gets an AssetSighted event at
the hub's site, on every backend. A board no asset knows, and a hub without a site,
write nothing; the board is read either way."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from sqlalchemy import Engine
from usb import UsbPort
from waiting import wait_for

from firmware_bridge import registry
from firmware_bridge.serial_lines import FakeLineTransport, LineTransport
from firmware_bridge.supervisor import Supervisor
from inventory import assets, catalog, sites
from inventory.history import history_of
from labhub.settings import Settings
from labhub.wiring import Hub
from sensors.pipeline import IngestPipeline
from sensors.storage import ReadingStore

BY = "Ana"
UNO_SERIAL = "85736323838351F0D1C1"
UNO_ID = f"usb-2341-0043-{UNO_SERIAL}"
STRANGER_ID = "usb-2341-0043-99999999999999999999"


@pytest.fixture
def ptys() -> Iterator[list[tuple[int, int]]]:
    pairs = [os.openpty(), os.openpty()]
    yield pairs
    for master, slave in pairs:
        os.close(master)
        os.close(slave)


@pytest.fixture
def lab(engine: Engine) -> Engine:
    with engine.begin() as conn:
        sites.create_site(conn=conn, code="VL", name="ValleLabs", kind="network", by=BY)
        sites.create_site(conn=conn, code="VL-R1", name="Valle", kind="region",
                          parent_code="VL", by=BY)
        for code in ("VL-LC-01", "VL-LP-014"):
            sites.create_site(conn=conn, code=code, name=code, kind="site",
                              parent_code="VL-R1", tier="lab_point", by=BY)
        catalog.create_model(conn=conn, code="ARD-UNO-R3", name="Arduino Uno R3",
                             category="microcontroller_board", by=BY)
        assets.register_asset(conn=conn, tag="VC-0001", model_code="ARD-UNO-R3",
                              site_code="VL-LC-01", serial_number=UNO_SERIAL, by=BY)
    return engine


def _sightings(engine: Engine, tag: str = "VC-0001") -> list[object]:
    with engine.connect() as conn:
        return [e for e in history_of(conn=conn, subject=tag) if e.kind == "AssetSighted"]


def _device(engine: Engine, device_id: str) -> registry.Device | None:
    with engine.connect() as conn:
        return registry.find_device(conn=conn, device_id=device_id)


def test_a_board_online_at_the_hub_is_a_sighting_of_its_asset(
    lab: Engine, database_url: str, tmp_path: object, ptys: list[tuple[int, int]],
) -> None:
    (uno_master, uno_slave), (_other_master, other_slave) = ptys
    ports = [UsbPort(os.ttyname(uno_slave), 0x2341, 0x0043, UNO_SERIAL),
             UsbPort(os.ttyname(other_slave), 0x2341, 0x0043, STRANGER_ID.rsplit("-", 1)[1])]
    # protocol "lines": the test types a line on the pty, which a Firmata probe would read.
    settings = Settings(data_dir=f"{tmp_path}/data", database_url=database_url,
                        site="VL-LP-014", serial_baudrate=115200, serial_protocol="lines")
    hub = Hub(settings, comports=lambda: ports).start()
    try:
        assert hub.supervisor is not None
        wait_for(lambda: len(hub.supervisor.readers()) == 2, what="both boards read")  # type: ignore[union-attr]
        wait_for(lambda: len(_sightings(lab)) == 1, what="the sighting")
        # The board is read like any other: a line typed on its pty becomes a reading.
        wait_for(lambda: hub.supervisor.readers()[UNO_ID].status.online,  # type: ignore[union-attr]
                 what="port open")
        os.write(uno_master, b"\ntemp:21.5\n")
        wait_for(lambda: hub.supervisor.readers()[UNO_ID].status.stats.readings == 1,  # type: ignore[union-attr]
                 what="a reading from the board")
    finally:
        hub.close()
    [event] = _sightings(lab)
    device = _device(lab, UNO_ID)
    assert device is not None and device.serial_number == UNO_SERIAL
    assert (event.site_code, event.by, event.at) == ("VL-LP-014", UNO_ID,  # type: ignore[attr-defined]
                                                     device.first_seen)
    assert event.to_state == {"seen_at_site": "VL-LP-014",  # type: ignore[attr-defined]
                              "serial_number": UNO_SERIAL}
    with lab.connect() as conn:
        asset = assets.get_asset(conn=conn, tag="VC-0001")
    assert asset.site_code == "VL-LC-01", "a sighting does not move the asset"
    assert _device(lab, STRANGER_ID) is not None, "the unknown board was registered and read"


def test_a_hub_without_a_site_records_no_sighting(
    lab: Engine, database_url: str, tmp_path: object, ptys: list[tuple[int, int]],
) -> None:
    (_master, slave), _other = ptys
    ports = [UsbPort(os.ttyname(slave), 0x2341, 0x0043, UNO_SERIAL)]
    settings = Settings(data_dir=f"{tmp_path}/data", database_url=database_url)
    hub = Hub(settings, comports=lambda: ports).start()
    try:
        wait_for(lambda: _device(lab, UNO_ID) is not None, what="the board registered")
    finally:
        hub.close()
    assert _sightings(lab) == []


def test_a_hub_site_unknown_to_the_inventory_is_logged_not_fatal(
    lab: Engine, database_url: str, tmp_path: object, ptys: list[tuple[int, int]],
    caplog: pytest.LogCaptureFixture,
) -> None:
    (_master, slave), _other = ptys
    ports = [UsbPort(os.ttyname(slave), 0x2341, 0x0043, UNO_SERIAL)]
    settings = Settings(data_dir=f"{tmp_path}/data", database_url=database_url,
                        site="VL-NOWHERE")
    hub = Hub(settings, comports=lambda: ports).start()
    try:
        wait_for(lambda: "no site with code 'VL-NOWHERE'" in caplog.text,
                 what="the warning")
        assert hub.supervisor is not None and UNO_ID in hub.supervisor.readers()
    finally:
        hub.close()
    assert _sightings(lab) == []
    assert "sighting of board usb-2341-0043-85736323838351F0D1C1 at site VL-NOWHERE not " \
           "recorded" in caplog.text


def test_a_failing_on_online_callback_does_not_stop_the_board(
    engine: Engine, caplog: pytest.LogCaptureFixture,
) -> None:
    seen: list[registry.Device] = []

    def on_online(device: registry.Device) -> None:
        seen.append(device)
        raise RuntimeError("inventory is down")

    transports: dict[str, FakeLineTransport] = {}

    def open_port(url: str, baud: int) -> LineTransport:
        transports[url] = FakeLineTransport()
        return transports[url]

    ports = [UsbPort("/dev/ttyACM0", 0x2341, 0x0043, UNO_SERIAL)]
    with IngestPipeline(ReadingStore(engine), flush_interval_s=0.02) as pipeline, Supervisor(
        engine=engine, pipeline=pipeline, scan_interval_s=0.05, open_transport=open_port,
        comports=lambda: ports, on_online=on_online,
    ) as sup:
        wait_for(lambda: "/dev/ttyACM0" in transports, what="port opened")
        transports["/dev/ttyACM0"].feed(b"\ntemp:1\n")
        wait_for(lambda: sup.readers()[UNO_ID].status.stats.readings == 1, what="a reading")
    assert [(d.id, d.serial_number, d.online) for d in seen] == [(UNO_ID, UNO_SERIAL, True)]
    assert f"the on_online callback failed for {UNO_ID}" in caplog.text
