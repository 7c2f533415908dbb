"""The hub with MQTT switched on in its settings: a wireless node's readings reach the
API and the node appears in the device registry, at the site its topic names (a site of
the inventory's; tests/test_series_sites.py has the topics naming one it lacks)."""

from __future__ import annotations

import time
from pathlib import Path

from fastapi.testclient import TestClient
from mqtt_broker import MosquittoBroker, broker_fixture  # noqa: F401 -- the broker fixture
from signed_in import as_admin
from test_mqtt import Publisher

from labhub.app import create_app
from labhub.settings import Settings


def test_a_node_publishing_to_the_broker_shows_in_the_api(
    broker: MosquittoBroker, database_url: str, tmp_path: Path
) -> None:
    settings = Settings.model_validate({
        "database_url": database_url, "data_dir": str(tmp_path / "data"),
        "serial_scan": False,
        "mqtt": {"host": broker.host, "port": broker.port, "client_id": "hub-test"},
    })
    with as_admin(TestClient(create_app(settings))) as client:
        hub = client.app.state.hub  # type: ignore[attr-defined]
        deadline = time.monotonic() + 15
        while not hub.mqtt.status.subscribed and time.monotonic() < deadline:
            time.sleep(0.05)
        assert hub.mqtt.status.connected, hub.mqtt.status.message
        for site in ({"code": "VC", "name": "Red", "kind": "network"},
                     {"code": "VC-R", "name": "Región", "kind": "region", "parent": "VC"},
                     {"code": "VC-LP-014", "name": "Lab Point 14", "kind": "site",
                      "parent": "VC-R", "tier": "lab_point"}):
            assert client.post("/api/v1/sites", json=site).status_code == 201
        node = Publisher(broker, client_id="esp32-patio")
        try:
            node.publish("labhub/VC-LP-014/esp32-patio/telemetry",
                         '{"ts": 1772373600000, "values": {"temperature": 23.5, "humidity": 61}}')
            node.wait_all()
        finally:
            node.client.loop_stop()
            node.client.disconnect()
        deadline = time.monotonic() + 15
        series: list[dict[str, object]] = []
        while time.monotonic() < deadline:
            series = client.get("/api/v1/series", params={"device": "esp32-patio"}).json()
            if len(series) == 2:
                break
            time.sleep(0.05)
        assert {(s["channel"], s["latest_value"], s["site"]) for s in series} == {
            ("temperature", 23.5, "VC-LP-014"), ("humidity", 61.0, "VC-LP-014")}
        devices = {d["id"]: d for d in client.get("/api/v1/devices").json()}
        assert devices["esp32-patio"]["kind"] == "mqtt"
        assert devices["esp32-patio"]["site"] == "VC-LP-014"
