"""The hub's data out over MQTT, through a real Mosquitto: a virtual climate station's
readings on state topics (and MQTT nodes' own not echoed), Home Assistant discovery
configs retained on the broker, commands and RPC to a virtual Firmata board with the
API's safety rules, and nodes marked offline by silence or by their own status."""

from __future__ import annotations

import json
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
import pytest
from fastapi.testclient import TestClient
from hypothesis import given
from hypothesis import strategies as st
from mqtt_broker import MosquittoBroker, broker_fixture  # noqa: F401  (fixture "broker")
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from signed_in import as_admin
from test_mqtt import Publisher
from test_mqtt_outbox import Subscriber
from waiting import wait_for

from firmware_bridge.actuators import CommandError, PinCommand
from firmware_bridge.ha_discovery import config_payload, slug
from firmware_bridge.mqtt import FakeMqttClient, MqttBridge, MqttSettings, decode_message
from firmware_bridge.mqtt_commands import MqttCommands, parse_command_topic
from firmware_bridge.mqtt_out import Reading, sample_sets, state_payload
from firmware_bridge.sim.climate import VirtualClimateStation
from firmware_bridge.sim.firmata_board import VirtualFirmataBoard
from labhub import db
from labhub.app import create_app
from labhub.settings import Settings
from labhub.wiring import Hub
from sensors.pipeline import IngestPipeline
from sensors.storage import ReadingStore

SITE = "VC-LP-014"


class Listener:
    """A fresh client subscribed to ``topic``: records (topic, payload, retain) in order."""

    def __init__(self, broker: MosquittoBroker, topic: str, client_id: str) -> None:
        self.lock = threading.Lock()
        self.got: list[tuple[str, bytes, bool]] = []
        subscribed = threading.Event()
        self.client = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id,
                                  protocol=MQTTProtocolVersion.MQTTv5)
        self.client.on_message = self._on_message
        self.client.on_connect = lambda c, *a: c.subscribe(topic, qos=1)
        self.client.on_subscribe = lambda *a: subscribed.set()
        self.client.connect(broker.host, broker.port)
        self.client.loop_start()
        assert subscribed.wait(10), "the listener did not subscribe"

    def _on_message(self, client: paho.Client, userdata: Any, msg: paho.MQTTMessage) -> None:
        with self.lock:
            self.got.append((msg.topic, bytes(msg.payload), bool(msg.retain)))

    def messages(self, topic: str | None = None) -> list[tuple[str, bytes, bool]]:
        with self.lock:
            return [m for m in self.got if topic is None or m[0] == topic]

    def json(self, topic: str) -> list[Any]:
        return [json.loads(p) for _, p, _ in self.messages(topic)]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def station() -> Iterator[VirtualClimateStation]:
    with VirtualClimateStation(interval_s=0.1) as s:
        yield s


def _settings(broker: MosquittoBroker, database_url: str, tmp_path: Path,
              **mqtt: Any) -> dict[str, Any]:
    return {
        "database_url": database_url, "data_dir": str(tmp_path / "data"), "site": SITE,
        "serial_scan": False,
        "mqtt": {"host": broker.host, "port": broker.port, "client_id": "hub-test",
                 "reconnect_min_s": 1, "reconnect_max_s": 1, **mqtt},
    }


def _wait_connected(hub: Hub) -> None:
    assert hub.mqtt is not None
    bridge = hub.mqtt
    wait_for(lambda: bridge.status.subscribed, 15, "the hub to subscribe")


# -- no broker: sample sets and payloads -----------------------------------------------------


def test_one_state_message_per_line_or_round_of_pins_not_per_channel() -> None:
    line = [Reading("temp", 21.4, 1_000_000, "degC"), Reading("hum", 61.0, 1_000_000, "%")]
    following = [Reading("temp", 21.5, 2_000_000, "degC"), Reading("hum", 60.0, 2_000_000, "%")]
    assert sample_sets(line + following) == [line, following]
    pins = [Reading("A0", 1, 10), Reading("A1", 2, 11), Reading("A0", 3, 20)]
    assert sample_sets(pins) == [pins[:2], pins[2:]]
    assert state_payload(line) == {"ts": 1000, "values": {"temp": 21.4, "hum": 61.0}}
    assert state_payload(pins[:2]) == {"ts": 0, "values": {"A0": 1, "A1": 2}}


def test_command_topics_and_their_reply_topics() -> None:
    cmd = parse_command_topic("labhub", "labhub/lab1/robot/cmd")
    assert cmd is not None and (cmd.site, cmd.device, cmd.reply_topic) == (
        "lab1", "robot", "labhub/lab1/robot/cmd/reply")
    rpc = parse_command_topic("labhub", "labhub/lab1/robot/rpc/request/42")
    assert rpc is not None and (rpc.kind, rpc.reply_topic, rpc.request_id) == (
        "rpc", "labhub/lab1/robot/rpc/response/42", "42")
    for topic in ("labhub/lab1/robot/cmd/reply", "labhub/lab1/robot/rpc/response/42",
                  "labhub/lab1/robot/telemetry", "other/lab1/robot/cmd", "labhub//robot/cmd",
                  "labhub/lab1/robot/rpc/request/"):
        assert parse_command_topic("labhub", topic) is None, topic


def _add_site(client: TestClient) -> None:
    """The hub's site in the inventory's tree: nodes' topics may name only such a site."""
    for doc in ({"code": "VC", "name": "Red", "kind": "network"},
                {"code": "VC-R", "name": "Región", "kind": "region", "parent": "VC"},
                {"code": SITE, "name": "Lab Point 14", "kind": "site", "parent": "VC-R",
                 "tier": "lab_point"}):
        assert client.post("/api/v1/sites", json=doc).status_code == 201


# -- the hub and a real broker ------------------------------------------------------------


def test_a_climate_stations_lines_appear_on_its_state_topic_and_nodes_are_not_echoed(
    broker: MosquittoBroker, station: VirtualClimateStation, database_url: str, tmp_path: Path
) -> None:
    dashboard = Listener(broker, "labhub/+/+/state", "dashboard")
    settings = Settings.model_validate(
        {**_settings(broker, database_url, tmp_path), "serial_ports": [station.url]})
    try:
        with as_admin(TestClient(create_app(settings))) as client:
            hub: Hub = client.app.state.hub  # type: ignore[attr-defined]
            _wait_connected(hub)
            wait_for(lambda: len(client.get("/api/v1/devices").json()) == 1, 15, "the station")
            kit = client.get("/api/v1/devices").json()[0]["id"]
            topic = f"labhub/{SITE}/{kit}/state"
            wait_for(lambda: len(dashboard.messages(topic)) >= 5, 20, "five state messages")
            states = dashboard.json(topic)
            for state in states:  # one line, one message: all three channels together
                assert set(state) == {"ts", "values"}, state  # ThingsBoard's shape, no more
                assert set(state["values"]) == {"temp", "hum", "light"}, state
                assert 10 <= state["values"]["temp"] <= 30
            assert [s["ts"] for s in states] == sorted(s["ts"] for s in states)
            # The stored readings are the ones published.
            series = {s["channel"]: s for s in client.get(
                "/api/v1/series", params={"device": kit}).json()}
            assert {"temp", "hum", "light"} <= set(series)

            _add_site(client)
            with Publisher(broker, client_id="esp32-patio") as node:
                node.publish(f"labhub/{SITE}/esp32-patio/telemetry", '{"co2": 612}')
                node.wait_all()
            wait_for(lambda: any(s["channel"] == "co2" for s in client.get(
                "/api/v1/series", params={"device": "esp32-patio"}).json()), 15, "co2 stored")
            # The outbox keeps order: two kit messages queued after the node's reading was
            # committed arrive after any echo of it would have.
            seen = len(dashboard.messages(topic))
            wait_for(lambda: len(dashboard.messages(topic)) >= seen + 2, 15, "two more lines")
            assert not [m for m in dashboard.messages() if "esp32-patio" in m[0]]
            status = hub.mqtt.status if hub.mqtt is not None else None
            assert status is not None and status.outbox is not None
            assert status.outbox.dropped == 0
            health = client.get("/api/v1/health").json()
            assert health["mqtt"]["connected"] is True
            assert health["mqtt"]["outbox"]["dropped"] == 0
    finally:
        dashboard.close()


def test_the_hubs_outbox_survives_a_restart_of_the_hub_while_the_broker_is_away(
    broker: MosquittoBroker, database_url: str, tmp_path: Path
) -> None:
    """Injected: the broker goes away, the hub queues 40 state messages, the hub is
    restarted (on SQLite or PostgreSQL: the outbox is its own file either way), then the
    broker comes back. Kept: all 40, in the order they were queued."""
    dashboard = Subscriber(broker, f"labhub/{SITE}/+/state")
    broker.stop()
    settings = Settings.model_validate(_settings(broker, database_url, tmp_path))
    try:
        hub = Hub(settings).start()
        try:
            assert hub.mqtt is not None
            for n in range(30):
                hub.mqtt.publish_state(SITE, "kit-1", {"ts": n, "values": {"n": n}})
        finally:
            hub.close()
        assert (tmp_path / "data" / "mqtt-outbox.db").is_file()
        hub = Hub(settings).start()  # the lab's hub after a power cut, the broker still away
        try:
            assert hub.mqtt is not None
            for n in range(30, 40):
                hub.mqtt.publish_state(SITE, "kit-1", {"ts": n, "values": {"n": n}})
            broker.start()
            wait_for(lambda: len(dashboard.payloads()) >= 40, 30, "all 40 at the dashboard")
            bridge = hub.mqtt
            wait_for(lambda: bridge.status.outbox is not None
                     and bridge.status.outbox.queued == 0, 15, "the outbox emptied")
        finally:
            hub.close()
        assert [json.loads(p)["values"]["n"] for p in dashboard.payloads()] == list(range(40))
    finally:
        dashboard.close()


def test_home_assistant_discovery_configs_are_retained_for_every_channel(
    broker: MosquittoBroker, station: VirtualClimateStation, database_url: str, tmp_path: Path
) -> None:
    settings = Settings.model_validate({**_settings(broker, database_url, tmp_path,
                                                    ha_discovery=True),
                                        "serial_ports": [station.url]})
    with as_admin(TestClient(create_app(settings))) as client:
        hub: Hub = client.app.state.hub  # type: ignore[attr-defined]
        _wait_connected(hub)
        wait_for(lambda: hub.discovery is not None and len(hub.discovery.configs()) == 3, 20,
                 "three channels discovered")
        kit = client.get("/api/v1/devices").json()[0]["id"]
        assert hub.mqtt is not None
        hub.mqtt.drain(5)
        # A Home Assistant that starts later: a fresh client gets the configs, retained.
        late = Listener(broker, "homeassistant/sensor/+/+/config", "home-assistant")
        try:
            node = slug(f"labhub_{SITE}_{kit}")
            temp_topic = f"homeassistant/sensor/{node}/temp/config"
            wait_for(lambda: len(late.messages()) >= 3, 15, "three retained configs")
            assert {m[0] for m in late.messages()} == {
                f"homeassistant/sensor/{node}/{c}/config" for c in ("temp", "hum", "light")}
            assert all(retain for _, _, retain in late.messages())
            temp = late.json(temp_topic)[0]
            assert temp["device_class"] == "temperature"
            assert temp["unit_of_measurement"] == "°C"
            assert temp["state_class"] == "measurement"
            assert temp["state_topic"] == f"labhub/{SITE}/{kit}/state"
            assert temp["value_template"].startswith(
                "{% if \"temp\" in value_json['values'] %}{{ value_json['values'][\"temp\"] }}")
            assert temp["availability_topic"] == "labhub/hub/hub-test/status"
            assert (temp["payload_available"], temp["payload_not_available"]) == (
                "online", "offline")
            assert temp["unique_id"] == f"{node}_temp"
            assert temp["device"]["identifiers"] == [node]
            assert temp["device"]["name"] == client.get(f"/api/v1/devices/{kit}").json()["name"]
            light = late.json(f"homeassistant/sensor/{node}/light/config")[0]
            # The station's light is a raw count: no quantity, so no device class or unit.
            assert "device_class" not in light and "unit_of_measurement" not in light
        finally:
            late.close()
        # Published again on a reconnect: the broker restarted without its retained store.
        broker.kill()
        for path in broker.data_dir.iterdir():
            path.unlink()
        broker.start()
        _wait_connected(hub)
        again = Listener(broker, "homeassistant/sensor/+/+/config", "home-assistant-2")
        try:
            wait_for(lambda: len(again.messages()) >= 3, 15, "configs again after reconnect")
        finally:
            again.close()


def _retained_configs(broker: MosquittoBroker, name: str) -> set[str]:
    """The discovery config topics the broker retains now, as Home Assistant starting
    would see them (empty retained messages are removals and never sent)."""
    fresh = Listener(broker, "homeassistant/sensor/+/+/config", name)
    try:
        time.sleep(0.3)  # retained copies come right after the SUBACK
        return {t for t, payload, retained in fresh.messages() if retained and payload}
    finally:
        fresh.close()


def test_a_kit_moved_to_another_site_has_its_old_discovery_config_cleared(
    broker: MosquittoBroker, sqlite_template: Path, tmp_path: Path
) -> None:
    """A kit's configs retained at site lab1; the hub restarts (its memory empty) and the
    kit shows up at lab2, then, without a restart, at lab3. Kept on the broker: the
    current config of the kit, that of a kit that did not move, and a config of another
    integration; the lab1 and lab2 configs are cleared (empty retained messages)."""
    from firmware_bridge.ha_discovery import Entity, HaDiscovery

    path = tmp_path / "hub.db"
    shutil.copy(sqlite_template, path)
    engine = db.make_engine(f"sqlite:///{path}")
    settings = MqttSettings(host=broker.host, port=broker.port, client_id="hub-ha",
                            ha_discovery=True, reconnect_min_s=1, reconnect_max_s=2)

    def kit(site: str) -> Entity:
        return Entity(site, "uno-1", "temp", "degC", "temperature")

    def config(site: str, device: str = "uno-1") -> str:
        return f"homeassistant/sensor/labhub_{site}_{device}/temp/config"

    stays = Entity("lab1", "uno-2", "temp", "degC", "temperature")
    foreign = "homeassistant/sensor/zigbee_0x1234/temp/config"
    with Publisher(broker, "zigbee2mqtt") as other:
        other.publish(foreign, json.dumps({"name": "temp", "state_topic": "zigbee/x"}),
                      retain=True)
        other.wait_all(routed=False)
    checks = iter(range(100))

    def retained() -> set[str]:
        return _retained_configs(broker, f"home-assistant-{next(checks)}")

    def started(discovery: HaDiscovery, pipeline: IngestPipeline) -> MqttBridge:
        bridge = MqttBridge(settings, pipeline, extensions=[discovery]).start()
        wait_for(lambda: bridge.status.subscribed, what="the hub to subscribe")
        return bridge

    try:
        with IngestPipeline(ReadingStore(engine), flush_interval_s=0.02) as pipeline:
            first = HaDiscovery(settings)
            bridge = started(first, pipeline)
            try:
                first.note(bridge, kit("lab1"))
                first.note(bridge, stays)
                wait_for(lambda: retained() == {config("lab1"), config("lab1", "uno-2"),
                                                foreign}, 15, "the first configs retained")
            finally:
                bridge.stop()
            again = HaDiscovery(settings)  # a restart: nothing in memory
            bridge = started(again, pipeline)
            try:
                again.note(bridge, kit("lab2"))
                wait_for(lambda: retained() == {config("lab2"), config("lab1", "uno-2"),
                                                foreign}, 15, "lab1's config cleared")
                again.note(bridge, kit("lab3"))  # moved again while the hub runs
                wait_for(lambda: retained() == {config("lab3"), config("lab1", "uno-2"),
                                                foreign}, 15, "lab2's config cleared")
                assert set(again.configs()) == {config("lab3")}  # not re-sent on reconnect
            finally:
                bridge.stop()
    finally:
        engine.dispose()


def test_discovery_units_for_a_channel_without_a_known_quantity() -> None:
    from firmware_bridge.ha_discovery import Entity

    plain = config_payload(MqttSettings(client_id="h"), Entity("s", "d", "A0", None, None), "d")
    assert "device_class" not in plain and "unit_of_measurement" not in plain
    counts = config_payload(MqttSettings(client_id="h"),
                            Entity("s", "d", "A0", "counts", "analog"), "d")
    assert "unit_of_measurement" not in counts
    own = config_payload(MqttSettings(client_id="h"), Entity("s", "d", "w", "ug/m3", None), "d")
    assert own["unit_of_measurement"] == "µg/m³"


OUTPUTS = {"9": {"kind": "servo", "min_angle": 10, "max_angle": 170, "safe": 90},
           "13": {"kind": "digital"}}


def test_servo_commands_over_mqtt_reach_the_board_and_undeclared_pins_are_refused(
    broker: MosquittoBroker, database_url: str, tmp_path: Path
) -> None:
    with VirtualFirmataBoard() as board:
        settings = Settings.model_validate(
            {**_settings(broker, database_url, tmp_path), "firmata_ports": [board.url]})
        replies = Listener(broker, "labhub/+/+/cmd/reply", "teacher")
        rpc = Listener(broker, "labhub/+/+/rpc/response/+", "thingsboard")
        try:
            with as_admin(TestClient(create_app(settings))) as client:
                hub: Hub = client.app.state.hub  # type: ignore[attr-defined]
                _wait_connected(hub)
                wait_for(lambda: len(client.get("/api/v1/devices").json()) == 1, 15, "the board")
                kit = client.get("/api/v1/devices").json()[0]["id"]
                firmata = {"reset_wait_s": 0.3, "sampling_ms": 50, "analog_pins": [0],
                           "outputs": OUTPUTS}
                r = client.patch(f"/api/v1/devices/{kit}", json={"settings": {
                    "protocol": "firmata", "firmata": firmata}})
                assert r.status_code == 200, r.text
                wait_for(lambda: board.servo_angles.get(9) == 90, 20, "outputs at safe values")
                cmd_topic = f"labhub/{SITE}/{kit}/cmd"
                reply_topic = f"{cmd_topic}/reply"

                def reply(ident: object, topic: str = reply_topic) -> dict[str, Any]:
                    wait_for(lambda: any(r["id"] == ident for r in replies.json(topic)), 15,
                             f"the reply to {ident!r}")
                    return next(r for r in replies.json(topic) if r["id"] == ident)

                with Publisher(broker, client_id="teacher-pub") as teacher:
                    # The board may still be reopening after its new settings: the command
                    # waits for it (the supervisor's bounded wait), so the first try works.
                    ident = "a0"
                    teacher.publish(cmd_topic, json.dumps(
                        {"command": "servo", "pin": 9, "value": 45, "id": ident}))
                    first = reply(ident)
                    assert first == {"ok": True, "id": ident, "device": kit, "writes": [
                        {"pin": 9, "kind": "servo", "value": 45.0, "clamped": False}]}
                    assert board.wait_for(lambda: board.servo_angles.get(9) == 45, timeout=15)
                    # The same safety rules as the API: a pin not declared is refused...
                    teacher.publish(cmd_topic, json.dumps(
                        {"command": "digital_write", "pin": 7, "value": 1, "id": 2}))
                    # ...a servo is clamped to its range, and nonsense gets a reason.
                    teacher.publish(cmd_topic, json.dumps(
                        {"command": "servo", "pin": 9, "value": 500, "id": "big"}))
                    teacher.publish(cmd_topic, b"turn left")
                    teacher.publish(cmd_topic, json.dumps({"command": "explode", "id": "x"}))
                    teacher.publish(f"labhub/OTHER-SITE/{kit}/cmd",
                                    json.dumps({"command": "stop_all", "id": "o"}))
                    refused = reply(2)
                    assert refused["ok"] is False
                    assert "pin 7 is not declared as an output" in refused["error"]
                    assert 7 not in board.outputs
                    clamped = reply("big")
                    assert clamped["ok"] is True and clamped["writes"][0]["value"] == 170.0
                    assert clamped["writes"][0]["clamped"] is True
                    assert board.wait_for(lambda: board.servo_angles.get(9) == 170, timeout=15)
                    assert "not JSON" in reply(None)["error"]
                    explode = reply("x")
                    assert explode["ok"] is False and explode["error"].startswith("command:")
                    other = reply("o", f"labhub/OTHER-SITE/{kit}/cmd/reply")
                    assert other["ok"] is False and SITE in other["error"]
                    # ThingsBoard-style RPC, answered on the response topic of its id.
                    teacher.publish(f"labhub/{SITE}/{kit}/rpc/request/17", json.dumps(
                        {"method": "setServo", "params": {"pin": 9, "angle": 120}}))
                    teacher.publish(f"labhub/{SITE}/{kit}/rpc/request/18", json.dumps(
                        {"method": "selfDestruct", "params": {}}))
                    wait_for(lambda: len(rpc.messages()) >= 2, 15, "two RPC responses")
                    ok = rpc.json(f"labhub/{SITE}/{kit}/rpc/response/17")[0]
                    assert ok["ok"] is True and ok["id"] == "17"
                    assert board.wait_for(lambda: board.servo_angles.get(9) == 120, timeout=15)
                    bad = rpc.json(f"labhub/{SITE}/{kit}/rpc/response/18")[0]
                    assert bad["ok"] is False and "unknown method" in bad["error"]
                    teacher.wait_all()
                assert hub.commands is not None
                assert (hub.commands.stats.done, hub.commands.stats.refused) == (3, 5)
                assert client.get(f"/api/v1/devices/{kit}/outputs").json()["9"] == 120.0
                # Commands are not readings: nothing in the dead-letter table for them.
                assert client.get("/api/v1/rejects").json()["total"] == 0
        finally:
            replies.close()
            rpc.close()


def test_a_silent_node_goes_offline_and_comes_back_with_its_next_message(
    broker: MosquittoBroker, database_url: str, tmp_path: Path
) -> None:
    settings = Settings.model_validate(
        _settings(broker, database_url, tmp_path, node_silence_s=1))
    with as_admin(TestClient(create_app(settings))) as client:
        hub: Hub = client.app.state.hub  # type: ignore[attr-defined]
        _wait_connected(hub)
        _add_site(client)

        def device(name: str) -> dict[str, Any]:
            found = client.get(f"/api/v1/devices/{name}")
            return found.json() if found.status_code == 200 else {"online": None}

        with Publisher(broker, client_id="esp32-quiet") as node:
            sent = time.monotonic()  # the hub hears it after this
            node.publish(f"labhub/{SITE}/esp32-quiet/temperature", "21.5")
            node.wait_all()
            wait_for(lambda: device("esp32-quiet")["online"] is not None, 15, "registered")
            wait_for(lambda: device("esp32-quiet")["online"] is False, 15, "offline by silence")
            assert time.monotonic() - sent >= 1.0  # not before the period
            assert "silent for more than 1 s" in device("esp32-quiet")["status"]
            node.publish(f"labhub/{SITE}/esp32-quiet/temperature", "21.7")
            wait_for(lambda: device("esp32-quiet")["online"] is True, 15, "online again")
            # Its own status message (the last will sketches set) says offline too.
            node.publish(f"labhub/{SITE}/esp32-quiet/status", "offline")
            wait_for(lambda: device("esp32-quiet")["online"] is False, 15, "offline by will")
            assert "said offline" in device("esp32-quiet")["status"]
            node.publish(f"labhub/{SITE}/esp32-quiet/status", "online")
            wait_for(lambda: device("esp32-quiet")["online"] is True, 15, "online by status")
            node.wait_all()
        assert client.get("/api/v1/rejects").json()["total"] == 0  # status is not a reading


def test_the_topics_of_the_hubs_data_out_are_in_mqtt_md() -> None:
    text = (Path(__file__).resolve().parent.parent / "docs" / "mqtt.md").read_text("utf-8")
    for topic in ("/<device>/state`", "/<device>/cmd`", "/<device>/cmd/reply`",
                  "/<device>/rpc/request/<id>`", "/<device>/rpc/response/<id>`",
                  "/<device>/status`", "`homeassistant/sensor/<node_id>/<object_id>/config`"):
        assert topic in text, topic


# -- round trips and the extension path without a broker ------------------------------------


@given(st.dictionaries(st.from_regex(r"[A-Za-z][A-Za-z0-9_]{0,15}", fullmatch=True),
                       st.floats(allow_nan=False, allow_infinity=False, width=64),
                       min_size=1, max_size=8),
       st.integers(min_value=946_684_800 * 1_000_000, max_value=4_102_444_800 * 1_000_000))
def test_a_state_message_reads_back_as_telemetry_with_the_same_values(
    values: dict[str, float], ts: int
) -> None:
    """Format then parse: another LabHub taking the state topic in gets the same readings."""
    readings = [Reading(channel, value, ts, "degC") for channel, value in values.items()]
    body = json.dumps(state_payload(readings), allow_nan=False).encode()
    samples = decode_message("telemetry", body)
    assert {(s.channel, s.value, s.ts) for s in samples} == {
        (channel, value, ts // 1000 * 1000) for channel, value in values.items()}


def _fake_bridge(commands: MqttCommands, tmp_path: Path) -> Iterator[
        tuple[MqttBridge, FakeMqttClient]]:
    engine = db.make_engine(f"sqlite:///{tmp_path / 'hub.db'}")
    db.upgrade(engine)
    try:
        with IngestPipeline(ReadingStore(engine), flush_interval_s=0.02) as pipeline:
            bridge = MqttBridge(MqttSettings(client_id="hub-fake"), pipeline,
                                client_class=FakeMqttClient, extensions=[commands]).start()
            try:
                client = bridge.client
                assert isinstance(client, FakeMqttClient)
                yield bridge, client
            finally:
                bridge.stop()
    finally:
        engine.dispose()


def test_commands_are_acknowledged_and_answered_and_retained_ones_never_run(
    tmp_path: Path
) -> None:
    ran: list[tuple[str, str, str, int | None, float | None]] = []

    def run(site: str, device: str, command: str, pin: int | None,
            value: float | None) -> list[PinCommand]:
        ran.append((site, device, command, pin, value))
        if pin == 7:
            raise CommandError("pin 7 is not declared as an output of this device")
        return [PinCommand(pin or 0, "servo", value or 0.0)]

    commands = MqttCommands(run)  # type: ignore[arg-type]
    for bridge, client in _fake_bridge(commands, tmp_path):
        assert "labhub/+/+/rpc/request/+" in client.subscriptions
        mids = [
            client.deliver("labhub/lab1/robot/cmd", '{"command": "servo", "pin": 9, "value": 30}'),
            client.deliver("labhub/lab1/robot/cmd", '{"command": "servo", "pin": 9, "value": 99}',
                           retain=True),  # an old command kept by the broker: never run
            client.deliver("labhub/lab1/robot/cmd", '{"command": "pwm", "pin": 7, "value": 1}'),
            client.deliver("labhub/lab1/robot/cmd", b"x" * 5000),
            client.deliver("labhub/lab1/robot/cmd", '{"command": "servo", "pin": 9, "id": "'
                           + "i" * 101 + '"}'),
            client.deliver("labhub/lab1/robot/rpc/request/5",
                           '{"method": "setServo", "params": {"pin": 9, "speed": 3}}'),
        ]
        assert bridge.drain(5)
        assert client.acked == mids  # every one acknowledged, in order
        assert ran == [("lab1", "robot", "servo", 9, 30.0), ("lab1", "robot", "pwm", 7, 1.0)]
        replies = [(t, json.loads(p)) for t, p, _, _ in client.published if "reply" in t
                   or "response" in t]
        assert [t for t, _ in replies] == ["labhub/lab1/robot/cmd/reply"] * 4 + [
            "labhub/lab1/robot/rpc/response/5"]
        assert replies[0][1]["ok"] is True
        assert "not declared" in replies[1][1]["error"]
        assert "at most 4096 bytes" in replies[2][1]["error"]
        assert "id: at most 100 characters" in replies[3][1]["error"]
        assert "params.speed" in replies[4][1]["error"]
        assert (commands.stats.done, commands.stats.refused) == (1, 4)
        assert bridge.pipeline.counters()["rejected"] == 0  # commands are not dead letters
