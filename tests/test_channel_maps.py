"""A device's channel map and calibrations apply to its readings whichever way they arrive:
an HTTP upload, ``labhub import``, an MQTT node through a real broker (a serial sketch on a
real pty is in test_serial_lines.py); and a settings change applies to the next readings."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
import pytest
from fastapi.testclient import TestClient
from mqtt_broker import MosquittoBroker, broker_fixture  # noqa: F401 -- the broker fixture
from paho.mqtt.enums import CallbackAPIVersion
from signed_in import as_admin
from sqlalchemy import Engine, event
from typer.testing import CliRunner
from waiting import wait_for

from firmware_bridge import registry
from labhub import db
from labhub.app import create_app
from labhub.cli import app as cli
from labhub.settings import Settings
from sensors import queries
from sensors.pipeline import IngestPipeline
from sensors.samples import US_PER_S, Sample
from sensors.storage import ReadingStore

T0 = 1_772_359_200 * US_PER_S  # 2026-03-01T10:00:00Z

# A light sensor on A0 whose raw counts become a percentage; then recalibrated.
FIRST = {"channels": {"A0": {"name": "light", "quantity": "light_level",
                             "calibration": {"linear": [0.1, 0]}}}}
SECOND = {"channels": {"A0": {"name": "light", "quantity": "light_level",
                              "calibration": {"linear": [0.05, 1]}}}}


def _stored(engine: Engine, device: str) -> dict[str, list[float]]:
    with engine.connect() as conn:
        return {
            s.channel: [v for _, v, _ in queries.read_range(conn=conn, series_id=s.id)]
            for s in queries.list_series(conn=conn, device=device)
        }


def _quantity(engine: Engine, device: str, channel: str) -> tuple[str | None, str | None]:
    with engine.connect() as conn:
        found = queries.get_series(conn=conn, device=device, channel=channel)
    return found.quantity, found.unit


def _register(engine: Engine, device: str, settings: dict[str, Any] | None = None) -> None:
    with engine.begin() as conn:
        registry.record_seen(conn=conn, device_id=device, kind="lines", defaults=(
            None if settings is None else registry.parse_settings(settings)))


@pytest.fixture
def hub_engine(database_url: str) -> Iterator[Engine]:
    engine = db.make_engine(database_url)
    yield engine
    engine.dispose()


def test_an_http_upload_is_calibrated_and_a_settings_change_applies_to_the_next_one(
    settings: Settings, hub_engine: Engine
) -> None:
    with as_admin(TestClient(create_app(settings))) as client:
        _register(hub_engine, "uno-http")

        def upload(ts: str, raw: float) -> None:
            r = client.post("/api/v1/readings", json={"device": "uno-http", "readings": [
                {"channel": "A0", "value": raw, "ts": ts}]})
            assert r.status_code == 200 and r.json()["accepted"] == 1, r.text

        def configure(body: dict[str, Any]) -> None:
            r = client.patch("/api/v1/devices/uno-http", json={"settings": body})
            assert r.status_code == 200, r.text

        configure(FIRST)
        upload("2026-03-01T10:00:00Z", 500)
        configure(SECOND)
        upload("2026-03-01T10:01:00Z", 500)
    assert _stored(hub_engine, "uno-http") == {"light": [50.0, 26.0]}
    assert _quantity(hub_engine, "uno-http", "light") == ("light_level", "%")


def test_labhub_import_is_calibrated_by_the_device_settings(
    database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, hub_engine: Engine
) -> None:
    monkeypatch.setenv("LABHUB_DATABASE_URL", database_url)
    monkeypatch.setenv("LABHUB_DATA_DIR", str(tmp_path / "data"))
    _register(hub_engine, "uno-sd", FIRST)
    log = tmp_path / "DATALOG.TXT"
    log.write_text("A0:100,hum:40\nA0:200,hum:41\n", encoding="utf-8")
    result = CliRunner().invoke(cli, [
        "import", str(log), "--device", "uno-sd", "--format", "plotter",
        "--start", "2026-03-01T08:00:00Z", "--interval", "60"])
    assert result.exit_code == 0, result.output
    assert "4 readings imported" in result.output
    assert _stored(hub_engine, "uno-sd") == {"light": [10.0, 20.0], "hum": [40.0, 41.0]}


class _Node:
    """A wireless node: a plain paho client that publishes with QoS 1 and waits for the
    broker's acknowledgement."""

    def __init__(self, broker: MosquittoBroker, client_id: str) -> None:
        self.client = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id)
        self.client.connect(broker.host, broker.port)
        self.client.loop_start()

    def publish(self, topic: str, payload: str) -> None:
        info = self.client.publish(topic, payload, qos=1)
        info.wait_for_publish(10)
        assert info.is_published()

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def test_an_mqtt_node_is_calibrated_and_a_settings_change_applies_to_the_next_readings(
    broker: MosquittoBroker, database_url: str, tmp_path: Path, hub_engine: Engine
) -> None:
    settings = Settings.model_validate({
        "database_url": database_url, "data_dir": str(tmp_path / "data"),
        "serial_scan": False,
        "mqtt": {"host": broker.host, "port": broker.port, "client_id": "hub-test"},
    })
    topic = "labhub/unassigned/esp32-patio/telemetry"  # a node at no site yet
    with as_admin(TestClient(create_app(settings))) as client:
        hub = client.app.state.hub  # type: ignore[attr-defined]
        wait_for(lambda: hub.mqtt.status.subscribed, what="the hub subscribed")
        node = _Node(broker, "esp32-patio")
        try:
            def send(ts_ms: int, raw: int) -> None:
                node.publish(topic, f'{{"ts": {ts_ms}, "values": {{"A0": {raw}}}}}')

            def stored() -> dict[str, list[float]]:
                return _stored(hub_engine, "esp32-patio")

            def configure(body: dict[str, Any]) -> None:
                r = client.patch("/api/v1/devices/esp32-patio", json={"settings": body})
                assert r.status_code == 200, r.text

            send(1772373600000, 500)  # before any settings: stored as sent
            wait_for(lambda: stored() == {"A0": [500.0]}, what="the raw reading")
            wait_for(lambda: any(d["id"] == "esp32-patio"
                              for d in client.get("/api/v1/devices").json()),
                     what="the node registered")
            configure(FIRST)
            send(1772373660000, 500)
            wait_for(lambda: stored().get("light") == [50.0], what="the calibrated reading")
            configure(SECOND)
            send(1772373720000, 500)
            wait_for(lambda: stored().get("light") == [50.0, 26.0], what="the recalibrated reading")
        finally:
            node.close()
    assert _stored(hub_engine, "esp32-patio") == {"A0": [500.0], "light": [50.0, 26.0]}
    assert _quantity(hub_engine, "esp32-patio", "light") == ("light_level", "%")


def test_the_registry_is_read_once_per_device_not_per_reading(engine: Engine) -> None:
    _register(engine, "uno-1", FIRST)
    lookups: list[str] = []

    def count(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if "FROM devices" in statement:
            lookups.append(statement)

    event.listen(engine, "before_cursor_execute", count)
    try:
        with IngestPipeline(ReadingStore(engine), flush_interval_s=0.01,
                            channel_maps=registry.RegistryChannelMaps(engine)) as p:
            for i in range(50):
                p.submit([Sample("A0", 500.0, T0 + i), Sample("hum", 40.0, T0 + i)],
                         device="uno-1", source="t")
                p.submit_columns(["A0", "hum"], [T0 + 100 + i], [[500.0], [40.0]],
                                 device="uno-1", source="t")
            p.submit([Sample("A0", 500.0, T0)], device="never-registered", source="t")
            p.flush(10)
            assert len(lookups) == 2  # uno-1 once, the unregistered device once
            p.forget("uno-1")
            p.submit([Sample("A0", 500.0, T0 + 200)], device="uno-1", source="t").wait(10)
            assert len(lookups) == 3
    finally:
        event.remove(engine, "before_cursor_execute", count)
    assert _stored(engine, "uno-1")["light"] == [50.0] * 101
