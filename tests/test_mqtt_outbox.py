"""The hub's on-disk outbox: what it publishes while the broker is away waits in a SQLite
file, is delivered in order when the broker is back (also after a hub restart), and a
full outbox drops its oldest messages, counted. Against a real Mosquitto."""

from __future__ import annotations

import json
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from mqtt_broker import MosquittoBroker, broker_fixture  # noqa: F401  (fixture "broker")
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from test_mqtt import hub_settings
from waiting import wait_for

from firmware_bridge.mqtt import MqttBridge
from firmware_bridge.outbox import OUTBOX_FILE, WINDOW, Outbox
from labhub import db
from sensors.pipeline import IngestPipeline
from sensors.storage import ReadingStore


@pytest.fixture
def sqlite_pipeline(sqlite_template: Path, tmp_path: Path) -> Iterator[IngestPipeline]:
    """The bridge needs a pipeline; these tests are about what the hub sends, so SQLite."""
    path = tmp_path / "hub.db"
    shutil.copy(sqlite_template, path)
    engine = db.make_engine(f"sqlite:///{path}")
    try:
        with IngestPipeline(ReadingStore(engine), flush_interval_s=0.02) as pipeline:
            yield pipeline
    finally:
        engine.dispose()


DASHBOARD_WINDOW = 100  # messages the broker may send the dashboard before its PUBACKs


class Subscriber:
    """A dashboard on the broker with a persistent session: what is published while it
    (or the broker) is away waits for it. Records (topic, payload, retain) in order."""

    def __init__(self, broker: MosquittoBroker, topic: str, client_id: str = "dashboard") -> None:
        self.lock = threading.Lock()
        self.got: list[tuple[str, bytes, bool]] = []
        self.subscribed = threading.Event()
        self.client = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id,
                                  protocol=MQTTProtocolVersion.MQTTv5)
        self.client.on_message = self._on_message
        self.client.on_connect = lambda c, u, f, r, p: (
            None if f.session_present else c.subscribe(topic, qos=1))
        self.client.on_subscribe = lambda *a: self.subscribed.set()
        self.client.reconnect_delay_set(1, 1)
        properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        properties.SessionExpiryInterval = 600
        # Its own window: after a restart the broker sends again at most this many
        # messages it had sent the dashboard without seeing the PUBACK.
        properties.ReceiveMaximum = DASHBOARD_WINDOW
        self.client.connect(broker.host, broker.port, clean_start=False, properties=properties)
        self.client.loop_start()
        assert self.subscribed.wait(10), "the subscriber did not subscribe"

    def _on_message(self, client: paho.Client, userdata: Any, msg: paho.MQTTMessage) -> None:
        with self.lock:
            self.got.append((msg.topic, bytes(msg.payload), bool(msg.retain)))

    def payloads(self) -> list[bytes]:
        with self.lock:
            return [payload for _, payload, _ in self.got]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def _numbers(payloads: list[bytes]) -> list[int]:
    return [int(json.loads(p)["values"]["n"]) for p in payloads]


def _bridge(broker: MosquittoBroker, pipeline: IngestPipeline, outbox: Outbox) -> MqttBridge:
    return MqttBridge(hub_settings(broker), pipeline, outbox=outbox).start()


# -- the file alone -----------------------------------------------------------------------------


def test_rows_come_back_in_order_and_acknowledged_ones_are_gone(tmp_path: Path) -> None:
    with Outbox(tmp_path / OUTBOX_FILE, max_rows=100, max_bytes=1 << 20) as box:
        box.put([("a/1", b"one", False), ("a/2", b"two", True)])
        box.put([("a/3", b"three", False)])
        rows = box.after(0, 10)
        assert [(r.topic, r.payload, r.retain) for r in rows] == [
            ("a/1", b"one", False), ("a/2", b"two", True), ("a/3", b"three", False)]
        assert [r.topic for r in box.after(rows[0].seq, 1)] == ["a/2"]
        box.delete([rows[1].seq, rows[1].seq, 12345])  # twice, and one never there
        assert [r.topic for r in box.after(0, 10)] == ["a/1", "a/3"]
        assert box.counts() == (2, len("a/1one") + len("a/3three"), 0)


def test_a_full_outbox_drops_the_oldest_not_in_flight_and_the_count_survives(
    tmp_path: Path
) -> None:
    path = tmp_path / OUTBOX_FILE
    with Outbox(path, max_rows=5, max_bytes=1 << 20) as box:
        for n in range(8):
            box.put([("t", str(n).encode(), False)])
        assert [r.payload for r in box.after(0, 10)] == [b"3", b"4", b"5", b"6", b"7"]
        in_flight = box.after(0, 2)[-1].seq  # "3" and "4" were handed to the broker
        assert box.put([("t", b"8", False), ("t", b"9", False)], in_flight_upto=in_flight) == 2
        assert [r.payload for r in box.after(0, 10)] == [b"3", b"4", b"7", b"8", b"9"]
        assert box.counts()[2] == 5
    with Outbox(path, max_rows=5, max_bytes=1 << 20) as again:
        assert again.counts() == (5, 10, 5)  # rows, bytes ("t" plus one digit each), dropped


def test_the_byte_bound_counts_topics_and_payloads(tmp_path: Path) -> None:
    with Outbox(tmp_path / OUTBOX_FILE, max_rows=1000, max_bytes=1024) as box:
        payload = b"x" * 296  # 300 bytes with the topic "t/ñ" (4 bytes in UTF-8)
        for _ in range(4):
            box.put([("t/ñ", payload, False)])
        rows, size, dropped = box.counts()
        assert (rows, size, dropped) == (3, 900, 1)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.text(min_size=1, max_size=30), st.binary(max_size=200),
                          st.booleans()), max_size=30))
def test_what_is_put_comes_back_byte_for_byte(
    tmp_path_factory: Any, messages: list[tuple[str, bytes, bool]]
) -> None:
    path = tmp_path_factory.mktemp("outbox") / OUTBOX_FILE
    with Outbox(path, max_rows=1000, max_bytes=1 << 20) as box:
        box.put(messages)
    with Outbox(path, max_rows=1000, max_bytes=1 << 20) as box:
        assert [(r.topic, r.payload, r.retain) for r in box.after(0, 1000)] == messages


# -- the real broker ------------------------------------------------------------------------------


def test_broker_down_outbox_grows_broker_up_everything_arrives_in_order(
    broker: MosquittoBroker, sqlite_pipeline: IngestPipeline, tmp_path: Path
) -> None:
    dashboard = Subscriber(broker, "labhub/lab1/+/state")
    broker.stop()  # SIGTERM: it saves the dashboard's session
    count = 300  # more than the sender's window of 200
    try:
        with Outbox(tmp_path / OUTBOX_FILE, max_rows=10_000, max_bytes=1 << 24) as box:
            bridge = _bridge(broker, sqlite_pipeline, box)
            try:
                for n in range(count):
                    bridge.publish_state("lab1", "kit-1", {"ts": n, "values": {"n": n}})
                wait_for(lambda: bridge.status.outbox is not None
                         and bridge.status.outbox.queued == count, what="all on disk")
                assert not bridge.status.connected
                broker.start()
                wait_for(lambda: len(dashboard.payloads()) >= count, timeout=30,
                         what="every message at the dashboard")
                assert _numbers(dashboard.payloads()) == list(range(count))
                wait_for(lambda: bridge.status.outbox is not None
                         and bridge.status.outbox.queued == 0, what="the outbox emptied")
                status = bridge.status.outbox
                assert status is not None
                assert (status.delivered, status.dropped, status.refused) == (count, 0, 0)
            finally:
                bridge.stop()
    finally:
        dashboard.close()


def test_the_outbox_survives_a_hub_restart_while_the_broker_is_away(
    broker: MosquittoBroker, sqlite_pipeline: IngestPipeline, tmp_path: Path
) -> None:
    dashboard = Subscriber(broker, "labhub/lab1/+/state")
    broker.stop()
    path = tmp_path / OUTBOX_FILE
    try:
        with Outbox(path, max_rows=10_000, max_bytes=1 << 24) as box:
            first = _bridge(broker, sqlite_pipeline, box)
            try:
                for n in range(50):
                    first.publish_state("lab1", "kit-1", {"ts": n, "values": {"n": n}})
            finally:
                first.stop()  # the hub shuts down with everything still queued
            assert box.counts()[0] == 50
        with Outbox(path, max_rows=10_000, max_bytes=1 << 24) as box:  # the hub again
            second = _bridge(broker, sqlite_pipeline, box)
            try:
                second.publish_state("lab1", "kit-1", {"ts": 50, "values": {"n": 50}})
                broker.start()
                wait_for(lambda: len(dashboard.payloads()) >= 51, timeout=30,
                         what="every message at the dashboard")
                assert _numbers(dashboard.payloads()) == list(range(51))
                wait_for(lambda: box.counts()[0] == 0, what="the outbox emptied")
            finally:
                second.stop()
    finally:
        dashboard.close()


def test_a_full_outbox_drops_the_oldest_counts_them_and_delivers_the_rest(
    broker: MosquittoBroker, sqlite_pipeline: IngestPipeline, tmp_path: Path
) -> None:
    dashboard = Subscriber(broker, "labhub/lab1/+/state")
    broker.stop()
    try:
        with Outbox(tmp_path / OUTBOX_FILE, max_rows=10, max_bytes=1 << 24) as box:
            bridge = _bridge(broker, sqlite_pipeline, box)
            try:
                for n in range(25):
                    bridge.publish_state("lab1", "kit-1", {"ts": n, "values": {"n": n}})
                wait_for(lambda: box.counts()[2] == 15, what="15 dropped")
                status = bridge.status.outbox
                assert status is not None and (status.queued, status.dropped) == (10, 15)
                broker.start()
                wait_for(lambda: len(dashboard.payloads()) >= 10, timeout=30,
                         what="the 10 kept messages at the dashboard")
                wait_for(lambda: box.counts()[0] == 0, what="the outbox emptied")
                assert _numbers(dashboard.payloads()) == list(range(15, 25))
            finally:
                bridge.stop()
    finally:
        dashboard.close()


def test_a_broker_restarted_mid_stream_loses_nothing_and_keeps_the_order(
    broker: MosquittoBroker, sqlite_pipeline: IngestPipeline, tmp_path: Path
) -> None:
    """Injected: the broker stopped and started again twice while 3,000 messages flow.
    Kept: every message, in order; QoS 1 may repeat one whose PUBACK the stop cut off."""
    dashboard = Subscriber(broker, "labhub/lab1/+/state")
    count = 3000
    try:
        with Outbox(tmp_path / OUTBOX_FILE, max_rows=10_000, max_bytes=1 << 24) as box:
            bridge = _bridge(broker, sqlite_pipeline, box)
            try:
                wait_for(lambda: bridge.status.connected, what="connected")
                for n in range(count):
                    bridge.publish_state("lab1", "kit-1", {"ts": n, "values": {"n": n}})
                    if n in (1000, 2000):
                        wait_for(lambda at=n: len(dashboard.payloads()) > at - 500,
                                 timeout=30, what="messages flowing")
                        broker.stop()
                        broker.start()
                wait_for(lambda: box.counts()[0] == 0, timeout=60, what="the outbox emptied")
                wait_for(lambda: len(set(_numbers(dashboard.payloads()))) == count, timeout=30,
                         what="every message at the dashboard")
            finally:
                bridge.stop()
        got = _numbers(dashboard.payloads())
        first_seen = list(dict.fromkeys(got))
        assert first_seen == list(range(count))
        # A repeat is only ever a message sent again right after a restart, never an old
        # one: at each of the two restarts, at most the hub's window (sent to the broker,
        # PUBACK lost) and the dashboard's (sent by the broker, PUBACK lost).
        assert len(got) - count <= 2 * (WINDOW + DASHBOARD_WINDOW), len(got) - count
    finally:
        dashboard.close()


def test_messages_in_flight_when_the_bridge_stopped_are_sent_again_when_it_starts(
    broker: MosquittoBroker, sqlite_pipeline: IngestPipeline, tmp_path: Path
) -> None:
    """Injected: the broker frozen (no PUBACKs) while 5 messages are in flight, the bridge
    stopped and started again. Kept: the 5, from the file, not forgotten in a stale window."""
    dashboard = Subscriber(broker, "labhub/lab1/+/state")
    try:
        with Outbox(tmp_path / OUTBOX_FILE, max_rows=100, max_bytes=1 << 20) as box:
            bridge = _bridge(broker, sqlite_pipeline, box)
            try:
                wait_for(lambda: bridge.status.connected, what="connected")
                broker.freeze()
                try:
                    for n in range(5):
                        bridge.publish_state("lab1", "kit-1", {"ts": n, "values": {"n": n}})
                    wait_for(lambda: bridge.status.outbox is not None
                             and bridge.status.outbox.in_flight == 5, what="5 in flight")
                    bridge.stop(timeout=0.5)
                finally:
                    broker.thaw()
                assert box.counts()[0] == 5
                bridge.start()
                wait_for(lambda: box.counts()[0] == 0, timeout=30, what="the outbox emptied")
                wait_for(lambda: len(set(_numbers(dashboard.payloads()))) == 5, timeout=15,
                         what="the 5 at the dashboard")
            finally:
                bridge.stop()
        assert list(dict.fromkeys(_numbers(dashboard.payloads()))) == list(range(5))
    finally:
        dashboard.close()
