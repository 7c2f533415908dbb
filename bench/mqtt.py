"""MQTT ingest benchmark: how fast the hub drains a broker's backlog, against a bare paho
subscriber on the same MQTT version, in one run; the CPU each side used; and the live
latency from publish to queryable.

A local Mosquitto (started here, on a free loopback port, with the queue and in-flight
limits LabHub ships in ``deploy/mosquitto/labhub.conf``) holds two persistent sessions
registered before anything is published: one for a bare paho subscriber and one for the
hub. With both away, ``mosquitto_pub -l -q 1`` publishes 200,000 small JSON readings
(``{"temperature":21.53}``, ThingsBoard's first shape, no client timestamp, so every
message needs the hub's redelivery record) in chunks of 10,000 lines, well below the
~50k-line burst at which ``mosquitto_pub`` loses lines; the broker's ``$SYS`` counters are
then checked to hold every message, none dropped. The broker keeps one copy of each
message for both sessions.

Then, timed from ``connect`` until the last message is settled, both on the MQTT version
the hub uses by default (``--protocol`` to choose), with the same in-flight window:

- bare: a paho client whose ``on_message`` only counts; paho sends each PUBACK when it
  returns. What paho itself allows.
- hub: :class:`firmware_bridge.mqtt.MqttBridge` + :class:`sensors.pipeline.IngestPipeline`
  into a fresh, migrated SQLite file (WAL, ``synchronous=NORMAL``), acknowledging each
  message after its COMMIT, until every reading is stored and acknowledged.

It prints both rates, ``ratio: 0.NN`` (hub / bare; target 0.80 or more), the CPU time each
spent per message and their ratio (steadier than the rates on a busy machine), the count stored,
which must equal the count published (the script fails otherwise), and the CPU used
during each drain by this process (the bare client, then the hub: both run here) and by
the broker (from ``/proc``), in percent of one core. The bare rate is a fair baseline only
when the bare client itself is the limit: a WARNING is printed when its CPU stays well
under one core or the broker's comes near one (then the broker or the machine capped it,
and the ratio says little).

Last, the live latency: the hub stays connected while a paho publisher in this process
sends one message every millisecond (1,000 msg/s) for ``--live-seconds``; each message's
latency runs from just before ``publish()`` until the COMMIT that made it queryable
returns (the pipeline's durability signal, seen through a writer seam that notes the
time after each commit). p50 and p99 are printed, and the hub's CPU meanwhile.

Run: ``python bench/mqtt.py`` (about 1 minute); ``--smoke`` runs it small, in seconds,
printing the figures without judging them. The machine may be shared and noisy: compare
the ratio, not the absolute rates, and read the load average printed with them.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import platform
import resource
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

if importlib.util.find_spec("sensors") is None:  # run from a checkout without installing
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
# The same Mosquitto the tests start, with the limits of deploy/mosquitto/labhub.conf.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import paho.mqtt as paho_package
import paho.mqtt.client as paho
from _common import load_average
from mqtt_broker import MosquittoBroker, find_mosquitto
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from firmware_bridge.mqtt import MqttBridge, MqttSettings
from labhub.db import make_engine, upgrade
from sensors.pipeline import IngestPipeline
from sensors.storage import BatchWriter, ReadingStore

TARGET_RATIO = 0.80  # the hub drains at least 0.8 of the bare rate on the same MQTT version
TARGET_P99_S = 0.250  # live latency p99 at 1,000 msg/s, publish to queryable
BASELINE_MIN_CPU = 0.80  # of one core: below this the bare client was not what limited it
BROKER_MAX_CPU = 0.80  # of one core: above this the broker, not the client, may be the limit
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")  # units of utime and stime in /proc/<pid>/stat
CHUNK_LINES = 10_000  # per mosquitto_pub -l run: it loses lines in bursts above ~50k
NODES = 10  # chunks go to this many node topics in turn
PREFIX = "labhub"
SITE = "bench"
SESSION_EXPIRY_S = 3600
WAIT_S = 600.0  # longest a drain may take before the benchmark gives up
SYS_TIMEOUT_S = 30.0  # $SYS counters are published every second (sys_interval 1)
MOSQUITTO_PUB = shutil.which("mosquitto_pub") or "/usr/bin/mosquitto_pub"


def payload(i: int) -> str:
    return f'{{"temperature":{15 + (i % 1500) / 100:.2f}}}'


# -- the broker ----------------------------------------------------------------------------


class SysCounters:
    """Mosquitto's ``$SYS`` topics, as the broker last published them."""

    def __init__(self, broker: MosquittoBroker) -> None:
        self.values: dict[str, str] = {}
        self.lock = threading.Lock()
        self.client = paho.Client(CallbackAPIVersion.VERSION2, client_id="bench-sys",
                                  protocol=MQTTProtocolVersion.MQTTv5)
        self.client.on_connect = lambda c, *a: c.subscribe("$SYS/broker/#")
        self.client.on_message = self._on_message
        self.client.connect(broker.host, broker.port)
        self.client.loop_start()

    def _on_message(self, client: paho.Client, userdata: Any, msg: paho.MQTTMessage) -> None:
        with self.lock:
            self.values[msg.topic] = msg.payload.decode()

    def get(self, name: str) -> int:
        with self.lock:
            return int(self.values.get(f"$SYS/broker/{name}", "-1"))

    def wait(self, check: Callable[[], bool], what: str) -> None:
        deadline = time.monotonic() + SYS_TIMEOUT_S
        while not check():
            if time.monotonic() > deadline:
                raise SystemExit(f"the broker's $SYS counters never showed {what}: {self.values}")
            time.sleep(0.05)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def connect_properties(receive_maximum: int) -> Properties:
    properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
    properties.SessionExpiryInterval = SESSION_EXPIRY_S
    properties.ReceiveMaximum = receive_maximum
    return properties


class BareSubscriber:
    """A paho client that only counts; paho acknowledges when ``on_message`` returns."""

    def __init__(self, broker: MosquittoBroker, receive_maximum: int, protocol: str) -> None:
        self.broker = broker
        self.receive_maximum = receive_maximum
        self.v5 = protocol == "5"
        self.count = 0
        self.done = threading.Event()
        self.subscribed = threading.Event()
        self.expected = -1
        self.client = paho.Client(
            CallbackAPIVersion.VERSION2, client_id="bench-bare",
            clean_session=None if self.v5 else False,
            protocol=MQTTProtocolVersion.MQTTv5 if self.v5 else MQTTProtocolVersion.MQTTv311)
        self.client.on_message = self._on_message
        self.client.on_subscribe = lambda *a: self.subscribed.set()

    def _on_message(self, client: paho.Client, userdata: Any, msg: paho.MQTTMessage) -> None:
        self.count += 1
        if self.count == self.expected:
            self.done.set()

    def connect(self) -> None:
        """A persistent session: MQTT 5 clean start off with a session expiry and the hub's
        Receive Maximum; MQTT 3.1.1 clean session off (the broker's window applies)."""
        if self.v5:
            self.client.connect(self.broker.host, self.broker.port, clean_start=False,
                                properties=connect_properties(self.receive_maximum))
        else:
            self.client.connect(self.broker.host, self.broker.port)

    def register(self) -> None:
        """Make the persistent session and its subscription, then go away."""
        self.connect()
        self.client.loop_start()
        self.client.subscribe(f"{PREFIX}/+/+/+", qos=1)
        if not self.subscribed.wait(10):
            raise SystemExit("the bare subscriber could not subscribe")
        self.client.disconnect()
        self.client.loop_stop()

    def drain(self, expected: int) -> float:
        """Seconds from connect until ``expected`` messages arrived."""
        self.expected = expected
        start = time.perf_counter()
        self.connect()
        self.client.loop_start()
        try:
            if not self.done.wait(WAIT_S):
                raise SystemExit(f"bare subscriber: {self.count:,} of {expected:,} arrived")
            return time.perf_counter() - start
        finally:
            time.sleep(0.2)  # the last PUBACKs leave
            self.client.disconnect()
            self.client.loop_stop()


def publish_backlog(broker: MosquittoBroker, sys_counters: SysCounters, messages: int) -> float:
    """Publish ``messages`` readings with mosquitto_pub -l, check the broker holds them all."""
    sys_counters.wait(lambda: sys_counters.get("store/messages/count") >= 0, "a store count")
    before = sys_counters.get("store/messages/count")
    start = time.perf_counter()
    for chunk, first in enumerate(range(0, messages, CHUNK_LINES)):
        lines = "".join(payload(i) + "\n" for i in range(first, min(first + CHUNK_LINES, messages)))
        topic = f"{PREFIX}/{SITE}/node-{chunk % NODES}/telemetry"
        subprocess.run(
            [MOSQUITTO_PUB, "-h", broker.host, "-p", str(broker.port), "-q", "1", "-l",
             "-V", "mqttv5", "-i", f"bench-pub-{chunk}", "-t", topic],
            input=lines.encode(), check=True,
        )
    elapsed = time.perf_counter() - start
    sys_counters.wait(lambda: sys_counters.get("store/messages/count") >= before + messages,
                      f"{messages:,} more messages stored (before: {before:,})")
    dropped = sys_counters.get("publish/messages/dropped")
    if dropped != 0:
        raise SystemExit(f"the broker dropped {dropped} messages")
    held = sys_counters.get("store/messages/count") - before
    print(f"published: {messages:,} in {elapsed:.1f} s ({messages / elapsed:,.0f} msg/s, "
          f"mosquitto_pub -l -q 1, {CHUNK_LINES:,} lines per run); broker holds {held:,} "
          f"new messages for both sessions, dropped {dropped}")
    return elapsed


# -- the hub -------------------------------------------------------------------------------


class _NotingWriter:
    """A writer seam that notes, after each COMMIT, the time and the values committed
    (while its store's ``noting`` is on: the live run)."""

    def __init__(self, real: BatchWriter, store: NotingStore) -> None:
        self.real, self.store = real, store

    def write(self, groups: Sequence[Sequence[Any]], dead: Sequence[Any] = (),
              hooks: Sequence[Any] = ()) -> list[int]:
        stored = self.real.write(groups, dead, hooks)
        if self.store.noting:
            now = time.perf_counter()
            self.store.commits.append((now, [row[2] for group in groups for row in group]))
        return stored

    def close(self) -> None:
        self.real.close()


class NotingStore(ReadingStore):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.commits: list[tuple[float, list[float]]] = []
        self.noting = False

    def writer(self) -> BatchWriter:
        return _NotingWriter(super().writer(), self) # type: ignore[return-value]


def hub_settings(broker: MosquittoBroker, protocol: str) -> MqttSettings:
    return MqttSettings(host=broker.host, port=broker.port, client_id="bench-hub",
                        topic_prefix=PREFIX, reconnect_min_s=1, reconnect_max_s=2,
                        protocol=protocol)  # type: ignore[arg-type]


class CpuMeter:
    """CPU time of this process (getrusage: every thread) and of the broker (``/proc``)
    since :meth:`start`, as fractions of one core over the wall time."""

    def __init__(self, broker_pid: int | None) -> None:
        self.broker_pid = broker_pid
        self.start()

    @staticmethod
    def _own() -> float:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return usage.ru_utime + usage.ru_stime

    def _broker(self) -> float:
        if self.broker_pid is None:
            return 0.0
        try:
            stat = Path(f"/proc/{self.broker_pid}/stat").read_text()
        except OSError:
            return 0.0
        fields = stat[stat.rindex(")") + 2 :].split()
        return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime, stime

    def start(self) -> None:
        self.wall, self.own, self.broker = time.perf_counter(), self._own(), self._broker()

    def read(self) -> tuple[float, float]:
        """(this process, the broker) in cores since :meth:`start`."""
        wall = max(time.perf_counter() - self.wall, 1e-9)
        return (self._own() - self.own) / wall, (self._broker() - self.broker) / wall


def wait_until(check: Callable[[], bool], what: str, timeout: float = WAIT_S) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        time.sleep(0.002)


def stored_rows(path: Path) -> int:
    with sqlite3.connect(path) as conn:
        count: int = conn.execute("SELECT count(*) FROM readings").fetchone()[0]
    conn.close()
    return count


def run_live(bridge: MqttBridge, broker: MosquittoBroker, store: NotingStore,
             pipeline: IngestPipeline, seconds: float, rate: int,
             meter: CpuMeter) -> list[float]:
    """Latencies (s) from publish to commit at a steady ``rate`` msg/s."""
    store.noting = True
    count = int(seconds * rate)
    sent: list[float] = [0.0] * count
    publisher = paho.Client(CallbackAPIVersion.VERSION2, client_id="bench-live",
                            protocol=MQTTProtocolVersion.MQTTv5)
    publisher.connect(broker.host, broker.port)
    publisher.loop_start()
    topic = f"{PREFIX}/{SITE}/live-node/seq"
    try:
        meter.start()
        start = time.perf_counter()
        for i in range(count):
            due = start + i / rate
            delay = due - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            sent[i] = time.perf_counter()
            info = publisher.publish(topic, str(i), qos=1)
            if info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
                raise SystemExit(f"live publish refused: {paho.error_string(info.rc)}")
        wait_until(lambda: sum(len(v) for _, v in store.commits) >= count, "the live readings",
                   timeout=60)
        actual = count / (sent[-1] - start) if count > 1 else float(rate)
        own, broker_cpu = meter.read()
    finally:
        publisher.disconnect()
        publisher.loop_stop()
    committed: dict[int, float] = {}
    for at, values in store.commits:
        for value in values:
            committed.setdefault(int(value), at)
    missing = [i for i in range(count) if i not in committed]
    if missing:
        raise SystemExit(f"live: {len(missing)} readings never committed")
    print(f"live: {count:,} messages at {actual:,.0f} msg/s (paho publisher in this process, "
          f"QoS 1, a bare number each); cpu: hub and publisher {own:.0%} of a core, broker "
          f"{broker_cpu:.0%}")
    return [committed[i] - sent[i] for i in range(count)]


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(fraction * len(ordered) + 0.5) - 1))
    return ordered[rank]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=200_000, help="backlog size")
    parser.add_argument("--live-seconds", type=float, default=10.0, help="live run length")
    parser.add_argument("--live-rate", type=int, default=1000, help="live messages per second")
    parser.add_argument("--protocol", choices=["5", "3.1.1"],
                        default=MqttSettings.model_fields["protocol"].default,
                        help="MQTT version of both subscribers (default: the hub's default)")
    parser.add_argument("--smoke", action="store_true",
                        help="small sizes, a few seconds: figures printed, targets not judged")
    parser.add_argument("--dir", type=Path, default=None, help="where the temporary files go")
    args = parser.parse_args()
    if args.smoke:
        args.messages, args.live_seconds, args.live_rate = 2_000, 1.0, 200
    messages = args.messages
    if find_mosquitto() is None:
        print("mqtt: no mosquitto binary (install mosquitto): nothing measured")
        raise SystemExit(0 if args.smoke and not os.environ.get("CI") else 1)
    print(f"mqtt: drain a backlog of {messages:,} QoS 1 JSON readings from a local Mosquitto, "
          f"bare paho subscriber vs the hub (MqttBridge -> IngestPipeline -> SQLite, "
          f"ack after COMMIT), both on MQTT {args.protocol}; then live latency at "
          f"{args.live_rate:,} msg/s{' (smoke run: small sizes)' if args.smoke else ''}")
    version = subprocess.run([find_mosquitto() or "mosquitto", "-h"], capture_output=True,
                             text=True).stdout
    print(f"machine: {platform.platform()}, {os.cpu_count()} CPUs, Python "
          f"{platform.python_version()}, SQLite {sqlite3.sqlite_version}, paho-mqtt "
          f"{paho_package.__version__}, "
          f"{version.splitlines()[0] if version else 'mosquitto'}; load average "
          f"{load_average()}")
    with tempfile.TemporaryDirectory(prefix="labhub-bench-mqtt-", dir=args.dir) as tmp_name:
        tmp = Path(tmp_name)
        broker = MosquittoBroker(tmp / "broker", autosave_interval=1_000_000,
                                 extra=("sys_interval 1",)).start()
        sys_counters = SysCounters(broker)
        path = tmp / "hub.sqlite"
        engine = make_engine(f"sqlite:///{path}")
        upgrade(engine)
        store = NotingStore(engine)
        settings = hub_settings(broker, args.protocol)
        meter = CpuMeter(broker.pid)
        try:
            bare = BareSubscriber(broker, settings.receive_maximum, args.protocol)
            bare.register()
            with IngestPipeline(store) as pipeline:
                registration = MqttBridge(settings, pipeline).start()
                wait_until(lambda: registration.status.subscribed, "the hub's subscription", 10)
                registration.stop()
            publish_backlog(broker, sys_counters, messages)

            meter.start()
            bare_s = bare.drain(messages)
            bare_cpu, bare_broker_cpu = meter.read()
            bare_rate = messages / bare_s
            print(f"bare: {messages:,} in {bare_s:.2f} s, {bare_rate:,.0f} msg/s; cpu: bare "
                  f"client {bare_cpu:.0%} of a core, broker {bare_broker_cpu:.0%}")

            with IngestPipeline(store) as pipeline:
                bridge = MqttBridge(settings, pipeline)
                meter.start()
                start = time.perf_counter()
                bridge.start()
                try:
                    wait_until(lambda: bridge.status.stats.acked >= messages, "the hub's drain")
                    hub_s = time.perf_counter() - start
                    hub_cpu, hub_broker_cpu = meter.read()
                    stats = bridge.status.stats
                    hub_rate = messages / hub_s
                    rows = stored_rows(path)
                    print(f"hub:  {messages:,} in {hub_s:.2f} s, {hub_rate:,.0f} msg/s; cpu: hub "
                          f"{hub_cpu:.0%} of a core, broker {hub_broker_cpu:.0%}")
                    print(f"  check: received {stats.received:,}, stored {stats.stored:,}, "
                          f"duplicates {stats.duplicates}, rejected {stats.rejected}, acked "
                          f"{stats.acked:,}; {rows:,} rows in readings; pipeline "
                          f"{pipeline.counters()}")
                    latencies = run_live(bridge, broker, store, pipeline, args.live_seconds,
                                         args.live_rate, meter)
                finally:
                    bridge.stop()
        finally:
            sys_counters.close()
            broker.kill()
            engine.dispose()
    ratio = hub_rate / bare_rate
    p50, p99 = percentile(latencies, 0.50), percentile(latencies, 0.99)
    print(f"published: {messages:,}")
    print(f"stored: {rows:,}")
    print(f"protocol: MQTT {args.protocol}")
    print(f"bare rate: {bare_rate:,.0f} msg/s")
    print(f"hub rate: {hub_rate:,.0f} msg/s")
    print(f"cpu (of one core) bare drain: bare client {bare_cpu:.0%}, broker "
          f"{bare_broker_cpu:.0%}; hub drain: hub {hub_cpu:.0%}, broker {hub_broker_cpu:.0%}")
    # CPU time per message, both measured in this process the same way: less sensitive to
    # other load on the machine than the rates (a starved client is slow, not costly).
    bare_us, hub_us = bare_cpu * bare_s / messages * 1e6, hub_cpu * hub_s / messages * 1e6
    print(f"cpu per message: bare {bare_us:.1f} us, hub {hub_us:.1f} us; cpu ratio (bare / hub) "
          f"{bare_us / hub_us if hub_us else 0:.2f}")
    print(f"latency publish to queryable at {args.live_rate:,} msg/s: p50 "
          f"{p50 * 1000:.1f} ms, p90 {percentile(latencies, 0.90) * 1000:.1f} ms, p99 "
          f"{p99 * 1000:.1f} ms, max {max(latencies) * 1000:.1f} ms")
    print(f"load average: {load_average()}")
    if bare_cpu < BASELINE_MIN_CPU:
        print(f"WARNING: the bare client used {bare_cpu:.0%} of a core, so it was not its own "
              f"limit: something else capped the baseline (the broker used "
              f"{bare_broker_cpu:.0%}; load average {load_average()} on {os.cpu_count()} CPUs), "
              "and the ratio below says little")
    if max(bare_broker_cpu, hub_broker_cpu) > BROKER_MAX_CPU:
        print(f"WARNING: the broker used up to {max(bare_broker_cpu, hub_broker_cpu):.0%} of a "
              "core: it may be the limit of a drain, not the client")
    if args.smoke:
        print("target: not judged in a smoke run")
    else:
        print(f"target: hub at least {TARGET_RATIO:.2f} of bare: "
              f"{'target met' if ratio >= TARGET_RATIO else 'target missed'}; live p99 under "
              f"{TARGET_P99_S * 1000:.0f} ms: "
              f"{'target met' if p99 < TARGET_P99_S else 'target missed'}")
    print(f"ratio: {ratio:.2f}")
    if rows != messages:
        raise SystemExit(f"stored {rows:,} readings of {messages:,} published")


if __name__ == "__main__":
    main()
