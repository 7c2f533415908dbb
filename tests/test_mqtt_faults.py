"""MQTT ingest under faults, each counting what was published and what was stored: the
hub killed with SIGKILL mid-stream and restarted (a real ``labhub serve`` process), a
database that stops taking writes for seconds (back-pressure up to the broker), and a
flood of malformed payloads among good ones. The broker kill is in test_mqtt.py."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from mqtt_broker import MosquittoBroker, broker_fixture, free_port  # noqa: F401  (fixture)
from sqlalchemy import Engine, func, select, text
from test_mqtt import Publisher, Watcher, _series_values, hub
from waiting import wait_for

from sensors.pipeline import IngestPipeline
from sensors.storage import ReadingStore, dead_letters
from sensors.storage import readings as readings_table

LABHUB = str(Path(sys.executable).with_name("labhub"))


def _count(engine: Engine, table: Any) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(table)).scalar_one())


class HubProcess:
    """``labhub serve`` in a process of its own, with MQTT on and no serial scanning."""

    def __init__(self, tmp: Path, database_url: str, broker: MosquittoBroker) -> None:
        self.tmp = tmp
        self.env = {
            "PATH": os.environ.get("PATH", ""),
            "LABHUB_CONFIG": os.devnull,
            "LABHUB_DATABASE_URL": database_url,
            "LABHUB_DATA_DIR": str(tmp / "data"),
            "LABHUB_SERIAL_SCAN": "false",
            "LABHUB_LOG_LEVEL": "warning",
            "LABHUB_MQTT": json.dumps({
                "host": broker.host, "port": broker.port, "client_id": "hub-killed",
                "reconnect_min_s": 1, "reconnect_max_s": 2,
            }),
        }
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self) -> None:
        self.starts += 1
        log = (self.tmp / f"hub-{self.starts}.log").open("wb")
        try:
            self.process = subprocess.Popen(
                [LABHUB, "serve", "--port", str(free_port())], env=self.env,
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        finally:
            log.close()

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)
        self.process = None

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def log(self) -> str:
        return "".join(p.read_text(errors="replace") for p in sorted(self.tmp.glob("hub-*.log")))


@pytest.fixture
def hub_process(tmp_path: Path, database_url: str, broker: MosquittoBroker) -> Iterator[HubProcess]:
    process = HubProcess(tmp_path, database_url, broker)
    try:
        yield process
    finally:
        process.kill()


def test_hub_killed_mid_stream_stores_every_acknowledged_message_exactly_once(
    broker: MosquittoBroker, engine: Engine, hub_process: HubProcess
) -> None:
    """Injected: SIGKILL of a `labhub serve` process while a node publishes 3,000 bare
    numbers (no client timestamps: each reading's time is its arrival), then a restart.
    Kept: every message the node got a PUBACK for, each stored exactly once; what the
    killed hub had committed but not acknowledged came again and was recognised."""
    n = 3000
    topic = "labhub/unassigned/esp-k/count"  # a node at no site: any site of the tree will do
    status = Watcher(broker, "labhub/hub/hub-killed/status")
    try:
        hub_process.start()
        wait_for(lambda: (("labhub/hub/hub-killed/status", b"online", True) in status.got
                          or ("labhub/hub/hub-killed/status", b"online", False) in status.got),
                 30, f"the hub process to subscribe:\n{hub_process.log()}")
        with Publisher(broker) as node:
            for i in range(n // 2):
                node.publish(topic, str(i))
            wait_for(lambda: _count(engine, readings_table) >= n // 10, 60,
                     f"the first readings stored:\n{hub_process.log()}")
            hub_process.kill()  # mid-stream: committed, acknowledged or neither
            at_kill = _count(engine, readings_table)
            for i in range(n // 2, n):  # queued by the broker for the hub's session
                node.publish(topic, str(i))
            node.wait_all(60)
            assert not node.refused
            hub_process.start()
            wait_for(lambda: _count(engine, readings_table) >= n, 90,
                     f"every reading stored:\n{hub_process.log()}")
            time.sleep(0.5)  # anything stored twice would be written by now
        hub_process.stop()
    finally:
        status.close()
    assert at_kill < n
    values = [v for _, v in _series_values(engine, "esp-k", "count")]
    assert sorted(values) == [float(i) for i in range(n)]  # each once: no loss, no twin
    assert _count(engine, readings_table) == n
    assert _count(engine, dead_letters) == 0


class _LockedDatabase:
    """Another connection holding the write lock: SQLite ``BEGIN IMMEDIATE``, PostgreSQL
    ``LOCK TABLE readings``. Writers wait (SQLite's busy timeout, PostgreSQL's lock)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._sqlite: sqlite3.Connection | None = None
        self._pg: Any = None

    def __enter__(self) -> _LockedDatabase:
        if self.engine.dialect.name == "sqlite":
            database = self.engine.url.database
            assert database is not None
            self._sqlite = sqlite3.connect(database, isolation_level=None)
            self._sqlite.execute("BEGIN IMMEDIATE")
        else:
            self._pg = self.engine.connect()
            self._pg.begin()
            self._pg.execute(text("LOCK TABLE readings IN EXCLUSIVE MODE"))
        return self

    def __exit__(self, *exc: object) -> None:
        if self._sqlite is not None:
            self._sqlite.execute("ROLLBACK")
            self._sqlite.close()
        if self._pg is not None:
            self._pg.rollback()
            self._pg.close()


def test_a_stalled_database_holds_acknowledgements_back_and_the_broker_keeps_the_rest(
    broker: MosquittoBroker, engine: Engine
) -> None:
    """Injected: the readings table locked by another connection for 2 s while a node
    publishes 300 messages; the hub's ingest queue holds 50 readings and the broker may
    send it 20 unacknowledged messages. Kept: acknowledgements stop, the hub holds no
    more than 20 unacknowledged messages, the broker the rest; all 300 stored once."""
    n, window = 300, 20
    with IngestPipeline(ReadingStore(engine), flush_interval_s=0.02, max_queued=50) as pipeline:
        bridge = hub(broker, pipeline, receive_maximum=window)
        try:
            with Publisher(broker) as node:
                node.publish("labhub/lab1/esp-s/count", "-1")
                wait_for(lambda: bridge.status.stats.acked == 1, what="the first message")
                with _LockedDatabase(engine):
                    for i in range(n):
                        node.publish("labhub/lab1/esp-s/count", str(i))
                    node.wait_all()  # the broker has every message: it queues them
                    wait_for(lambda: bridge.status.stats.received == 1 + window, 10,
                             "the broker's in-flight window to fill",
                             state=lambda: (bridge.status.stats, pipeline.counters()))
                    time.sleep(0.5)  # long enough for an acknowledgement that was due
                    stats = bridge.status.stats
                    assert (stats.acked, stats.received) == (1, 1 + window)
                    assert pipeline.counters()["queued"] <= 50
            wait_for(lambda: bridge.status.stats.acked == n + 1, 30, "the rest after the lock")
        finally:
            bridge.stop()
    values = [v for _, v in _series_values(engine, "esp-s", "count")]
    assert sorted(values) == [float(i) for i in range(-1, n)]
    assert bridge.status.stats.duplicates == 0


def test_a_flood_of_malformed_payloads_among_good_ones(
    broker: MosquittoBroker, engine: Engine
) -> None:
    """Injected: 1,200 messages, every third one malformed in one of six ways. Kept: every
    good reading stored, every bad message in the dead-letter table with its topic (in the
    reason), its exact payload and the reason; the hub connected throughout."""
    def malformed(i: int) -> tuple[str, bytes, str]:
        """The i-th bad message: (topic, payload, what the reason says)."""
        kinds: list[tuple[str, bytes, str]] = [
            ("labhub/lab1/esp-f/temperature", f"warm {i}".encode(), "expected one number"),
            ("labhub/lab1/esp-f/temperature", b"", "expected one number"),
            ("labhub/lab1/esp-f/temperature", b"\xff\xfe" + str(i).encode(), "not UTF-8"),
            ("labhub/lab1/esp-f/telemetry", f'{{"temperature": {i}'.encode(), "JSON"),
            ("labhub/lab1/esp-f/telemetry", f'{{"t{i}": "warm"}}'.encode(), "not a number"),
            ("labhub/lab1/esp-f/influx", f"air co2 {i}".encode(), "influx"),
        ]
        return kinds[(i // 3) % len(kinds)]

    good: list[int] = []
    bad: list[tuple[str, bytes, str]] = []
    sent: list[tuple[str, bytes]] = []
    for i in range(1200):
        if i % 3 == 2:
            topic, payload, why = malformed(i)
            bad.append((topic, payload, why))
            sent.append((topic, payload))
        else:
            good.append(i)
            sent.append(("labhub/lab1/esp-f/count", str(i).encode()))
    with IngestPipeline(ReadingStore(engine), flush_interval_s=0.02) as pipeline:
        bridge = hub(broker, pipeline)
        try:
            with Publisher(broker) as node:
                for topic, payload in sent:
                    node.publish(topic, payload)
                node.wait_all(30)
            wait_for(lambda: bridge.status.stats.acked == len(sent), 30, "all acknowledged")
            assert bridge.status.connected and bridge.status.stats.connects == 1
        finally:
            bridge.stop()
    assert sorted(v for _, v in _series_values(engine, "esp-f", "count")) == [
        float(i) for i in good]
    with engine.connect() as conn:
        rows = conn.execute(select(dead_letters)).all()
    assert len(rows) == len(bad)
    letters = sorted((r.reason.split(": ", 1)[0], bytes(r.payload)) for r in rows)
    assert letters == sorted((f"topic {t}", p) for t, p, _ in bad)
    by_payload = {bytes(r.payload): r.reason for r in rows}
    for _topic, payload, why in bad:
        assert why.lower() in by_payload[payload].lower(), (payload, by_payload[payload])
    stats = bridge.status.stats
    assert (stats.stored, stats.rejected) == (len(good), len(bad))


