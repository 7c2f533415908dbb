"""Serial benchmark: eight sketches printing at full 115200-baud speed into one hub, in one run.

Eight virtual climate stations (:class:`firmware_bridge.sim.climate.VirtualClimateStation`,
``interval_s=0, baudrate=115200``: each prints Serial Plotter lines such as
``temp:21.43,hum:61.2,light:512`` as fast as a real 115200-baud link would carry them,
about 11,500 bytes and 360 lines a second) run in a separate process, so that their CPU is
not counted as the hub's. The hub side, in this process, is what ``labhub serve`` runs for
serial sketches: one :class:`~firmware_bridge.serial_lines.LineReader` per port
(``fmt="plotter"``, pyserial underneath) feeding one
:class:`~sensors.pipeline.IngestPipeline` that stores into a fresh, migrated SQLite file.
The readers open their ports first (opening flushes pending input), then the stations write
one throwaway ``\\r\\n`` (the reader drops the first line after opening, as the Arduino IDE
does) and print for ``--seconds``. The measured window runs from the start signal until
every line the stations sent is stored (readers quiet, then ``flush()`` returned); over it
the hub process's CPU time (user + system, all threads: reading, splitting, decoding,
validating and writing to SQLite) is divided by the lines stored. The stored lines are
counted in the database (readings rows / 3 channels) and compared with the lines the
stations sent. In the same run, before the hub, a baseline reads the same kind of ports for
the same time with pyserial's own ``readline()`` loop, one thread per port, only counting
lines (no decoding, no storage): what the obvious code costs.

Reading the output: one line per side with what was sent, received and the CPU per 1,000
lines; a ``check`` line (rows, the pipeline's counters, the readers' counters) and the hub's
CPU split by thread; then ``sent``, ``stored``, ``ratio stored/sent`` (1.0000 when nothing
is lost), ``lost: N``, the wall time and rate, ``rejects``, ``cpu per 1000 lines: N ms``
(target: under 20 ms, with 0 lost), the baseline's CPU per 1,000 lines and ``ratio hub cpu /
readline cpu`` (lower is better). The machine is shared and noisy: compare the ratio, not the
absolute times, across machines and days. The exit status is 0 even when a target is missed.

Run: ``python bench/serial_ingest.py``; ``--smoke`` (2 stations for 2 s) checks that it
still works (``make test`` runs it) and measures nothing worth reading. Linux (or
another system with pseudo-terminals) only.
"""

from __future__ import annotations

import argparse
import importlib.util
import multiprocessing
import sqlite3
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

if importlib.util.find_spec("sensors") is None:  # run from a checkout without installing
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import serial
from _common import close_child, cpu_times, machine, thread_cpu

from firmware_bridge.serial_lines import READ_TIMEOUT_S, LinePoller, LineReader
from firmware_bridge.sim.climate import VirtualClimateStation
from labhub.db import make_engine, upgrade
from sensors.pipeline import IngestPipeline
from sensors.storage import ReadingStore

BAUDRATE = 115_200  # the speed, the usual Serial.begin() of a fast sketch
CHANNELS_PER_LINE = 3  # temp, hum, light: one reading row each
TARGET_MS_PER_1000_LINES = 20.0  # from the issue: hub CPU per 1,000 lines, decode + storage
OPEN_TIMEOUT_S = 10.0  # readers must have their ports open within this
CHILD_START_TIMEOUT_S = 60.0  # the writer process imports LabHub before it opens its ptys
QUIET_S = 1.0  # counts unchanged this long after the writers stopped: nothing more will come
POLL_S = 0.01  # how often the main thread looks at the counters while it waits
DEVICE_PREFIX = "bench-station-"


@dataclass(slots=True)
class Sent:
    """What the writer process reports once the stations have stopped printing."""

    lines: list[int]  # per station, from the start signal on (the throwaway line excluded)
    cpu_s: float  # the writer process's own CPU time while printing (not counted anywhere)


# -- the writer process ------------------------------------------------------------------


def run_stations(conn: Connection, devices: int, seconds: float, seed: int) -> None:
    """In the writer process: open the stations, print on "go", report, close on "done"."""
    stations = [
        VirtualClimateStation(interval_s=0, baudrate=BAUDRATE, seed=seed + number)
        for number in range(devices)
    ]
    try:
        conn.send([station.url for station in stations])
        if conn.recv() != "go":
            return
        for station in stations:
            station.write(b"\r\n")  # the first line after opening is dropped by design
        cpu = time.process_time()
        for station in stations:
            station.start()
        time.sleep(seconds)
        # A station has no public "stop printing but stay plugged in": close() also closes
        # the pty's far end, which is an unplug, and bytes still on their way to the hub
        # would be lost to the unplug rather than to the hub. Stop the printing threads
        # only, and close the ptys once the hub says it has read everything.
        for station in stations:
            station._stop.set()
        for station in stations:
            if station._thread is not None:
                station._thread.join()
        cpu = time.process_time() - cpu
        conn.send(Sent([station.lines_sent for station in stations], cpu))
        conn.recv()  # "done": every reader has stopped
    finally:
        for station in stations:
            station.close()
        conn.close()


class Writers:
    """The writer process seen from the hub: start it, get the URLs, "go", wait, "done"."""

    def __init__(self, devices: int, seconds: float, seed: int) -> None:
        self.seconds = seconds
        context = multiprocessing.get_context("spawn")  # no fork of a process with threads
        self._conn, child_conn = context.Pipe()
        self._process = context.Process(
            target=run_stations,
            args=(child_conn, devices, seconds, seed),
            name="labhub-bench-stations",
            daemon=True,
        )
        self._process.start()
        child_conn.close()
        try:
            self.urls: list[str] = self._receive(CHILD_START_TIMEOUT_S, "the station URLs")
        except BaseException:
            self.close()
            raise

    def _receive(self, timeout: float, what: str) -> Any:
        if not self._conn.poll(timeout):
            raise SystemExit(f"the writer process did not send {what} within {timeout:.0f} s")
        try:
            return self._conn.recv()
        except EOFError:
            raise SystemExit(
                f"the writer process exited (code {self._process.exitcode}) before sending {what}"
            ) from None

    def go(self) -> None:
        self._conn.send("go")

    def wait_stopped(self) -> Sent:
        sent: Sent = self._receive(self.seconds + 30, "its line counts")
        return sent

    def close(self) -> None:
        close_child(self._conn, self._process)


# -- measuring ---------------------------------------------------------------------------


def wait_until_done(expected: int, count: Callable[[], int], activity: Callable[[], int]) -> None:
    """Return once ``count()`` reaches ``expected``, or ``activity()`` stays still QUIET_S."""
    last, since = activity(), time.monotonic()
    while count() < expected:
        time.sleep(POLL_S)
        now_activity = activity()
        if now_activity != last:
            last, since = now_activity, time.monotonic()
        elif time.monotonic() - since > QUIET_S:
            return


def wait_open(check: Callable[[], bool], describe: Callable[[], str]) -> None:
    deadline = time.monotonic() + OPEN_TIMEOUT_S
    while not check():
        if time.monotonic() > deadline:
            raise SystemExit(f"ports not open within {OPEN_TIMEOUT_S:.0f} s: {describe()}")
        time.sleep(POLL_S)


@dataclass(slots=True)
class Run:
    """One side's measurement."""

    sent: list[int]
    received: list[int]  # per port: lines counted (baseline) or lines stored (hub)
    wall_s: float
    user_s: float
    sys_s: float
    writer_cpu_s: float

    @property
    def cpu_s(self) -> float:
        return self.user_s + self.sys_s

    def ms_per_1000(self) -> float:
        lines = sum(self.received)
        return self.cpu_s / lines * 1e6 if lines else float("nan")

    def summary(self) -> str:
        sent, got = sum(self.sent), sum(self.received)
        return (
            f"sent {sent:,} lines, received {got:,}, lost {sent - got:,}, "
            f"wall {self.wall_s:.1f} s, cpu {self.cpu_s:.2f} s (user {self.user_s:.2f}, "
            f"sys {self.sys_s:.2f}, {self.cpu_s / self.wall_s:.0%} of a core), "
            f"{self.ms_per_1000():.1f} ms per 1000 lines"
        )


# -- the baseline: pyserial readline() ---------------------------------------------------


def run_baseline(devices: int, seconds: float, seed: int) -> Run:
    """pyserial ``readline()`` on every port, one thread each, counting complete lines."""
    writers = Writers(devices, seconds, seed)
    ports: list[serial.Serial] = []
    threads: list[threading.Thread] = []
    counts = [0] * devices
    stop = threading.Event()

    def read_lines(index: int, port: serial.Serial) -> None:
        lines = 0
        while not stop.is_set():
            line = port.readline()
            if line.endswith(b"\n"):
                lines += 1
                counts[index] = lines

    try:
        for url in writers.urls:
            ports.append(serial.Serial(url, baudrate=BAUDRATE, timeout=READ_TIMEOUT_S))
        for index, port in enumerate(ports):
            thread = threading.Thread(
                target=read_lines,
                args=(index, port),
                name=f"labhub-bench-readline-{index}",
                daemon=True,
            )
            thread.start()
            threads.append(thread)
        user0, sys0 = cpu_times()
        start = time.perf_counter()
        writers.go()
        sent = writers.wait_stopped()
        # Every port also carries the throwaway first line, which readline() counts.
        wait_until_done(sum(sent.lines) + devices, lambda: sum(counts), lambda: sum(counts))
        wall = time.perf_counter() - start
        user1, sys1 = cpu_times()
    finally:
        stop.set()
        for thread in threads:
            thread.join(5)
        for port in ports:
            port.close()
        writers.close()
    received = [max(0, count - 1) for count in counts]
    return Run(sent.lines, received, wall, user1 - user0, sys1 - sys0, sent.cpu_s)


# -- the hub: LineReader -> IngestPipeline -> SQLite ------------------------------------


@dataclass(slots=True)
class HubResult:
    run: Run
    check: str
    rejects: int
    reader_cpu_s: float
    writer_thread_cpu_s: float


def stored_lines(path: Path, devices: int) -> tuple[list[int], int, list[str]]:
    """Lines stored per device (readings / 3), total rows, and any per-channel mismatch."""
    with sqlite3.connect(path) as conn:
        rows = conn.execute(
            "SELECT s.device, s.channel, count(*) FROM readings r "
            "JOIN series s ON s.id = r.series_id GROUP BY s.device, s.channel"
        ).fetchall()
    conn.close()
    by_device: dict[str, dict[str, int]] = {}
    for device, channel, count in rows:
        by_device.setdefault(device, {})[channel] = count
    problems = []
    lines = []
    for number in range(devices):
        device = f"{DEVICE_PREFIX}{number}"
        channels = by_device.get(device, {})
        readings = sum(channels.values())
        if len(channels) != CHANNELS_PER_LINE or len(set(channels.values())) > 1:
            problems.append(f"{device}: {channels}")
        lines.append(readings // CHANNELS_PER_LINE)
    return lines, sum(count for *_key, count in rows), problems


def run_hub(devices: int, seconds: float, seed: int, tmp: Path) -> HubResult:
    """The measured side; see the module docstring."""
    path = tmp / "serial.sqlite"
    engine = make_engine(f"sqlite:///{path}")
    upgrade(engine)
    pipeline = IngestPipeline(ReadingStore(engine)).start()
    # One poller thread reads every port, as the hub's supervisor does.
    poller = LinePoller().start()
    writers: Writers | None = None
    readers: list[LineReader] = []
    try:
        writers = Writers(devices, seconds, seed)
        for number, url in enumerate(writers.urls):
            reader = LineReader(
                url=url,
                device_id=f"{DEVICE_PREFIX}{number}",
                pipeline=pipeline,
                baudrate=BAUDRATE,
                fmt="plotter",
                poller=poller,
            )
            readers.append(reader.start())
        wait_open(
            lambda: all(r.status.online for r in readers),
            lambda: "; ".join(r.status.message for r in readers if not r.status.online),
        )
        names = {f"labhub-serial-{r.device_id}" for r in readers} | {"labhub-line-poller"}
        reader_threads = [t for t in threading.enumerate() if t.name in names]
        ingest_threads = [t for t in threading.enumerate() if t.name == "labhub-ingest"]
        readers0, ingest0 = thread_cpu(reader_threads), thread_cpu(ingest_threads)
        user0, sys0 = cpu_times()
        start = time.perf_counter()
        writers.go()
        sent = writers.wait_stopped()
        expected_readings = sum(sent.lines) * CHANNELS_PER_LINE

        def readings() -> int:
            return sum(r.status.stats.readings for r in readers)

        def activity() -> int:
            return sum(r.status.stats.lines + r.status.stats.rejects for r in readers)

        wait_until_done(expected_readings, readings, activity)
        pipeline.flush()
        wall = time.perf_counter() - start
        user1, sys1 = cpu_times()
        reader_cpu = thread_cpu(reader_threads) - readers0
        ingest_cpu = thread_cpu(ingest_threads) - ingest0
    finally:
        for reader in readers:
            reader.stop()
        poller.stop()
        if writers is not None:
            writers.close()
        pipeline.close()
        engine.dispose()
    counters = pipeline.counters()
    stats = [r.status.stats for r in readers]
    lines, rows, problems = stored_lines(path, devices)
    check = (
        f"{rows:,} rows in readings, accepted {counters['accepted']:,}, duplicate "
        f"{counters['duplicate']}, suspect {counters['suspect']}, rejected "
        f"{counters['rejected']}, failed {counters['failed']}, batches {counters['batches']:,}; "
        f"readers: lines {sum(s.lines for s in stats):,}, readings "
        f"{sum(s.readings for s in stats):,}, rejects {sum(s.rejects for s in stats)}, "
        f"overlong {sum(s.overlong for s in stats)}, connects {sum(s.connects for s in stats)}"
    )
    check += f": MISMATCH {problems}" if problems else ": ok"
    run = Run(sent.lines, lines, wall, user1 - user0, sys1 - sys0, sent.cpu_s)
    return HubResult(run, check, sum(s.rejects for s in stats), reader_cpu, ingest_cpu)


# -- main --------------------------------------------------------------------------------


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=30.0, help="how long the stations print")
    parser.add_argument("--devices", type=int, default=8, help="virtual stations at once")
    parser.add_argument("--seed", type=int, default=1, help="seed of the stations' sensor noise")
    parser.add_argument("--dir", type=Path, default=None, help="where the temporary files go")
    parser.add_argument("--smoke", action="store_true",
                        help="small sizes, a few seconds: checks the script still runs")
    args = parser.parse_args()
    if args.smoke:
        args.seconds, args.devices = 2.0, 2
    return args


def main() -> None:
    args = parse_args()
    devices, seconds = args.devices, args.seconds
    print(
        f"serial: {devices} virtual climate stations printing Serial Plotter lines at "
        f"{BAUDRATE} baud (as fast as the link carries) for {seconds:g} s per side, "
        "in a separate writer process"
    )
    print(f"machine: {machine()}")
    print("baseline: pyserial readline() loop, one thread per port, lines counted only")
    print(
        f"hub: LineReader (fmt=plotter) x {devices} -> IngestPipeline -> SQLite "
        "(WAL, synchronous=NORMAL, foreign keys ON), CPU of the whole hub process"
    )

    baseline = run_baseline(devices, seconds, args.seed)
    print(f"baseline: {baseline.summary()}")
    with tempfile.TemporaryDirectory(prefix="labhub-bench-serial-", dir=args.dir) as tmp:
        hub = run_hub(devices, seconds, args.seed, Path(tmp))
    run = hub.run
    print(f"hub:      {run.summary()}")
    print(f"  check: {hub.check}")
    lines = sum(run.received)
    per_1000 = 1e6 / lines if lines else float("nan")
    other = run.cpu_s - hub.reader_cpu_s - hub.writer_thread_cpu_s
    print(
        f"  hub cpu by thread, ms per 1000 lines: readers {hub.reader_cpu_s * per_1000:.1f} "
        f"(read, split, decode, validate, queue), ingest writer "
        f"{hub.writer_thread_cpu_s * per_1000:.1f} (SQLite), other {other * per_1000:.1f}"
    )
    print(
        f"  writer process (not counted): {sum(run.sent) / seconds:,.0f} lines/s sent, "
        f"cpu {run.writer_cpu_s:.2f} s"
    )

    sent = sum(run.sent)
    lost = sent - lines
    lost_by_device = [s - r for s, r in zip(run.sent, run.received, strict=True)]
    print(f"sent: {sent:,}")
    print(f"stored: {lines:,}")
    print(f"ratio stored/sent: {lines / sent if sent else float('nan'):.4f}")
    print(f"lost: {lost}" + (f" (per device {lost_by_device})" if any(lost_by_device) else ""))
    print(f"wall: {run.wall_s:.1f} s, {lines / run.wall_s:,.0f} lines/s in total")
    print(f"rejects: {hub.rejects}")
    hub_ms, baseline_ms = run.ms_per_1000(), baseline.ms_per_1000()
    print(f"cpu per 1000 lines: {hub_ms:.1f} ms")
    print(f"baseline readline() cpu per 1000 lines: {baseline_ms:.1f} ms")
    print(f"ratio hub cpu / readline cpu: {hub_ms / baseline_ms:.2f} (lower is better)")
    met = hub_ms < TARGET_MS_PER_1000_LINES and lost == 0
    print(
        f"target: under {TARGET_MS_PER_1000_LINES:.0f} ms per 1000 lines and 0 lost: "
        f"{'target met' if met else 'target missed'}"
    )


if __name__ == "__main__":
    main()
