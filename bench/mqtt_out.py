"""MQTT out benchmark: the hub's outbox against a bare paho publisher, into one Mosquitto.

What the hub pays for never losing a state message while the broker is away: every message
goes through a SQLite file (written, published, deleted after its PUBACK) instead of
straight to paho's memory. Three runs per round, each ``--messages`` small JSON state
messages (``{"ts": ..., "values": {"n": ..., "temp": 21.5}}``, ~50 bytes) to a local
Mosquitto started for the benchmark (``max_queued_messages 0``, no persistence), counted by
one QoS 1 subscriber; the clock stops when the subscriber has them all:

- ``bare``: the baseline, a paho publisher (MQTT 5, QoS 1) doing it right without a disk:
  ``publish()`` with its ``rc`` checked and its own window of 200 messages waiting for
  their PUBACK (what the outbox sender keeps too), payloads prebuilt;
- ``drain``: a backlog: the outbox already holds the messages (queued while the broker
  was away, not timed), then :class:`~firmware_bridge.mqtt.MqttBridge` starts and drains it;
- ``live``: the broker is there, and :meth:`MqttBridge.publish_state` is called for each
  message as the hub's pipeline listener would (JSON encoding, the hand-over to the
  outbox thread, the write, the publish, the delete after PUBACK).

It prints each run's rate (median of ``--rounds``), ``ratio drain/bare`` and ``ratio
live/bare`` (1.00 would be free), and per run how many the subscriber got, whether in
order, and the outbox's delivered and dropped counts (must be all and 0). The machine is
shared and noisy: compare the ratios, not the rates.

Run: ``python bench/mqtt_out.py``; ``--smoke`` runs it at a small size in a few seconds
(``make test`` does), which checks that it works and measures nothing worth reading.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import shutil
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

if importlib.util.find_spec("sensors") is None:  # run from a checkout without installing
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import paho.mqtt.client as paho
from _common import free_port
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode, MQTTProtocolVersion

from firmware_bridge.mqtt import MqttBridge, MqttSettings
from firmware_bridge.outbox import OUTBOX_FILE, WINDOW, Outbox
from labhub.db import make_engine, upgrade
from sensors.pipeline import IngestPipeline
from sensors.storage import ReadingStore

MOSQUITTO = os.environ.get("LABHUB_TEST_MOSQUITTO", "/usr/sbin/mosquitto")
TOPIC = "labhub/bench/kit-1/state"
WAIT_S = 300.0  # a run that takes longer than this has failed


def start_broker(directory: Path) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    config = directory / "mosquitto.conf"
    config.write_text("\n".join([
        f"listener {port} 127.0.0.1", "allow_anonymous true", "persistence false",
        "max_queued_messages 0", "max_inflight_messages 0", "log_dest none",
    ]) + "\n")
    process = subprocess.Popen([MOSQUITTO, "-c", str(config)], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return process, port
        except OSError:
            if time.monotonic() > deadline or process.poll() is not None:
                process.kill()
                raise RuntimeError("mosquitto did not start") from None
            time.sleep(0.01)


class Counter:
    """A QoS 1 subscriber that counts, and checks the order of the ``n`` values."""

    def __init__(self, port: int) -> None:
        self.cond = threading.Condition()
        self.count = 0
        self.in_order = True
        self.last = -1
        subscribed = threading.Event()
        self.client = paho.Client(CallbackAPIVersion.VERSION2, client_id="bench-counter",
                                  protocol=MQTTProtocolVersion.MQTTv5)
        self.client.on_message = self._on_message
        self.client.on_connect = lambda c, *a: c.subscribe(TOPIC, qos=1)
        self.client.on_subscribe = lambda *a: subscribed.set()
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        if not subscribed.wait(10):
            raise RuntimeError("the counting subscriber did not subscribe")

    def _on_message(self, client: paho.Client, userdata: Any, msg: paho.MQTTMessage) -> None:
        n = json.loads(msg.payload)["values"]["n"]
        with self.cond:
            if n != self.last + 1:
                self.in_order = False
            self.last = n
            self.count += 1
            self.cond.notify_all()

    def reset(self) -> None:
        with self.cond:
            self.count, self.last, self.in_order = 0, -1, True

    def wait(self, total: int) -> None:
        with self.cond:
            if not self.cond.wait_for(lambda: self.count >= total, WAIT_S):
                raise RuntimeError(f"only {self.count} of {total} arrived")

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def document(n: int) -> dict[str, Any]:
    return {"ts": 1_714_564_800_000 + n, "values": {"n": n, "temp": 21.5}}


def run_bare(port: int, counter: Counter, total: int) -> float:
    payloads = [json.dumps(document(n), separators=(",", ":")).encode() for n in range(total)]
    cond = threading.Condition()
    acked = 0

    def on_publish(*args: Any) -> None:
        nonlocal acked
        with cond:
            acked += 1
            cond.notify_all()

    client = paho.Client(CallbackAPIVersion.VERSION2, client_id="bench-bare",
                         protocol=MQTTProtocolVersion.MQTTv5)
    client.on_publish = on_publish
    client.connect("127.0.0.1", port)
    client.loop_start()
    try:
        counter.reset()
        start = time.perf_counter()
        for sent, payload in enumerate(payloads):
            with cond:
                cond.wait_for(lambda: sent - acked < WINDOW, WAIT_S)  # noqa: B023
            while client.publish(TOPIC, payload, qos=1).rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
                time.sleep(0.001)  # paho's queue full: wait for PUBACKs
        counter.wait(total)
        return time.perf_counter() - start
    finally:
        client.disconnect()
        client.loop_stop()


def _bridge(port: int, directory: Path, outbox: Outbox) -> tuple[MqttBridge, IngestPipeline]:
    engine = make_engine(f"sqlite:///{directory / 'hub.db'}")
    upgrade(engine)
    pipeline = IngestPipeline(ReadingStore(engine)).start()
    settings = MqttSettings(host="127.0.0.1", port=port, client_id="bench-hub",
                            outbox_max_rows=10_000_000, outbox_max_bytes=1 << 34)
    return MqttBridge(settings, pipeline, outbox=outbox), pipeline


def run_drain(port: int, counter: Counter, total: int, directory: Path) -> tuple[float, Any]:
    outbox = Outbox(directory / OUTBOX_FILE, max_rows=10_000_000, max_bytes=1 << 34)
    chunk = [(TOPIC, json.dumps(document(n), separators=(",", ":")).encode(), False)
             for n in range(total)]
    for at in range(0, total, 1000):
        outbox.put(chunk[at:at + 1000])
    bridge, pipeline = _bridge(port, directory, outbox)
    counter.reset()
    start = time.perf_counter()
    bridge.start()
    try:
        counter.wait(total)
        elapsed = time.perf_counter() - start
        deadline = time.monotonic() + WAIT_S
        while outbox.counts()[0] and time.monotonic() < deadline:
            time.sleep(0.01)
        status = bridge.status.outbox
    finally:
        bridge.stop()
        pipeline.close()
        pipeline.store.engine.dispose()
        outbox.close()
    return elapsed, status


def run_live(port: int, counter: Counter, total: int, directory: Path) -> tuple[float, Any]:
    outbox = Outbox(directory / OUTBOX_FILE, max_rows=10_000_000, max_bytes=1 << 34)
    bridge, pipeline = _bridge(port, directory, outbox)
    bridge.start()
    try:
        deadline = time.monotonic() + 10
        while not bridge.status.connected and time.monotonic() < deadline:
            time.sleep(0.01)
        counter.reset()
        start = time.perf_counter()
        for n in range(total):
            bridge.publish_state("bench", "kit-1", document(n))
        counter.wait(total)
        elapsed = time.perf_counter() - start
        deadline = time.monotonic() + WAIT_S
        while outbox.counts()[0] and time.monotonic() < deadline:
            time.sleep(0.01)
        status = bridge.status.outbox
    finally:
        bridge.stop()
        pipeline.close()
        pipeline.store.engine.dispose()
        outbox.close()
    return elapsed, status


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=20_000, help="messages per run")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of the three runs")
    parser.add_argument("--dir", type=Path, default=None, help="where the files go")
    parser.add_argument("--smoke", action="store_true",
                        help="small sizes, a few seconds: checks the script still runs")
    args = parser.parse_args()
    if args.smoke:
        args.messages, args.rounds = 1_000, 1
    total = args.messages
    print(f"machine: {platform.platform()}, {os.cpu_count()} CPUs, Python "
          f"{platform.python_version()}, SQLite {sqlite3.sqlite_version}")
    print(f"messages per run: {total:,}, rounds: {args.rounds}, window: {WINDOW}")
    times: dict[str, list[float]] = {"bare": [], "drain": [], "live": []}
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        root = Path(tmp)
        process, port = start_broker(root)
        counter = Counter(port)
        try:
            for round_no in range(args.rounds):
                times["bare"].append(run_bare(port, counter, total))
                print(f"round {round_no + 1} bare: {total / times['bare'][-1]:,.0f} msg/s, "
                      f"got {counter.count:,}, in order: {counter.in_order}")
                for name, run in (("drain", run_drain), ("live", run_live)):
                    directory = root / f"{name}-{round_no}"
                    directory.mkdir()
                    elapsed, status = run(port, counter, total, directory)
                    times[name].append(elapsed)
                    print(f"round {round_no + 1} {name}: {total / elapsed:,.0f} msg/s, got "
                          f"{counter.count:,}, in order: {counter.in_order}, outbox delivered "
                          f"{status.delivered:,}, dropped {status.dropped}, left "
                          f"{status.queued}")
                    shutil.rmtree(directory)
        finally:
            counter.close()
            process.kill()
            process.wait()
    rate = {name: total / statistics.median(values) for name, values in times.items()}
    for name in ("bare", "drain", "live"):
        print(f"{name}: median {rate[name]:,.0f} msg/s")
    print(f"ratio drain/bare: {rate['drain'] / rate['bare']:.2f}")
    print(f"ratio live/bare: {rate['live'] / rate['bare']:.2f}")


if __name__ == "__main__":
    main()
