"""MQTT nodes through a real Mosquitto and the real ingest pipeline: the wire formats, dead
letters, acknowledgement only after COMMIT, a broker killed mid-stream, persistent
sessions, credentials, the hub's own messages, and the fake client."""

from __future__ import annotations

import json
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
import pytest
from mqtt_broker import MosquittoBroker, broker_fixture  # noqa: F401  (fixture "broker")
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from pydantic import ValidationError
from signed_in import as_admin
from sqlalchemy import Engine, func, select
from waiting import wait_for

from firmware_bridge.mqtt import (
    FakeMqttClient,
    MqttBridge,
    MqttSettings,
    NodeTopic,
    TopicError,
    decode_message,
    parse_topic,
)
from labhub import db
from sensors import queries
from sensors.errors import DecodeError
from sensors.pipeline import IngestPipeline
from sensors.samples import US_PER_S, Sample, now_us
from sensors.storage import BatchWriter, DeadLetterRow, ReadingStore, dead_letters
from sensors.storage import readings as readings_table

T0_MS = (now_us() // US_PER_S - 3600) * 1000  # an hour ago, in epoch milliseconds



def _count(engine: Engine, table: Any) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(table)).scalar_one())


@pytest.fixture
def sqlite_engine(sqlite_template: Path, tmp_path: Path) -> Iterator[Engine]:
    """For tests about the connection, not storage: SQLite only (half the run time)."""
    path = tmp_path / "hub.db"
    shutil.copy(sqlite_template, path)
    eng = db.make_engine(f"sqlite:///{path}")
    yield eng
    eng.dispose()


@pytest.fixture
def sqlite_pipeline(sqlite_engine: Engine) -> Iterator[IngestPipeline]:
    with IngestPipeline(ReadingStore(sqlite_engine), flush_interval_s=0.02) as p:
        yield p


def hub_settings(broker: MosquittoBroker, **changes: Any) -> MqttSettings:
    values: dict[str, Any] = {
        "host": broker.host, "port": broker.port, "client_id": "hub-test",
        "reconnect_min_s": 1, "reconnect_max_s": 2,
    }
    values.update(changes)
    return MqttSettings(**values)


def _connect_properties(expiry_s: int) -> Properties:
    properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
    properties.SessionExpiryInterval = expiry_s
    return properties


class Publisher:
    """A node: a plain paho client (MQTT 5, persistent session) that counts PUBACKs.

    A PUBACK saying "no matching subscribers" counts as refused: the broker dropped it.
    """

    def __init__(self, broker: MosquittoBroker, client_id: str = "node-1") -> None:
        self.lock = threading.Lock()
        self.mids: list[int] = []
        self.acked: set[int] = set()
        self.refused: list[tuple[int, str]] = []
        self.connected = threading.Event()
        self.client = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id,
                                  protocol=MQTTProtocolVersion.MQTTv5)
        self.client.on_publish = self._on_publish
        self.client.on_connect = lambda *a: self.connected.set()
        self.client.reconnect_delay_set(1, 1)
        self.client.connect(broker.host, broker.port, clean_start=False,
                            properties=_connect_properties(600))
        self.client.loop_start()
        assert self.connected.wait(10), "publisher did not connect"

    def _on_publish(self, client: paho.Client, userdata: Any, mid: int, reason: ReasonCode,
                    properties: Properties) -> None:
        with self.lock:
            if reason.is_failure or reason.value == 0x10:  # 0x10: no matching subscribers
                self.refused.append((mid, str(reason)))
            self.acked.add(mid)

    def publish(self, topic: str, payload: str | bytes, qos: int = 1,
                retain: bool = False) -> None:
        info = self.client.publish(topic, payload, qos=qos, retain=retain)
        # NO_CONN: queued by paho and sent after the reconnect (it retries QoS 1 itself).
        assert info.rc in (MQTTErrorCode.MQTT_ERR_SUCCESS, MQTTErrorCode.MQTT_ERR_NO_CONN)
        if qos:
            with self.lock:
                self.mids.append(info.mid)

    def acked_count(self) -> int:
        with self.lock:
            return len(self.acked)

    def wait_all(self, timeout: float = 20.0, *, routed: bool = True) -> None:
        """Wait for every PUBACK; unless ``routed`` is False, "no matching subscribers"
        (the broker dropped the message) fails."""
        def done() -> bool:
            with self.lock:
                return self.acked.issuperset(self.mids) or bool(self.refused)
        wait_for(done, timeout, "PUBACKs for everything published")
        with self.lock:
            refused = [r for r in self.refused if routed or "subscribers" not in r[1]]
        assert not refused, refused[:5]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def __enter__(self) -> Publisher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Watcher:
    """A subscriber that records every (topic, payload, retain) it gets."""

    def __init__(self, broker: MosquittoBroker, topic: str) -> None:
        self.got: list[tuple[str, bytes, bool]] = []
        self.lock = threading.Lock()
        subscribed = threading.Event()
        self.client = paho.Client(CallbackAPIVersion.VERSION2, client_id="watcher",
                                  protocol=MQTTProtocolVersion.MQTTv5)
        self.client.on_message = self._on_message
        self.client.on_connect = lambda c, *a: c.subscribe(topic, qos=1)
        self.client.on_subscribe = lambda *a: subscribed.set()
        self.client.connect(broker.host, broker.port)
        self.client.loop_start()
        assert subscribed.wait(10)

    def _on_message(self, client: paho.Client, userdata: Any, msg: paho.MQTTMessage) -> None:
        with self.lock:
            self.got.append((msg.topic, bytes(msg.payload), bool(msg.retain)))

    def payloads(self) -> list[bytes]:
        with self.lock:
            return [payload for _, payload, _ in self.got]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def hub(broker: MosquittoBroker, pipeline: IngestPipeline, **kw: Any) -> MqttBridge:
    """A started bridge, connected and subscribed."""
    on_device = kw.pop("on_device", None)
    bridge = MqttBridge(hub_settings(broker, **kw), pipeline, on_device=on_device).start()
    try:
        wait_for(lambda: bridge.status.subscribed, what="the hub to subscribe")
    except BaseException:
        bridge.stop()
        raise
    return bridge


def _series_values(engine: Engine, device: str, channel: str) -> list[tuple[int, float]]:
    with engine.connect() as conn:
        sid = queries.get_series(conn=conn, device=device, channel=channel).id
        return [(ts, value) for ts, value, _ in queries.read_range(conn=conn, series_id=sid)]


# -- topics and payloads, no broker -------------------------------------------------------


def test_topics_name_site_device_and_leaf_and_the_hubs_own_topics_are_not_readings() -> None:
    assert parse_topic("labhub", "labhub/lab1/esp-a/telemetry") == NodeTopic(
        "lab1", "esp-a", "telemetry")
    assert parse_topic("school/labhub", "school/labhub/lab1/esp-a/co2") == NodeTopic(
        "lab1", "esp-a", "co2")
    for topic in ("labhub/lab1/esp-a/state", "labhub/lab1/esp-a/cmd", "labhub/hub/x/status",
                  "labhub/lab1/esp-a/cmd/reply", "labhub/lab1/temp", "other/lab1/esp-a/temp",
                  "labhubx/lab1/esp-a/temp"):
        assert parse_topic("labhub", topic) is None, topic
    with pytest.raises(TopicError, match="must not be empty"):
        parse_topic("labhub", "labhub//esp-a/temp")


def test_payload_decoding_per_leaf() -> None:
    assert decode_message("temperature", b" 21.5\n") == [Sample("temperature", 21.5)]
    assert decode_message("telemetry", b'{"temp": 21.5, "ts": 1714564800}') == [
        Sample("temp", 21.5, 1714564800 * US_PER_S)]
    assert decode_message("telemetry", b'{"temp": 1}\n{"temp": 2, "ts": 1714564800}\n') == [
        Sample("temp", 1.0), Sample("temp", 2.0, 1714564800 * US_PER_S)]
    assert decode_message("telemetry", b'{"ts": 1714564800000, "values": {"t": 1}}') == [
        Sample("t", 1.0, 1714564800 * US_PER_S)]
    influx = decode_message("influx", b"feinstaub,node=esp8266-1 SDS_P1=5.38 1714564800000000000")
    assert influx == [Sample("SDS_P1", 5.38, 1714564800 * US_PER_S)]  # the topic names the node
    for leaf, bad in (("temperature", b"warm"), ("temperature", b"\xff"), ("telemetry", b"{"),
                      ("telemetry", b'{"t": "warm"}'), ("influx", b"no fields here")):
        with pytest.raises(DecodeError):
            decode_message(leaf, bad)


def test_settings_refuse_what_cannot_work() -> None:
    assert MqttSettings().client_id.startswith("labhub-")
    for bad in ({"client_id": "a/b"}, {"topic_prefix": "lab/#"}, {"topic_prefix": "/lab"},
                {"reconnect_min_s": 5, "reconnect_max_s": 2}, {"tls_cert_file": "c.pem"},
                {"protocol": "3.1"}):
        with pytest.raises(ValidationError):
            MqttSettings(**bad)
    secret = MqttSettings.model_validate({"username": "u", "password": "hunter2"})
    assert "hunter2" not in repr(secret)


# -- the real broker: formats ------------------------------------------------------------------


def test_thingsboard_json_lines_influx_and_bare_numbers_are_stored_and_queryable(
    broker: MosquittoBroker, pipeline: IngestPipeline, engine: Engine
) -> None:
    seen: list[tuple[str, str]] = []
    t = T0_MS
    messages = [
        ("labhub/lab1/esp-a/telemetry", '{"temperature": 22.5}', 1),  # ThingsBoard shape 1
        ("labhub/lab1/esp-a/telemetry", '[{"humidity": 40}, {"pressure": 1013}]', 2),  # shape 2
        ("labhub/lab1/esp-b/telemetry",
         f'{{"ts": {t}, "values": {{"temperature": 21.0, "humidity": 35}}}}', 2),  # shape 3
        ("labhub/lab1/esp-b/telemetry",
         f'[{{"ts": {t + 1000}, "values": {{"temperature": 21.5}}}},'
         f' {{"ts": {t + 2000}, "values": {{"temperature": 22.0}}}}]', 2),  # shape 4
        ("labhub/lab1/esp-c/telemetry", f'{{"co2": 612, "ts": {t // 1000}}}', 1),  # JSON line
        ("labhub/lab2/airrohr-1/influx",
         f"feinstaub,node=esp8266-12345 SDS_P1=5.38,SDS_P2=2.1 {t * 10**6}\n"
         f"feinstaub,node=esp8266-12345 SDS_P1=5.5,SDS_P2=2.2 {(t + 1000) * 10**6}", 4),
        ("labhub/lab2/uno-wifi/temperature", "21.5", 1),  # a bare number per channel
    ]
    bridge = hub(broker, pipeline, on_device=lambda d, s: seen.append((d, s)))
    try:
        with Publisher(broker) as node:
            for topic, payload, _ in messages:
                node.publish(topic, payload)
            node.wait_all()
        wait_for(lambda: bridge.status.stats.acked == len(messages), what="all acknowledged")
    finally:
        bridge.stop()
    expected = sum(n for _, _, n in messages)
    stats = bridge.status.stats
    assert (stats.received, stats.readings, stats.stored) == (len(messages), expected, expected)
    assert _count(engine, readings_table) == expected
    assert _count(engine, dead_letters) == 0
    assert seen == [("esp-a", "lab1"), ("esp-b", "lab1"), ("esp-c", "lab1"),
                    ("airrohr-1", "lab2"), ("uno-wifi", "lab2")]
    t_us = t * 1000
    assert _series_values(engine, "esp-b", "temperature") == [
        (t_us, 21.0), (t_us + US_PER_S, 21.5), (t_us + 2 * US_PER_S, 22.0)]
    assert _series_values(engine, "airrohr-1", "SDS_P1") == [(t_us, 5.38), (t_us + US_PER_S, 5.5)]
    assert _series_values(engine, "esp-c", "co2") == [(t_us, 612.0)]
    assert [v for _, v in _series_values(engine, "esp-a", "humidity")] == [40.0]
    assert [v for _, v in _series_values(engine, "uno-wifi", "temperature")] == [21.5]
    with engine.connect() as conn:
        assert {s.device for s in queries.list_series(conn=conn, site="lab2")} == {
            "airrohr-1", "uno-wifi"}


def test_bad_payloads_become_dead_letters_and_other_topics_are_ignored(
    broker: MosquittoBroker, pipeline: IngestPipeline, engine: Engine
) -> None:
    t = T0_MS
    good = [
        ("labhub/lab1/esp-a/temperature", "20.5"),
        ("labhub/lab1/esp-a/telemetry", f'{{"ts": {t}, "values": {{"humidity": 40}}}}'),
        ("labhub/lab1/esp-b/influx", f"air co2=600i {t * 10**6}"),
    ]
    bad: list[tuple[str, str | bytes, str]] = [
        ("labhub/lab1/esp-a/temperature", "warm", "expected one number"),
        ("labhub/lab1/esp-a/telemetry", '{"temperature": 21', "not valid JSON"),
        ("labhub/lab1/esp-a/telemetry", '{"temperature": "warm"}', "is not a number"),
        ("labhub/lab1/esp-b/influx", "air co2", "influx"),
        ("labhub/lab1/esp-b/temperature", b"\xff\xfe", "not UTF-8"),
        ("labhub//esp-b/temperature", "20", "must not be empty"),
    ]
    future = ("labhub/lab1/esp-c/telemetry",
              f'{{"ts": {now_us() // 1000 + 86_400_000}, "values": {{"temperature": 20}}}}')
    ignored = [("labhub/lab1/esp-a/state", "{}"), ("labhub/lab1/esp-a/cmd", "on"),
               ("labhub/lab1/esp-a/status", "online")]
    unseen = [("other/lab1/esp-a/temperature", "1"), ("labhub/lab1/esp-a/cmd/reply", "ok"),
              ("labhub/lab1/temperature", "1")]
    with Publisher(broker, "old-node") as old:  # a retained value from before the hub
        old.publish("labhub/lab1/esp-old/temperature", "19.0", retain=True)
        old.wait_all(routed=False)
    bridge = hub(broker, pipeline)
    try:
        with Publisher(broker) as node:
            sent = [*good, *[(tp, p) for tp, p, _ in bad], future, *ignored]
            for topic, payload in sent:
                node.publish(topic, payload)
            node.wait_all()
        with Publisher(broker, "node-2") as stranger:
            for topic, payload in unseen:
                stranger.publish(topic, payload)
            stranger.wait_all(routed=False)
        delivered = len(sent)
        wait_for(lambda: bridge.status.stats.acked == delivered, what="all acknowledged")
    finally:
        bridge.stop()
    stats = bridge.status.stats
    assert stats.received == delivered  # not the retained value, not the other topics
    assert stats.ignored == len(ignored)
    assert stats.stored == len(good)
    assert stats.rejected == len(bad) + 1
    assert _count(engine, readings_table) == len(good)
    with engine.connect() as conn:
        rows = conn.execute(select(dead_letters).order_by(dead_letters.c.id)).all()
    assert len(rows) == len(bad) + 1
    assert {r.source for r in rows} == {"mqtt"}
    letters = {(r.device, r.reason, bytes(r.payload)) for r in rows}
    for topic, payload, why in bad:
        raw = payload if isinstance(payload, bytes) else payload.encode()
        device = None if "//" in topic else topic.split("/")[2]  # a broken topic names none
        assert any(d == device and r.startswith(f"topic {topic}: ") and why in r and p == raw
                   for d, r, p in letters), (topic, why, letters)
    assert any(d == "esp-c" and "in the future" in r for d, r, _ in letters)


# -- acknowledged only when durable --------------------------------------------------------------


class _GatedWriter:
    """A writer seam that waits for permission before each batch: storage falling behind."""

    def __init__(self, real: BatchWriter, gate: threading.Semaphore,
                 writing: threading.Event) -> None:
        self.real, self.gate, self.writing = real, gate, writing

    def write(self, groups: Any, dead: list[DeadLetterRow] | tuple[()] = (),
              hooks: Any = ()) -> list[int]:
        self.writing.set()
        self.gate.acquire()
        return self.real.write(groups, dead, hooks)

    def close(self) -> None:
        self.real.close()


class _GatedStore(ReadingStore):
    def __init__(self, engine: Engine) -> None:
        super().__init__(engine)
        self.gate = threading.Semaphore(0)
        self.writing = threading.Event()  # the writer holds a batch and waits at the gate

    def writer(self) -> BatchWriter:
        return _GatedWriter(super().writer(), self.gate, self.writing)  # type: ignore[return-value]

    def open_gate(self) -> None:
        for _ in range(10_000):
            self.gate.release()


def _reading_acks(bridge: MqttBridge) -> int:
    """PUBACKs for reading messages: without the hub's own status messages, which an MQTT
    3.1.1 hub receives back (3.1.1 has no no-local subscription) and ignores."""
    stats = bridge.status.stats
    return stats.acked - stats.ignored


@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
def test_nothing_is_acknowledged_before_commit_so_a_hub_stopped_early_gets_it_again(
    broker: MosquittoBroker, engine: Engine, protocol: str
) -> None:
    """Injected: storage held back, hub stopped before its COMMIT. Kept: every message,
    redelivered by the broker to the next hub session and stored once."""
    store = _GatedStore(engine)
    n = 20
    with IngestPipeline(store, flush_interval_s=0.01) as pipeline:
        first = hub(broker, pipeline, protocol=protocol)
        try:
            with Publisher(broker) as node:
                for i in range(n):
                    node.publish("labhub/lab1/esp-a/telemetry",
                                 f'{{"ts": {T0_MS + i}, "values": {{"temperature": {i}}}}}')
                node.wait_all()
            wait_for(lambda: first.status.stats.readings == n, what="all handed to the pipeline")
            assert store.writing.wait(5)
            time.sleep(0.1)  # time enough for any PUBACK that was (wrongly) due to go out
            assert _reading_acks(first) == 0
            assert not first.drain(0.1)
        finally:
            first.stop(timeout=0.1)  # gives up waiting: nothing committed, nothing acked
        assert _reading_acks(first) == 0
        store.open_gate()
        pipeline.flush(10)
        assert _count(engine, readings_table) == n  # durable now, but never acknowledged

        second = hub(broker, pipeline, protocol=protocol)  # the broker kept the session
        try:
            wait_for(lambda: _reading_acks(second) == n, what="the redelivered messages")
            assert second.status.session_present
        finally:
            second.stop()
        stats = second.status.stats
        assert stats.received - stats.ignored == n and stats.redelivered >= n
        assert (stats.stored, stats.duplicates) == (0, n)  # client timestamps: stored once
        assert _count(engine, readings_table) == n

        third = hub(broker, pipeline, protocol=protocol)  # acknowledged: nothing comes back
        try:
            with Publisher(broker) as node:
                node.publish("labhub/lab1/esp-a/temperature", "1.5")
                node.wait_all()
            wait_for(lambda: _reading_acks(third) == 1, what="the marker")
        finally:
            third.stop()
        assert third.status.stats.readings == 1


def test_a_malformed_message_redelivered_after_a_restart_is_one_dead_letter(
    broker: MosquittoBroker, engine: Engine
) -> None:
    """Injected: storage held back, the hub stopped before its COMMIT, so the broker
    delivers everything again (DUP) to the next hub session: a payload that does not
    decode, a topic with an empty level, a bare number the pipeline refuses (NaN) and a
    good reading. Kept: each dead letter once, with its topic in its own column, the
    reading once; without its delivery record each would be stored twice."""
    store = _GatedStore(engine)
    sent = [("labhub/lab1/esp-a/temperature", "warm"), ("labhub//esp-a/temperature", "20"),
            ("labhub/lab1/esp-a/humidity", "nan"), ("labhub/lab1/esp-a/temperature", "21.5")]
    with IngestPipeline(store, flush_interval_s=0.01) as pipeline:
        first = hub(broker, pipeline)
        try:
            with Publisher(broker) as node:
                for topic, payload in sent:
                    node.publish(topic, payload)
                node.wait_all()
            wait_for(lambda: pipeline.counters()["rejected"] == 3, what="three dead letters")
            assert store.writing.wait(5)
        finally:
            first.stop(timeout=0.1)  # nothing committed, nothing acknowledged
        assert _reading_acks(first) == 0
        store.open_gate()
        pipeline.flush(10)
        assert _count(engine, dead_letters) == 3  # durable, never acknowledged
        second = hub(broker, pipeline)
        try:
            wait_for(lambda: _reading_acks(second) == len(sent), what="the redeliveries")
        finally:
            second.stop()
        assert second.status.stats.redelivered >= len(sent)
    assert _count(engine, readings_table) == 1
    with engine.connect() as conn:
        rows = conn.execute(select(dead_letters).order_by(dead_letters.c.topic)).all()
        assert [(r.topic, bytes(r.payload)[:40]) for r in rows] == [
            ("labhub//esp-a/temperature", b"20"),
            ("labhub/lab1/esp-a/humidity", b'{"channel": "humidity", "value": "nan", '),
            ("labhub/lab1/esp-a/temperature", b"warm")]
        assert [d.reason for d in queries.list_dead_letters(
            conn=conn, topic="labhub/lab1/esp-a/temperature")] == [
            "topic labhub/lab1/esp-a/temperature: number: expected one number like 21.5, "
            "got 'warm'"]
        assert queries.count_dead_letters(conn=conn, source="mqtt",
                                          topic="labhub/lab1/esp-a/humidity") == 1


def test_rejects_show_and_filter_the_mqtt_topic_in_the_api_and_the_cli(
    broker: MosquittoBroker, database_url: str, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A malformed message through the real broker into a running hub: the API and
    ``labhub rejects`` list its topic, and filter by it; an HTTP dead letter has none."""
    from fastapi.testclient import TestClient
    from typer.testing import CliRunner

    from labhub.app import create_app
    from labhub.cli import app as cli
    from labhub.settings import Settings

    settings = Settings.model_validate({
        "data_dir": tmp_path / "data", "database_url": database_url, "serial_scan": False,
        "mqtt": {"host": broker.host, "port": broker.port, "client_id": "hub-rejects"}})
    topic = "labhub/lab1/esp-r/telemetry"
    with as_admin(TestClient(create_app(settings))) as client:
        mqtt = client.app.state.hub.mqtt  # type: ignore[attr-defined]
        wait_for(lambda: mqtt.status.subscribed, what="the hub to subscribe")
        with Publisher(broker) as node:
            node.publish(topic, '{"temperature": 21')
            node.wait_all()
        wait_for(lambda: mqtt.status.stats.rejected == 1, what="the dead letter")
        assert mqtt.drain(5)
        assert client.post("/api/v1/readings", content=b"not json",
                           headers={"content-type": "application/json"}).status_code == 400
        every = client.get("/api/v1/rejects").json()
        assert sorted((i["source"], i["topic"]) for i in every["items"]) == [
            ("http", None), ("mqtt", topic)]
        only = client.get("/api/v1/rejects", params={"topic": topic}).json()
        assert only["total"] == 1 and only["items"][0]["device"] == "esp-r"
        assert client.get("/api/v1/rejects", params={"topic": "labhub/x/y/z"}).json()[
            "total"] == 0
    monkeypatch.setenv("LABHUB_DATABASE_URL", database_url)
    monkeypatch.setenv("LABHUB_DATA_DIR", str(tmp_path / "data"))
    result = CliRunner().invoke(cli, ["rejects", "--topic", topic])
    assert result.exit_code == 0, result.output
    assert f"on {topic}" in result.output and "1 rejected in all" in result.output


def test_acknowledgements_follow_commits_in_arrival_order_with_the_fake_client(
    sqlite_engine: Engine,
) -> None:
    store = _GatedStore(sqlite_engine)
    with IngestPipeline(store, flush_interval_s=0.01) as pipeline:
        bridge = MqttBridge(MqttSettings(client_id="hub-fake"), pipeline,
                            client_class=FakeMqttClient).start()
        fake = bridge.client
        assert isinstance(fake, FakeMqttClient)
        try:
            assert bridge.status.connected and fake.subscriptions == ["labhub/+/+/+"]
            m1 = fake.deliver("labhub/lab1/uno/temperature", "20.5")
            m2 = fake.deliver("labhub/lab1/uno/state", "{}")  # ignored, but after m1
            m3 = fake.deliver("labhub/lab1/uno/temperature", "oops")  # a dead letter
            fake.deliver("labhub/lab1/uno/temperature", "20.7", qos=0)  # needs no ack
            assert store.writing.wait(5)
            time.sleep(0.05)
            assert fake.acked == []  # m2 is not acknowledged ahead of m1
            fake.reconnect_now()  # the connection drops before the commit
            store.open_gate()
            assert bridge.drain(5)
            assert fake.acked == [m1, m2, m3]  # only the redeliveries, in order
            assert bridge.status.stats.redelivered == 3
        finally:
            bridge.stop()
    assert bridge.status.stats.acked == 3
    assert (fake.published[0], fake.published[-1]) == (
        ("labhub/hub/hub-fake/status", b"online", 1, True),
        ("labhub/hub/hub-fake/status", b"offline", 1, True))
    # 20.5 once: its redelivery reuses the arrival time recorded with it; 20.7 (QoS 0).
    assert _count(sqlite_engine, readings_table) == 2
    assert _count(sqlite_engine, dead_letters) == 1  # "oops" delivered twice, kept once


def test_a_timed_message_with_a_refused_reading_redelivered_is_one_dead_letter(
    sqlite_engine: Engine,
) -> None:
    """Injected: a QoS 1 message whose readings carry their own times, one a day ahead
    (refused by the pipeline), and the connection dropped before its COMMIT, so the
    broker delivers it again (DUP). Kept: the good reading once (by its key) and the
    refused one as one dead letter, not one per delivery."""
    store = _GatedStore(sqlite_engine)
    now_ms = now_us() // 1000
    body = json.dumps([{"ts": now_ms - 1000, "values": {"t": 20.5}},
                       {"ts": now_ms + 86_400_000, "values": {"t": 99.0}}])
    with IngestPipeline(store, flush_interval_s=0.01) as pipeline:
        bridge = MqttBridge(MqttSettings(client_id="hub-timed"), pipeline,
                            client_class=FakeMqttClient).start()
        fake = bridge.client
        assert isinstance(fake, FakeMqttClient)
        try:
            mid = fake.deliver("labhub/lab1/esp-t/telemetry", body)
            assert store.writing.wait(5)
            fake.reconnect_now()  # the connection drops before the commit
            store.open_gate()
            assert bridge.drain(5)
            assert fake.acked == [mid]  # the redelivery, once durable
        finally:
            bridge.stop()
    assert bridge.status.stats.redelivered == 1
    assert _count(sqlite_engine, readings_table) == 1
    assert _count(sqlite_engine, dead_letters) == 1
    with sqlite_engine.connect() as conn:
        (letter,) = conn.execute(select(dead_letters)).all()
    assert letter.topic == "labhub/lab1/esp-t/telemetry" and "future" in letter.reason


def test_a_burst_is_written_and_acknowledged_without_waiting_for_the_flush_interval(
    sqlite_engine: Engine,
) -> None:
    """The pipeline waits up to its flush interval (here 60 s) for more readings before a
    write; the bridge has batched its burst already, so its readings are committed and
    acknowledged at once: the live latency of an MQTT reading is not the flush interval."""
    with IngestPipeline(ReadingStore(sqlite_engine), flush_interval_s=60) as pipeline:
        bridge = MqttBridge(MqttSettings(client_id="hub-prompt"), pipeline,
                            client_class=FakeMqttClient).start()
        fake = bridge.client
        assert isinstance(fake, FakeMqttClient)
        try:
            mids = [fake.deliver("labhub/lab1/esp-p/temperature", "21.5"),
                    fake.deliver("labhub/lab1/esp-p/temperature", "oops")]  # a dead letter
            assert bridge.drain(10), "acknowledged only after the flush interval"
            assert fake.acked == mids
        finally:
            bridge.stop()
    assert _count(sqlite_engine, readings_table) == 1
    assert _count(sqlite_engine, dead_letters) == 1


def test_a_failed_write_is_not_acknowledged(
    sqlite_engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    class Broken(ReadingStore):
        def writer(self) -> BatchWriter:
            raise OSError("disk is full")

    monkeypatch.setattr("sensors.pipeline.WRITE_RETRY_FIRST_S", 0.001)
    with IngestPipeline(Broken(sqlite_engine), flush_interval_s=0.01) as pipeline, \
            MqttBridge(MqttSettings(client_id="hub-fake"), pipeline,
                       client_class=FakeMqttClient) as bridge:
        fake = bridge.client
        assert isinstance(fake, FakeMqttClient)
        fake.deliver("labhub/lab1/uno/temperature", "20.5")
        assert bridge.drain(10)
        assert fake.acked == []
        assert bridge.status.stats.failed == 1


def test_qos0_beyond_what_the_hub_can_hold_is_dropped_and_counted_but_qos1_never(
    sqlite_pipeline: IngestPipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("firmware_bridge.mqtt.MAX_WAITING_QOS0", 5)
    registering = threading.Event()
    registered = threading.Event()

    def slow_registry(device: str, site: str) -> None:  # the worker is busy meanwhile
        registering.set()
        assert registered.wait(5)

    with MqttBridge(MqttSettings(client_id="hub-fake"), sqlite_pipeline,
                    on_device=slow_registry, client_class=FakeMqttClient) as bridge:
        fake = bridge.client
        assert isinstance(fake, FakeMqttClient)
        fake.deliver("labhub/lab1/uno/temperature", "1", qos=0)
        assert registering.wait(5)
        for i in range(10):
            fake.deliver("labhub/lab1/uno/temperature", str(i), qos=0)
            fake.deliver("labhub/lab1/uno/humidity", str(i), qos=1)
        registered.set()
        assert bridge.drain(10)
        stats = bridge.status.stats
    # One message held by the worker, then QoS 0 and 1 alternating: the QoS 0 ones are taken
    # while fewer than 5 wait (two of them), the QoS 1 ones always.
    assert (stats.received, stats.dropped) == (21, 8)
    assert stats.stored + stats.duplicates == 13
    assert stats.acked == 10  # every QoS 1 message


# -- faults ---------------------------------------------------------------------------------


def test_broker_killed_mid_stream_loses_nothing_and_stores_each_reading_once(
    broker: MosquittoBroker, engine: Engine
) -> None:
    """Injected: SIGKILL of the broker while the hub holds 200 received readings it has
    not committed (so not acknowledged) and the node has 100 sent but not acknowledged;
    restart. Kept: all 500 readings, each stored once.

    The broker saves and is frozen (SIGSTOP) before the kill, so that the kill cannot land
    between Mosquitto acknowledging a node's message and saving it: Mosquitto 2.0 sends
    that PUBACK first, so a kill there can lose the message whatever the hub does (a
    free-running kill lost 1 to 4 of 500 in 3 of 20 runs).
    """
    n, before, in_flight = 500, 200, 100
    store = _GatedStore(engine)

    def reading(i: int) -> str:
        return f'{{"ts": {T0_MS + i}, "values": {{"temperature": {i / 10}}}}}'

    with IngestPipeline(store, flush_interval_s=0.01) as pipeline:
        bridge = hub(broker, pipeline)
        try:
            with Publisher(broker) as node:
                for i in range(before):
                    node.publish("labhub/lab1/esp-a/telemetry", reading(i))
                node.wait_all()
                wait_for(lambda: bridge.status.stats.received == before, what="the hub has them")
                broker.save()  # autosave does not count messages in flight (see mqtt_broker)
                broker.freeze()
                for i in range(before, before + in_flight):  # sent, never acknowledged
                    node.publish("labhub/lab1/esp-a/telemetry", reading(i))
                time.sleep(0.1)
                assert node.acked_count() == before
                broker.kill()
                wait_for(lambda: not bridge.status.connected, what="the hub to notice")
                assert bridge.status.stats.acked == 0
                store.open_gate()  # the hub commits what it has: its acks must not go out
                broker.start()
                for i in range(before + in_flight, n):  # queued by paho until reconnected
                    node.publish("labhub/lab1/esp-a/telemetry", reading(i))
                node.wait_all(30)
            wait_for(lambda: _count(engine, readings_table) == n, 30, "all readings stored")
            wait_for(lambda: bridge.status.stats.acked == n, what="every delivery acknowledged")
        finally:
            bridge.stop()
    assert _count(engine, readings_table) == n
    assert sorted(v for _, v in _series_values(engine, "esp-a", "temperature")) == [
        i / 10 for i in range(n)]
    stats = bridge.status.stats
    assert stats.connects == 2
    # The 200 the hub held were delivered again by the restarted broker: stored once.
    assert (stats.received, stats.redelivered, stats.duplicates) == (n + before, before, before)
    assert stats.stored == n


@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
def test_messages_published_while_the_hub_is_away_arrive_when_it_returns(
    broker: MosquittoBroker, sqlite_pipeline: IngestPipeline, sqlite_engine: Engine,
    protocol: str,
) -> None:
    hub(broker, sqlite_pipeline, protocol=protocol).stop()  # the session and subscription exist
    n = 50
    with Publisher(broker) as node:
        for i in range(n):
            node.publish("labhub/lab1/esp-a/temperature", str(i))
        node.wait_all()  # a PUBACK with "no matching subscribers" would fail here
    back = hub(broker, sqlite_pipeline, protocol=protocol)
    try:
        wait_for(lambda: back.status.stats.stored == n, what="the queued messages")
        assert back.drain(5)
        assert back.status.session_present
    finally:
        back.stop()
    assert [v for _, v in _series_values(sqlite_engine, "esp-a", "temperature")] == [
        float(i) for i in range(n)]


@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
def test_a_wrong_password_says_so_without_a_crash_loop_and_the_right_one_connects(
    tmp_path: Path, sqlite_pipeline: IngestPipeline, protocol: str
) -> None:
    threads_before = threading.active_count()
    with MosquittoBroker(tmp_path / "auth", users={"hub": "s3cret"}) as secured:
        settings = hub_settings(secured, username="hub", password="wrong", protocol=protocol)
        with MqttBridge(settings, sqlite_pipeline) as bridge:
            wait_for(lambda: "not authorised" in bridge.status.message, what="refusal")
            time.sleep(1.5)  # a retry or two, with a backoff
            status = bridge.status
            assert not status.connected
            assert status.message == (
                "broker refused: not authorised: check the MQTT user name and password")
            assert status.stats.connects == 0
            assert threading.active_count() <= threads_before + 2  # paho's loop, our worker
        assert secured.log().count("not authorised") <= 3  # 1 s, then 2 s between attempts
        good = hub(secured, sqlite_pipeline, username="hub", password="s3cret",
                   protocol=protocol)
        try:
            assert good.status.message == f"connected to {secured.host}:{secured.port}"
        finally:
            good.stop()
    assert threading.active_count() == threads_before


def test_a_hub_started_before_its_broker_says_why_and_connects_when_it_comes(
    tmp_path: Path, sqlite_pipeline: IngestPipeline
) -> None:
    later = MosquittoBroker(tmp_path / "later")
    try:
        with MqttBridge(hub_settings(later), sqlite_pipeline) as bridge:
            wait_for(lambda: "cannot reach broker" in bridge.status.message, what="the reason")
            assert "Connection refused" in bridge.status.message
            assert not bridge.status.connected
            later.start()
            wait_for(lambda: bridge.status.connected, what="the connection")
            assert bridge.status.message == f"connected to {later.host}:{later.port}"
    finally:
        later.kill()


def test_two_hubs_with_one_client_id_are_told_apart_in_the_status(
    broker: MosquittoBroker, sqlite_pipeline: IngestPipeline
) -> None:
    first = hub(broker, sqlite_pipeline)
    second = MqttBridge(hub_settings(broker), sqlite_pipeline)
    try:
        second.start()
        # Mosquitto 2.0 closes the older connection without a reason code: the pattern of
        # connections lost right after they were made is what shows it.
        wait_for(lambda: any("has another client connected with client id 'hub-test'?"
                             in b.status.message for b in (first, second)),
                 what="the client id clash reported")
    finally:
        second.stop()
        first.stop()


# -- the hub's own messages --------------------------------------------------------------------


def test_birth_will_and_state_messages(
    broker: MosquittoBroker, sqlite_pipeline: IngestPipeline
) -> None:
    status_topic = "labhub/hub/hub-test/status"
    watcher = Watcher(broker, "labhub/#")
    try:
        bridge = hub(broker, sqlite_pipeline)
        try:
            assert bridge.publish_state("lab1", "uno-1", {"servo": 90, "led": 1})
            wait_for(lambda: b'{"servo":90,"led":1}' in watcher.payloads(), what="the state")
            assert ("labhub/lab1/uno-1/state", b'{"servo":90,"led":1}', False) in watcher.got
            assert bridge.status.stats.received == 0  # MQTT 5 no-local: not its own echo
            # The hub's connection dies without a DISCONNECT: the broker sends its will.
            client = bridge.client
            assert client is not None
            sock = client.socket()
            assert isinstance(sock, socket.socket)
            sock.shutdown(socket.SHUT_RDWR)
            wait_for(lambda: watcher.payloads().count(b"online") == 2, what="online again")
            status = [p for t, p, _ in watcher.got if t == status_topic]
            assert status == [b"online", b"offline", b"online"]
            assert bridge.status.stats.connects == 2
            with pytest.raises(ValueError, match="topic level"):
                bridge.publish_state("lab/1", "uno-1", {})
        finally:
            bridge.stop()
        wait_for(lambda: watcher.payloads()[-1:] == [b"offline"], what="offline on stop")
    finally:
        watcher.close()
    retained = Watcher(broker, status_topic)  # a dashboard opened later sees the last word
    try:
        wait_for(lambda: retained.got == [(status_topic, b"offline", True)], what="retained")
    finally:
        retained.close()


def test_states_beyond_what_paho_can_queue_are_counted_as_lost(
    broker: MosquittoBroker, sqlite_pipeline: IngestPipeline
) -> None:
    """Injected: the broker gone while the hub keeps publishing. paho queues in memory up
    to its 16-bit packet ids; past that it drops: counted, not silent."""
    bridge = hub(broker, sqlite_pipeline)
    try:
        broker.kill()
        wait_for(lambda: not bridge.status.connected, what="the hub to notice")
        assert "lost" in bridge.status.message
        queued = 0
        while bridge.publish_state("lab1", "uno-1", {"led": queued % 2}):
            queued += 1
        # 65,535 packet ids, less the hub's birth message if its PUBACK had not come back
        assert 65_534 <= queued <= 65_535
        assert bridge.status.stats.publish_failures == 1
    finally:
        bridge.stop()


def test_start_and_stop_leave_no_threads_even_without_a_broker(
    tmp_path: Path, sqlite_pipeline: IngestPipeline, broker: MosquittoBroker
) -> None:
    before = {t.name for t in threading.enumerate()}
    for _ in range(3):
        hub(broker, sqlite_pipeline).stop()
    nowhere = MqttBridge(hub_settings(MosquittoBroker(tmp_path / "never")), sqlite_pipeline)
    nowhere.start()
    wait_for(lambda: "cannot reach" in nowhere.status.message, what="a failed attempt")
    nowhere.stop()
    assert nowhere.status.message == "stopped"
    assert {t.name for t in threading.enumerate()} == before


# -- central ingest: a shared subscription ------------------------------------------------------


@pytest.mark.parametrize("protocol", ["3.1.1", "5"])
def test_hubs_in_one_share_group_store_each_message_once_and_split_the_load(
    broker: MosquittoBroker, sqlite_template: Path, tmp_path: Path, protocol: str
) -> None:
    """Two hubs (own client ids, own pipelines and connections, one database file) in
    share group "central": 400 messages without client timestamps, each stored once, and
    each hub took part. Mosquitto 2 shares subscriptions of MQTT 3.1.1 clients too."""
    assert MqttSettings(share_group="central").subscription == "$share/central/labhub/+/+/+"
    with pytest.raises(ValidationError):
        MqttSettings(share_group="a/b")
    path = tmp_path / "central.db"
    shutil.copy(sqlite_template, path)
    n = 400
    engines = [db.make_engine(f"sqlite:///{path}") for _ in range(2)]
    try:
        with IngestPipeline(ReadingStore(engines[0]), flush_interval_s=0.02) as one, \
                IngestPipeline(ReadingStore(engines[1]), flush_interval_s=0.02) as two:
            hubs = [hub(broker, one, client_id="central-a", share_group="central",
                        protocol=protocol),
                    hub(broker, two, client_id="central-b", share_group="central",
                        protocol=protocol)]
            try:
                with Publisher(broker) as node:
                    for i in range(n):
                        node.publish(f"labhub/lab{i % 3}/esp-{i % 4}/count", str(i))
                    node.wait_all()
                wait_for(lambda: sum(_reading_acks(h) for h in hubs) == n, 30,
                         "every message acknowledged by one hub or the other")
            finally:
                for h in hubs:
                    h.stop()
        stats = [h.status.stats for h in hubs]
        assert all(s.stored > 0 for s in stats), [s.stored for s in stats]
        assert sum(s.stored for s in stats) == n
        assert sum(s.duplicates for s in stats) == 0
        with engines[0].connect() as conn:
            values = sorted(v for (v,) in conn.execute(select(readings_table.c.value)))
        assert values == [float(i) for i in range(n)]
    finally:
        for engine in engines:
            engine.dispose()


def test_with_an_acl_the_hub_stores_only_what_it_may_read(
    tmp_path: Path, sqlite_pipeline: IngestPipeline, sqlite_engine: Engine
) -> None:
    """A broker with passwords and an ACL: the hub may read lab1's topics only (and write
    its status); a node may write anywhere under the prefix. What the node publishes for
    lab2 never reaches the hub; lab1's readings are stored."""
    directory = tmp_path / "acl"
    directory.mkdir()
    acl = directory / "acl"
    acl.write_text("user hub\ntopic read labhub/lab1/#\ntopic readwrite labhub/hub/#\n\n"
                   "user node\ntopic write labhub/#\n")
    users = {"hub": "s3cret", "node": "n0de"}
    with MosquittoBroker(directory, users=users, extra=(f"acl_file {acl}",)) as secured:
        bridge = hub(secured, sqlite_pipeline, username="hub", password="s3cret")
        try:
            node = paho.Client(CallbackAPIVersion.VERSION2, client_id="node-acl",
                               protocol=MQTTProtocolVersion.MQTTv5)
            node.username_pw_set("node", "n0de")
            node.connect(secured.host, secured.port)
            node.loop_start()
            try:
                infos = [node.publish(f"labhub/{site}/esp-a/temperature", str(i), qos=1)
                         for i, site in enumerate(["lab2", "lab1", "lab2", "lab1"])]
                for info in infos:
                    info.wait_for_publish(10)
            finally:
                node.disconnect()
                node.loop_stop()
            # One session, in order: had lab2's messages been let through, they would have
            # come before lab1's last one.
            wait_for(lambda: bridge.status.stats.stored == 2, what="lab1's readings")
            assert bridge.drain(5)
            assert bridge.status.connected and bridge.status.subscribed
        finally:
            bridge.stop()
    stats = bridge.status.stats
    assert (stats.received - stats.ignored, stats.stored, stats.rejected) == (2, 2, 0)
    with sqlite_engine.connect() as conn:
        sites = {s.site for s in queries.list_series(conn=conn)}
    assert sites == {"lab1"}
    assert [v for _, v in _series_values(sqlite_engine, "esp-a", "temperature")] == [1.0, 3.0]


def test_reconnection_waits_grow_with_jitter_and_a_lost_broker_is_no_crash_loop(
    tmp_path: Path, sqlite_pipeline: IngestPipeline
) -> None:
    from firmware_bridge.mqtt import RECONNECT_JITTER, reconnect_jitter_s

    assert reconnect_jitter_s(0, 1, 60, 0.9) == 0.0  # the first attempt starts at once
    assert [reconnect_jitter_s(a, 1, 60, 1.0) for a in (1, 2, 3, 4, 7, 40)] == [
        RECONNECT_JITTER * w for w in (1, 2, 4, 8, 60, 60)]  # paho's doubling, capped
    assert reconnect_jitter_s(3, 1, 60, 0.0) == 0.0
    draws = {reconnect_jitter_s(2, 1, 60, d) for d in (0.1, 0.5, 0.9)}
    assert len(draws) == 3 and all(0 <= j < 2 * RECONNECT_JITTER for j in draws)
    # A broker that is not there: attempts back off (1 s, then 2 s, each plus up to half
    # again), they do not spin.
    gone = MosquittoBroker(tmp_path / "gone")
    with MqttBridge(hub_settings(gone), sqlite_pipeline) as bridge:
        wait_for(lambda: bridge.status.stats.attempts >= 2, 10, "a second attempt")
        time.sleep(2.0)
        status = bridge.status
    assert 2 <= status.stats.attempts <= 3, status.stats.attempts
    assert status.stats.connects == 0 and "cannot reach broker" in status.message
