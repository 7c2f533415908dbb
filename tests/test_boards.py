"""A board keeps its name, and a reading keeps its lab: stable ids and readable names for
boards and virtual kits, identifying a board again when it changed, ports changed while
the hub runs, device sites that are sites of the lab, quantities guessed only with a
known unit, and messages a teacher can act on. Real pseudo-terminals, real databases."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from signed_in import as_admin
from sqlalchemy import Engine
from usb import UsbPort
from waiting import wait_for

from firmware_bridge import discovery, registry
from firmware_bridge.firmata import FirmataReader
from firmware_bridge.probe import Prober
from firmware_bridge.registry import DeviceSettings, FirmataSettings
from firmware_bridge.serial_lines import LineReader, PortGoneError, SerialTransport
from firmware_bridge.sim.climate import VirtualClimateStation
from firmware_bridge.sim.firmata_board import VirtualFirmataBoard
from firmware_bridge.supervisor import Supervisor
from inventory import sites
from labhub.app import create_app
from labhub.settings import ConfigFileMissingError, Settings
from labhub.wiring import Hub
from sensors import queries
from sensors.pipeline import IngestPipeline
from sensors.samples import Sample
from sensors.storage import ReadingStore


def _device(engine: Engine, device_id: str) -> registry.Device:
    with engine.connect() as conn:
        return registry.get_device(conn=conn, device_id=device_id)


def _port_id(url: str) -> str:
    return discovery.stable_id(vid=None, pid=None, serial_number=None, url=url)


class IdStation(VirtualClimateStation):
    """A climate sketch that prints its own id line every few lines."""

    def __init__(self, sketch_id: str = "climate-7B", name: str = "Estación 7B",
                 **kw: Any) -> None:
        super().__init__(**kw)
        self.id_line = f"#id:{sketch_id} {name}\r\n".encode()

    def line(self) -> bytes:
        line = super().line()
        return self.id_line + line if self.lines_sent % 3 == 0 else line


# -- ids and names ---------------------------------------------------------------------------


def test_virtual_kits_keep_their_ids_and_names_whatever_pty_they_get(
    engine: Engine, pipeline: IngestPipeline
) -> None:
    """Two starts of the demo: new pty numbers, the same two devices, each read its way."""
    first = VirtualClimateStation(interval_s=0.05)
    second = VirtualClimateStation(interval_s=0.05)  # both open: their ptys differ
    try:
        assert first.url != second.url
        for station in (first, second):
            station.start()
            with Supervisor(engine=engine, pipeline=pipeline, scan_usb=False,
                            scan_interval_s=0.05) as sup:
                sup.add_port(station.url, defaults=DeviceSettings(protocol="lines"),
                             device_id=station.kit_id, name=station.name)
                kit = station.kit_id
                wait_for(lambda: kit in sup.readers()  # noqa: B023 -- used at once
                         and sup.readers()[kit].status.stats.readings > 3,  # noqa: B023
                         what="the station read under its own id")
            station.close()
    finally:
        first.close()
        second.close()
    with engine.connect() as conn:
        devices = registry.list_devices(conn=conn)
    assert [(d.id, d.name, d.port) for d in devices] == [
        ("virtual-climate-station", "Climate station (virtual)", second.url)]


def test_default_names_say_what_the_board_is() -> None:
    assert registry.default_name(port="/dev/ttyACM0", chip="Arduino",
                                 product="Arduino Uno") == "Arduino Uno on ttyACM0"
    assert registry.default_name(port="/dev/ttyUSB0", chip="CH340",
                                 product="USB2.0-Serial") == "CH340 on ttyUSB0"
    assert registry.default_name(port="/dev/pts/0") == "Board on pts/0"
    assert registry.default_name(port="socket://192.0.2.10:4000") == "Board on 192.0.2.10:4000"
    assert registry.default_name(port="/dev/pts/0", firmware="StandardFirmata.ino 2.5") \
        == "StandardFirmata on pts/0"
    ports = [UsbPort("/dev/ttyACM0", 0x2341, 0x0043, "A1")]
    ports[0].product = "Arduino Uno"  # type: ignore[attr-defined]
    found = discovery.scan([], comports=lambda: ports)
    assert found[0].product == "Arduino Uno"


def test_a_board_is_named_by_its_firmware_or_its_id_line_not_by_a_pty_number(
    engine: Engine, pipeline: IngestPipeline
) -> None:
    with VirtualFirmataBoard(boot_delay_s=0.2) as board, \
            IdStation(interval_s=0.05) as station:
        robot_id, climate_id = _port_id(board.url), _port_id(station.url)
        with Supervisor(engine=engine, pipeline=pipeline, scan_usb=False,
                        configured_ports=[board.url, station.url],
                        default_protocol="auto") as sup:
            wait_for(lambda: isinstance(sup.readers().get(robot_id), FirmataReader)
                     and sup.readers()[robot_id].status.online, timeout=15,
                     what="the robot identified")
            wait_for(lambda: _device(engine, robot_id).name.startswith("StandardFirmata on "),
                     what="the robot named by its firmware",
                     state=lambda: _device(engine, robot_id).name)
            wait_for(lambda: _device(engine, climate_id).name == "Estación 7B",
                     timeout=15, what="the station named by its id line",
                     state=lambda: _device(engine, climate_id))
            wait_for(lambda: "unmapped channels: light" in _device(engine, climate_id).status,
                     what="the raw light count shown as unmapped",
                     state=lambda: _device(engine, climate_id).status)
            reader = sup.readers()[climate_id]
            assert reader.status.stats.rejects == 0, "an id line is not a bad line"
        climate = _device(engine, climate_id)
    assert climate.firmware == "sketch climate-7B"
    assert "Serial device" not in _device(engine, robot_id).name
    with engine.begin() as conn:  # a coordinator's name is never replaced
        registry.configure(conn=conn, device_id=climate_id, name="Estación del patio")
        assert not registry.rename_if_default(
            conn=conn, device_id=climate_id, name="Board on x",
            defaults=[registry.default_name(port=station.url)])


# -- identifying a board again -----------------------------------------------------------------


def test_a_board_reflashed_on_a_configured_port_is_identified_again(
    engine: Engine, pipeline: IngestPipeline, tmp_path: Path
) -> None:
    """The path in serial_ports stays; behind it StandardFirmata becomes a climate sketch."""
    link = tmp_path / "kit"
    board = VirtualFirmataBoard(boot_delay_s=0.2).start()
    station = VirtualClimateStation(interval_s=0.05)
    try:
        os.symlink(board.url, link)
        device_id = _port_id(str(link))
        with Supervisor(engine=engine, pipeline=pipeline, scan_usb=False,
                        configured_ports=[str(link)], default_protocol="auto") as sup:
            wait_for(lambda: isinstance(sup.readers().get(device_id), FirmataReader)
                     and sup.readers()[device_id].status.online, timeout=15,
                     what="read as Firmata")
            station.start()
            os.symlink(station.url, tmp_path / "next")
            os.replace(tmp_path / "next", link)  # reflashed: the same path, a sketch now
            board.unplug()
            wait_for(lambda: isinstance(sup.readers().get(device_id), LineReader)
                     and sup.readers()[device_id].status.stats.readings > 3, timeout=20,
                     what="read as a sketch", state=lambda: sup.readers().get(device_id))
        assert _device(engine, device_id).kind == "lines"
    finally:
        board.close()
        station.close()


def test_a_settings_change_does_not_ask_an_identified_board_again(
    settings: Settings
) -> None:
    with VirtualFirmataBoard(boot_delay_s=0.2) as board:
        settings.serial_ports = [board.url]
        settings.serial_scan = False
        assert settings.serial_protocol == "auto"
        device_id = _port_id(board.url)
        hub = Hub(settings).start()
        try:
            sup = hub.supervisor
            assert sup is not None
            wait_for(lambda: isinstance(sup.readers().get(device_id), FirmataReader)
                     and sup.readers()[device_id].status.online, timeout=15,
                     what="identified as Firmata")
            before, first = board.boots, sup.readers()[device_id]
            seen: list[type] = []
            hub.reconfigure(device_id, name="Robot 2", settings={"channels": {
                "A0": {"name": "pot", "quantity": "analog"}}})
            def reopened() -> bool:
                reader = sup.readers().get(device_id)
                if reader is not None:
                    seen.append(type(reader))
                return reader is not None and reader is not first \
                    and isinstance(reader, FirmataReader) and reader.status.online
            wait_for(reopened, timeout=15, what="reopened as Firmata")
            assert Prober not in seen, "asked again whether it runs Firmata"
            assert board.boots == before + 1, "reset by a probe as well as by the reader"
            hub.reconfigure(device_id, settings={"protocol": "auto", "baudrate": 115200})
            wait_for(lambda: isinstance(sup.readers().get(device_id), FirmataReader)
                     and sup.readers()[device_id].status.online, timeout=15,
                     what="identified again after a baud rate change")
        finally:
            hub.close()


# -- ports changed while the hub runs --------------------------------------------------------


def test_ports_change_at_run_time_and_a_board_on_a_new_path_keeps_its_id(
    settings: Settings, engine: Engine
) -> None:
    old = IdStation(interval_s=0.05).start()
    settings.serial_scan = False
    settings.serial_ports = [old.url]
    try:
        with as_admin(TestClient(create_app(settings))) as client:
            assert client.get("/api/v1/ports").json() == {
                "serial_ports": [old.url], "firmata_ports": []}
            old_id = _port_id(old.url)
            wait_for(lambda: _device(engine, old_id).firmware == "sketch climate-7B",
                     timeout=15, what="the sketch's id recorded")
            # The same board comes back on another path: the old path goes, the new one is set.
            old.unplug()
            new_url = old.replug()
            answer = client.put("/api/v1/ports", json={"serial_ports": [new_url]})
            assert answer.status_code == 200, answer.text
            assert answer.json()["serial_ports"] == [new_url]
            wait_for(lambda: _device(engine, old_id).port == new_url
                     and _device(engine, old_id).online, timeout=20,
                     what="the board back under its id",
                     state=lambda: client.get("/api/v1/devices").json())
            ids = {d["id"] for d in client.get("/api/v1/devices").json()}
            assert ids == {old_id}, "the new path made no second device"
            # Another board, which says nothing of itself, on a third path: a new device.
            with VirtualClimateStation(interval_s=0.05) as other:
                client.put("/api/v1/ports", json={"serial_ports": [new_url, other.url]})
                other_id = _port_id(other.url)
                wait_for(lambda: other_id in {d["id"] for d in client.get(
                    "/api/v1/devices").json()}, what="the new device registered")
                wait_for(lambda: _device(engine, other_id).readings > 0, timeout=15,
                         what="the new device read")
            bad = client.put("/api/v1/ports", json={"serial_ports": ["/dev/tty\u001bx"]})
            assert bad.status_code == 422, bad.text
    finally:
        old.close()
    with engine.connect() as conn:
        kept = {s.device for s in queries.list_series(conn=conn)}
    assert old_id in kept


# -- sites -----------------------------------------------------------------------------------


def _sites(engine: Engine) -> None:
    with engine.begin() as conn:
        sites.create_site(conn=conn, code="VL", name="ValleLabs", kind="network", by="t")
        sites.create_site(conn=conn, code="VL-R1", name="R1", kind="region",
                          parent_code="VL", by="t")
        for code in ("VL-LP-014", "VL-LP-020"):
            sites.create_site(conn=conn, code=code, name=code, kind="site",
                              parent_code="VL-R1", tier="lab_point", by="t")


def test_a_device_stands_at_a_site_of_the_lab_and_takes_its_series_along(
    settings: Settings, engine: Engine
) -> None:
    _sites(engine)
    with engine.begin() as conn:
        registry.record_seen(conn=conn, device_id="uno-1", kind="lines", port="/dev/ttyACM0")
        store = ReadingStore(engine)
    store.ensure_series(device="uno-1", channel="temp", quantity="temperature", unit="degC",
                        site=None)
    with as_admin(TestClient(create_app(settings))) as client:
        for bad in ("NOPE-SITE", ""):
            answer = client.patch("/api/v1/devices/uno-1", json={"site": bad})
            assert answer.status_code == 422, answer.text
            assert answer.headers["content-type"].startswith("application/problem+json")
        moved = client.patch("/api/v1/devices/uno-1", json={"site": "VL-LP-014"})
        assert moved.status_code == 200, moved.text
        body = moved.json()
        assert body["site"] == "VL-LP-014"
        assert (body["moved"]["before"], body["moved"]["after"], body["moved"]["series"]) == (
            None, "VL-LP-014", 1)
        assert [s["site"] for s in client.get("/api/v1/series").json()] == ["VL-LP-014"]
        # The region's lists take its subtree.
        assert [d["id"] for d in client.get("/api/v1/devices?site=VL-R1").json()] == ["uno-1"]
        assert [s["channel"] for s in client.get("/api/v1/series?site=VL").json()] == ["temp"]
        assert client.get("/api/v1/devices?site=VL-LP-020").json() == []
        assert client.patch("/api/v1/devices/uno-1", json={"name": "Uno"}).json()["site"] \
            == "VL-LP-014", "a field left out stays"
        cleared = client.patch("/api/v1/devices/uno-1", json={"site": None}).json()
        assert cleared["site"] is None and cleared["moved"]["after"] is None


def test_readings_refused_for_a_device_show_in_its_counters_and_status(
    engine: Engine, pipeline: IngestPipeline
) -> None:
    """A device placed at an empty site before sites were checked: its readings cannot be
    stored, and the registry says so instead of "online, 0 rejects"."""
    with VirtualClimateStation(interval_s=0.02) as station:
        device_id = _port_id(station.url)
        with engine.begin() as conn:
            registry.record_seen(conn=conn, device_id=device_id, kind="lines",
                                 port=station.url, defaults=DeviceSettings(protocol="lines"))
            conn.execute(registry.devices.update().values(site=""))
        with Supervisor(engine=engine, pipeline=pipeline, scan_usb=False,
                        configured_ports=[station.url]):
            wait_for(lambda: _device(engine, device_id).rejects > 5, timeout=15,
                     what="refused readings counted", state=lambda: _device(engine, device_id))
            wait_for(lambda: "readings refused: site name '' is empty"
                     in _device(engine, device_id).status, what="the reason in the status",
                     state=lambda: _device(engine, device_id).status)


# -- quantities and series -------------------------------------------------------------------


def test_a_quantity_is_guessed_from_a_name_only_with_a_known_unit(engine: Engine) -> None:
    with IngestPipeline(ReadingStore(engine), flush_interval_s=0.01) as p:
        p.submit([Sample("light", 512.0, None), Sample("lux", 300.0, None),
                  Sample("temp", 21.5, None)], device="uno-1", source="t").wait(10)
        p.submit([Sample("light", 250.0, None, "lx")], device="uno-2", source="t").wait(10)
        assert p.unmapped_channels("uno-1") == ["light"]
        assert p.unmapped_channels("uno-2") == []
    with engine.connect() as conn:
        found = {(s.device, s.channel): (s.quantity, s.unit)
                 for s in queries.list_series(conn=conn)}
    assert found == {
        ("uno-1", "light"): (None, None),  # a raw count, not lux
        ("uno-1", "lux"): ("illuminance", "lx"),
        ("uno-1", "temp"): ("temperature", "degC"),
        ("uno-2", "light"): ("illuminance", "lx"),
    }
    mapped = registry.channel_map(DeviceSettings.model_validate(
        {"channels": {"A1": {"name": "light", "calibration": {"sensor": "ldr"}}}}))
    assert mapped is not None
    rule = mapped.rules["A1"]
    assert (rule.quantity, rule.unit) == ("light_level", "%"), "the preset says what it gives"


def test_series_a_channel_map_renamed_are_not_listed_but_kept(
    settings: Settings, engine: Engine
) -> None:
    store = ReadingStore(engine)
    with engine.begin() as conn:
        registry.record_seen(conn=conn, device_id="robot", kind="firmata", port="/dev/x",
                             defaults=DeviceSettings(protocol="firmata", firmata=FirmataSettings()))
    for channel in ("A0", "A1"):
        store.ensure_series(device="robot", channel=channel, quantity="analog", unit="counts",
                            site=None)
    with as_admin(TestClient(create_app(settings))) as client:
        changed = client.patch("/api/v1/devices/robot", json={"settings": {"channels": {
            "A0": {"name": "temp", "quantity": "temperature", "calibration": {"sensor": "lm35"}}}}})
        assert changed.status_code == 200, changed.text
        listed = [s["channel"] for s in client.get("/api/v1/series").json()]
        assert listed == ["A1"]
        everything = client.get("/api/v1/series?renamed=true").json()
        assert [s["channel"] for s in everything] == ["A0", "A1"]
        # A unit its quantity cannot take is refused, naming both; nothing changes.
        refused = client.patch("/api/v1/devices/robot", json={"settings": {"channels": {
            "A1": {"name": "hum", "quantity": "humidity", "unit": "degC"}}}})
        assert refused.status_code == 422, refused.text
        assert "does not convert to" in refused.text and "humidity" in refused.text
        assert "A1" not in client.get("/api/v1/devices/robot").json()["settings"]["channels"]


# -- messages --------------------------------------------------------------------------------


def test_a_port_that_is_not_there_is_said_once_in_words() -> None:
    with pytest.raises(PortGoneError) as caught:
        SerialTransport("/dev/labhub-no-such-port", 9600)
    message = str(caught.value)
    assert message == ("cannot open /dev/labhub-no-such-port: it is not there (is the board "
                       "plugged in, and is the path right?)")
    assert message.count("/dev/labhub-no-such-port") == 1 and "Errno" not in message


def test_a_firmata_board_that_stays_away_is_logged_once_not_at_every_try(
    pipeline: IngestPipeline, caplog: pytest.LogCaptureFixture
) -> None:
    def no_board(url: str, baudrate: int) -> Any:
        raise PortGoneError(f"cannot open {url}: it is not there")

    caplog.set_level(logging.DEBUG, logger="firmware_bridge")
    reader = FirmataReader(url="/dev/labhub-gone", device_id="robot", pipeline=pipeline,
                           settings=FirmataSettings(reset_wait_s=0), open_board=no_board)
    with reader:
        wait_for(lambda: reader.status.stats.failures >= 3, timeout=10, what="three tries")
    infos = [r.getMessage() for r in caplog.records
             if r.levelno == logging.INFO and r.getMessage().startswith("device robot:")]
    assert infos == ["device robot: opening /dev/labhub-gone; waiting 0 s for the board to "
                     "reset", "device robot: cannot open /dev/labhub-gone: it is not there",
                     "device robot: stopped"], infos


def test_a_labhub_config_that_names_no_file_is_refused(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("LABHUB_CONFIG", str(tmp_path / "labhub.tmol"))
    with pytest.raises(ConfigFileMissingError, match="no such file"):
        Settings()
    from typer.testing import CliRunner

    from labhub.cli import app

    result = CliRunner().invoke(app, ["ports"])
    assert result.exit_code == 2
    assert "LABHUB_CONFIG" in result.output and "Traceback" not in result.output
    monkeypatch.setenv("LABHUB_CONFIG", os.devnull)  # no file, on purpose
    assert Settings().serial_ports == []
