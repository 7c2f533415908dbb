"""Firmata benchmark: a StandardFirmata board reporting 6 analog pins every 10 ms into one hub.

A virtual Arduino Uno running StandardFirmata
(:class:`firmware_bridge.sim.firmata_board.VirtualFirmataBoard`, byte-exact, on a
pseudo-terminal, resetting whenever the port is opened) runs in a separate process, so that
its CPU is not counted as the hub's. The hub side, in this process, is what ``labhub serve``
runs for a Firmata board: one :class:`~firmware_bridge.firmata.FirmataReader`
(``sampling_ms=10``, analog pins A0..A5, ``reset_wait_s=5``: the 5 s pyfirmata2 itself
waits; it reads the port a chunk at a time and decodes it with
:mod:`firmware_bridge.firmata_protocol`) feeding one
:class:`~sensors.pipeline.IngestPipeline` that stores into a fresh, migrated SQLite file.
Two things are measured on it. The open: the process's CPU time from ``start()`` until the
reader says it is online, which must not keep a core busy through the reset wait. The steady
run: for ``--seconds`` after that, the process's CPU time (user + system, every thread: the
reader's reads, decoding and bulk submissions with their validation, and the SQLite writer),
then, from the database, each pin's stored timestamps: readings stored per second, the
largest gap between two consecutive readings of one pin (target: under 3 sampling intervals)
and how many gaps exceed 3 intervals, and the stored count against the expected one (seconds
x 1000 / interval per pin).

In the same run, before the hub and with its own board process, a baseline does the same
with plain pyfirmata2: ``Arduino(url)`` (its own open, which spins ``time.sleep(0)`` for 5 s:
its CPU over the open is the open baseline), ``get_pin('a:N:i')``, a callback appending
``(time, value)`` to a list per pin, ``samplingOn(10)``, for the same time, no storage: what
the obvious code costs, and how regular its readings are.

Reading the output: per side an ``open`` line (wall and CPU of the open) and a steady-run
line (readings in the window, CPU, largest gap and where it was), the whole session's sent and
received counts, and each pin's count and largest gap; for the hub also a ``check`` line (rows,
the pipeline's, reader's and board's counters: ``ok`` or ``MISMATCH``) and its CPU split by
thread. Then ``expected``/``stored`` per pin, ``ratio stored/expected``, ``readings stored per
second``, ``largest gap: N ms (N.N intervals)``, ``gaps over 3 intervals``, the target, the
CPU lines, ``ratio hub cpu / pyfirmata2 cpu`` and ``open cpu`` with its ratio (both: lower is
better), and a ``cleanup`` line (no thread, process or pty left behind). The machine is
shared and noisy: compare the ratios, not the absolute times, across machines and days. The
exit status is 0 even when a target is missed.

Run: ``python bench/firmata.py``; ``--smoke`` runs each side for 1 s after a 0.3 s reset wait
(both sides), a few seconds in all, to show the benchmark works (its figures mean little).
The load average is printed at the start and the end: the machine's load moves the gaps
more than the CPU ratio. Linux (or another system with pseudo-terminals) only.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.metadata
import importlib.util
import itertools
import multiprocessing
import os
import sqlite3
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

if importlib.util.find_spec("sensors") is None:  # run from a checkout without installing
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import pyfirmata2
from _common import close_child, cpu_times, load_average, machine, thread_cpu

from firmware_bridge.firmata import FirmataReader
from firmware_bridge.registry import FirmataSettings
from firmware_bridge.serial_lines import ReaderStatus
from firmware_bridge.sim.firmata_board import TOTAL_ANALOG_PINS, VirtualFirmataBoard
from labhub.db import make_engine, upgrade
from sensors.pipeline import IngestPipeline
from sensors.samples import US_PER_S, now_us
from sensors.storage import ReadingStore

PINS = tuple(range(TOTAL_ANALOG_PINS))  # A0..A5, every analog input of an Uno
RESET_WAIT_S = 5.0  # pyfirmata2's BOARD_SETUP_WAIT_TIME: both opens wait the same
SMOKE_RESET_WAIT_S = 0.3  # --smoke: both sides wait this instead (the virtual board boots at once)
SMOKE_SECONDS = 1.0  # --smoke: each side reads this long
TARGET_GAP_INTERVALS = 3.0  # from the issue: no pin's readings further apart than this
OPEN_TIMEOUT_S = 15.0  # after its reset wait, the hub must be online within this
CHILD_START_TIMEOUT_S = 60.0  # the board process imports LabHub before it opens its pty
CHILD_REPLY_TIMEOUT_S = 10.0  # the board process answers a count within this
DEVICE_ID = "bench-firmata"
US_PER_MS = 1000


# -- the board process -------------------------------------------------------------------


@dataclass(slots=True)
class BoardCount:
    """The board's counters, as the board process reports them on request."""

    reports_sent: int  # analog (and digital) messages handed to the port
    bytes_dropped: int  # output lost: nobody listening, or the host not reading
    sampling_interval_ms: int  # what the host set
    reporting: list[int]  # analog channels reporting
    boots: int
    errors: int
    cpu_s: float  # the board process's CPU time so far (not counted anywhere)
    tick_lateness_max_ms: float  # the latest the board sent a sampling tick past its time
    ticks_skipped: int  # ticks the board gave up after a stall of its own thread

    def lateness(self) -> str:
        return (
            f"board process: its latest sampling tick went out {self.tick_lateness_max_ms:.1f} "
            f"ms after its time, {self.ticks_skipped} ticks skipped (a gap that long or "
            "longer starts at the board, not in the reader)"
        )


def run_board(conn: Connection) -> None:
    """In the board process: power the board on, send its URL, answer counts until "done"
    ("restart" first forgets how late the board's ticks were so far: a window begins)."""
    board = VirtualFirmataBoard(reset_on_open=True, boot_delay_s=0.0)
    try:
        board.start()
        conn.send(board.url)
        while (request := conn.recv()) in ("count", "restart"):
            if request == "restart":
                with board._cond:  # the board's thread updates it under this lock
                    board.tick_lateness_max_s = 0.0
                    board.ticks_skipped = 0
            conn.send(
                BoardCount(
                    board.reports_sent,
                    board.bytes_dropped,
                    board.sampling_interval_ms,
                    sorted(board.reporting_analog),
                    board.boots,
                    len(board.errors),
                    time.process_time(),
                    board.tick_lateness_max_s * 1000,
                    board.ticks_skipped,
                )
            )
    except EOFError:  # the hub side went away
        pass
    finally:
        board.close()
        conn.close()


class BoardProcess:
    """The board process seen from the hub: start it, get the URL, ask for counts, "done"."""

    def __init__(self) -> None:
        context = multiprocessing.get_context("spawn")  # no fork of a process with threads
        self._conn, child_conn = context.Pipe()
        self._process = context.Process(
            target=run_board, args=(child_conn,), name="labhub-bench-firmata-board", daemon=True
        )
        self._process.start()
        child_conn.close()
        try:
            self.url: str = self._receive(CHILD_START_TIMEOUT_S, "the board's URL")
        except BaseException:
            self.close()
            raise

    def _receive(self, timeout: float, what: str) -> Any:
        if not self._conn.poll(timeout):
            raise SystemExit(f"the board process did not send {what} within {timeout:.0f} s")
        try:
            return self._conn.recv()
        except EOFError:
            raise SystemExit(
                f"the board process exited (code {self._process.exitcode}) before sending {what}"
            ) from None

    def count(self, *, restart: bool = False) -> BoardCount:
        """The board's counters; ``restart`` first resets its tick lateness (a window starts)."""
        self._conn.send("restart" if restart else "count")
        count: BoardCount = self._receive(CHILD_REPLY_TIMEOUT_S, "its counters")
        return count

    def close(self) -> None:
        close_child(self._conn, self._process)


# -- measuring ---------------------------------------------------------------------------


def pty_fds() -> set[str]:
    """This process's open file descriptors on pseudo-terminals, as ``fd -> path``."""
    found = set()
    with contextlib.suppress(OSError):
        for fd in os.listdir("/proc/self/fd"):
            with contextlib.suppress(OSError):
                target = os.readlink(f"/proc/self/fd/{fd}")
                if target.startswith("/dev/pts/") or target == "/dev/ptmx":
                    found.add(f"{fd} -> {target}")
    return found


@dataclass(slots=True)
class Open:
    """The CPU an open cost, from the call until the board could be read."""

    wall_s: float
    user_s: float
    sys_s: float

    @property
    def cpu_s(self) -> float:
        return self.user_s + self.sys_s

    def summary(self) -> str:
        return (
            f"wall {self.wall_s:.2f} s, cpu {self.cpu_s:.3f} s (user {self.user_s:.3f}, "
            f"sys {self.sys_s:.3f}, {self.cpu_s / self.wall_s:.0%} of a core)"
        )


@dataclass(slots=True)
class Pin:
    """One pin's readings inside the steady window."""

    channel: str
    count: int
    largest_gap_us: int
    largest_gap_at_s: float  # where it began, in seconds from the start of the window
    over_target: int  # gaps longer than TARGET_GAP_INTERVALS intervals


def pin_stats(
    channel: str, times_us: Sequence[int], start_us: int, end_us: int, interval_us: int
) -> Pin:
    """Count the readings of one pin between ``start_us`` and ``end_us`` and their gaps."""
    inside = sorted(t for t in times_us if start_us <= t <= end_us)
    gaps = [(b - a, a) for a, b in itertools.pairwise(inside)]
    largest, at = max(gaps, default=(0, start_us))
    limit = TARGET_GAP_INTERVALS * interval_us
    over = sum(gap > limit for gap, _at in gaps)
    return Pin(channel, len(inside), largest, (at - start_us) / US_PER_S, over)


@dataclass(slots=True)
class Steady:
    """One side's steady run: ``window_s`` of reading, its CPU, and every pin's readings."""

    window_s: float
    user_s: float
    sys_s: float
    pins: list[Pin]
    interval_ms: int
    sent: int  # analog messages the board sent from boot to close (its own counter)
    received: int  # readings the side got in all (callbacks, or rows stored), window or not

    @property
    def cpu_s(self) -> float:
        return self.user_s + self.sys_s

    @property
    def readings(self) -> int:
        return sum(p.count for p in self.pins)

    @property
    def largest_gap_us(self) -> int:
        return max((p.largest_gap_us for p in self.pins), default=0)

    @property
    def largest_gap_at_s(self) -> float:
        return max(self.pins, key=lambda p: p.largest_gap_us).largest_gap_at_s

    @property
    def over_target(self) -> int:
        return sum(p.over_target for p in self.pins)

    def gap_intervals(self) -> float:
        return self.largest_gap_us / (self.interval_ms * US_PER_MS)

    def ms_per_1000(self) -> float:
        return self.cpu_s / self.readings * 1e6 if self.readings else float("nan")

    def summary(self) -> str:
        return (
            f"{self.readings:,} readings in {self.window_s:.1f} s, "
            f"cpu {self.cpu_s:.2f} s (user {self.user_s:.2f}, sys {self.sys_s:.2f}, "
            f"{self.cpu_s / self.window_s:.1%} of a core), {self.ms_per_1000():.1f} ms per "
            f"1000 readings; largest gap {self.largest_gap_us / US_PER_MS:.1f} ms "
            f"({self.gap_intervals():.1f} intervals, {self.largest_gap_at_s:.2f} s into the "
            f"window), gaps over "
            f"{TARGET_GAP_INTERVALS:g} intervals: {self.over_target}"
        )

    def totals(self) -> str:
        return (
            f"board sent {self.sent:,} in all, received {self.received:,} "
            f"(lost {self.sent - self.received:,}, ratio {self.received / self.sent:.4f})"
        )

    def per_pin(self) -> str:
        return ", ".join(
            f"{p.channel} {p.count:,} ({p.largest_gap_us / US_PER_MS:.1f} ms)" for p in self.pins
        )


# -- the baseline: plain pyfirmata2 ------------------------------------------------------


def run_baseline(
    interval_ms: int, seconds: float, reset_wait_s: float
) -> tuple[Open, Steady, BoardCount]:
    """pyfirmata2's own open, then its callbacks appending to lists; see the docstring."""
    pyfirmata2.pyfirmata2.BOARD_SETUP_WAIT_TIME = reset_wait_s  # 5 s unless --smoke
    board_process = BoardProcess()
    board: Any = None
    values: dict[int, list[tuple[float, float]]] = {pin: [] for pin in PINS}

    def recorder(readings: list[tuple[float, float]]) -> Callable[[float], None]:
        def record(value: float) -> None:
            readings.append((time.time(), value))

        return record

    try:
        user0, sys0 = cpu_times()
        start = time.perf_counter()
        board = pyfirmata2.Arduino(board_process.url)
        wall = time.perf_counter() - start
        user1, sys1 = cpu_times()
        opened = Open(wall, user1 - user0, sys1 - sys0)
        for number in PINS:
            board.get_pin(f"a:{number}:i").register_callback(recorder(values[number]))
        board.samplingOn(interval_ms)
        board_process.count(restart=True)
        user0, sys0 = cpu_times()
        start_us, start = now_us(), time.perf_counter()
        time.sleep(seconds)
        end_us, window = now_us(), time.perf_counter() - start
        user1, sys1 = cpu_times()
        board_count = board_process.count()
        board.exit()
        sent = board_process.count().reports_sent
    finally:
        if board is not None:
            board.exit()  # a second exit() is harmless: it is what pyfirmata2's __del__ does
        board_process.close()
    pins = [
        pin_stats(
            f"A{number}",
            [round(t * 1e6) for t, _value in values[number]],
            start_us,
            end_us,
            interval_ms * US_PER_MS,
        )
        for number in PINS
    ]
    received = sum(len(readings) for readings in values.values())
    steady = Steady(window, user1 - user0, sys1 - sys0, pins, interval_ms, sent, received)
    return opened, steady, board_count


# -- the hub: FirmataReader -> IngestPipeline -> SQLite ----------------------------------


@dataclass(slots=True)
class HubResult:
    opened: Open
    steady: Steady
    check: str
    cpu_by_thread: dict[str, float]  # over the steady window
    board: BoardCount  # the board's counters at the end of the window


def stored_times(path: Path) -> tuple[dict[str, list[int]], int]:
    """Every stored timestamp of the benchmark's device by channel, and the row count."""
    times: dict[str, list[int]] = {}
    with sqlite3.connect(path) as conn:
        rows = conn.execute(
            "SELECT s.channel, r.ts FROM readings r JOIN series s ON s.id = r.series_id "
            "WHERE s.device = ? ORDER BY s.channel, r.ts",
            (DEVICE_ID,),
        ).fetchall()
        total = conn.execute("SELECT count(*) FROM readings").fetchone()[0]
    conn.close()
    for channel, ts in rows:
        times.setdefault(channel, []).append(ts)
    return times, total


def run_hub(interval_ms: int, seconds: float, reset_wait_s: float, tmp: Path) -> HubResult:
    """The measured side; see the module docstring."""
    path = tmp / "firmata.sqlite"
    engine = make_engine(f"sqlite:///{path}")
    upgrade(engine)
    pipeline = IngestPipeline(ReadingStore(engine)).start()
    board_process: BoardProcess | None = None
    reader: FirmataReader | None = None
    online = threading.Event()

    def on_status(status: ReaderStatus) -> None:
        if status.online:
            online.set()

    settings = FirmataSettings(
        sampling_ms=interval_ms, analog_pins=list(PINS), reset_wait_s=reset_wait_s
    )
    try:
        board_process = BoardProcess()
        reader = FirmataReader(
            url=board_process.url,
            device_id=DEVICE_ID,
            pipeline=pipeline,
            settings=settings,
            on_status=on_status,
        )
        user0, sys0 = cpu_times()
        start = time.perf_counter()
        reader.start()
        if not online.wait(reset_wait_s + OPEN_TIMEOUT_S):
            raise SystemExit(
                f"the hub was not online within {reset_wait_s + OPEN_TIMEOUT_S:.0f} s: "
                f"{reader.status.message}"
            )
        wall = time.perf_counter() - start
        user1, sys1 = cpu_times()
        opened = Open(wall, user1 - user0, sys1 - sys0)

        threads = {
            "reader thread (read, decode, submit: validate, convert, queue)": [
                t for t in threading.enumerate() if t.name == f"labhub-firmata-{DEVICE_ID}"
            ],
            "ingest writer (SQLite)": [
                t for t in threading.enumerate() if t.name == "labhub-ingest"
            ],
        }
        threads0 = {name: thread_cpu(group) for name, group in threads.items()}
        board_process.count(restart=True)
        user0, sys0 = cpu_times()
        start_us, start = now_us(), time.perf_counter()
        time.sleep(seconds)
        end_us, window = now_us(), time.perf_counter() - start
        user1, sys1 = cpu_times()
        by_thread = {name: thread_cpu(group) - threads0[name] for name, group in threads.items()}
        board = board_process.count()
        reader.stop()
        pipeline.flush()
        sent = board_process.count().reports_sent
    finally:
        if reader is not None:
            reader.stop()
        if board_process is not None:
            board_process.close()
        pipeline.close()
        engine.dispose()

    counters = pipeline.counters()
    stats = reader.status.stats
    times, rows = stored_times(path)
    pins = [
        pin_stats(
            f"A{number}", times.get(f"A{number}", []), start_us, end_us, interval_ms * US_PER_MS
        )
        for number in PINS
    ]
    problems = []
    if rows != stats.readings or rows != counters["accepted"]:
        problems.append(f"{rows:,} rows but the reader submitted {stats.readings:,}")
    if set(times) != {f"A{number}" for number in PINS}:
        problems.append(f"channels stored: {sorted(times)}")
    if board.sampling_interval_ms != interval_ms or board.reporting != list(PINS):
        problems.append(
            f"the board samples every {board.sampling_interval_ms} ms, pins {board.reporting}"
        )
    check = (
        f"{rows:,} rows in readings, accepted {counters['accepted']:,}, duplicate "
        f"{counters['duplicate']}, suspect {counters['suspect']}, rejected "
        f"{counters['rejected']}, failed {counters['failed']}, batches {counters['batches']:,}; "
        f"reader: readings {stats.readings:,}, connects {stats.connects}; board: sampling "
        f"{board.sampling_interval_ms} ms, pins {board.reporting}, boots {board.boots}, "
        f"errors {board.errors}, bytes dropped {board.bytes_dropped}"
    )
    check += f": MISMATCH {'; '.join(problems)}" if problems else ": ok"
    steady = Steady(window, user1 - user0, sys1 - sys0, pins, interval_ms, sent, rows)
    return HubResult(opened, steady, check, by_thread, board)


# -- main --------------------------------------------------------------------------------


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--seconds",
        type=float,
        default=60.0,
        help="how long each side reads the board, after its open",
    )
    parser.add_argument(
        "--interval-ms",
        type=int,
        default=10,
        help="the board's sampling interval (the hub's settings allow 10 or more)",
    )
    parser.add_argument("--dir", type=Path, default=None, help="where the temporary files go")
    parser.add_argument(
        "--smoke",
        action="store_true",
        help=f"{SMOKE_SECONDS:g} s per side after a {SMOKE_RESET_WAIT_S:g} s reset wait: "
        "a few seconds in all",
    )
    args = parser.parse_args()
    if args.smoke:
        args.seconds = SMOKE_SECONDS
    if args.interval_ms < 10:
        parser.error("--interval-ms: FirmataSettings.sampling_ms takes 10 ms or more")
    return args


def main() -> None:
    args = parse_args()
    seconds, interval_ms = args.seconds, args.interval_ms
    reset_wait_s = SMOKE_RESET_WAIT_S if args.smoke else RESET_WAIT_S
    threads_before = {t.ident for t in threading.enumerate()}
    ptys_before = pty_fds()
    print(
        f"firmata: a virtual StandardFirmata Uno reporting {len(PINS)} analog pins every "
        f"{interval_ms} ms for {seconds:g} s per side (after a {reset_wait_s:g} s open), "
        "in a separate board process"
    )
    print(f"machine: {machine('pyfirmata2 ' + importlib.metadata.version('pyfirmata2'))}")
    print(f"load average at the start: {load_average()}")
    print(
        f"baseline: plain pyfirmata2: Arduino(url) (spins through its {reset_wait_s:g} s reset "
        "wait), "
        f"get_pin('a:N:i'), register_callback appending (time, value), "
        f"samplingOn({interval_ms}); no storage"
    )
    print(
        f"hub: FirmataReader (sampling_ms={interval_ms}, reset_wait_s={reset_wait_s:g}) -> "
        "IngestPipeline -> SQLite (WAL, synchronous=NORMAL, foreign keys ON), CPU of the "
        "whole hub process"
    )

    base_open, baseline, base_board = run_baseline(interval_ms, seconds, reset_wait_s)
    print(f"open baseline: Arduino(url): {base_open.summary()}")
    print(f"baseline: {baseline.summary()}")
    print(f"  {baseline.totals()}")
    print(f"  per pin (largest gap): {baseline.per_pin()}")
    print(f"  {base_board.lateness()}")
    with tempfile.TemporaryDirectory(prefix="labhub-bench-firmata-", dir=args.dir) as tmp:
        hub = run_hub(interval_ms, seconds, reset_wait_s, Path(tmp))
    run = hub.steady
    print(f"open hub: FirmataReader.start() until online: {hub.opened.summary()}")
    print(f"hub:      {run.summary()}")
    print(f"  per pin (largest gap): {run.per_pin()}")
    print(f"  check: {hub.check}")
    print(f"  {hub.board.lateness()}")
    per_1000 = 1e6 / run.readings if run.readings else float("nan")
    other = run.cpu_s - sum(hub.cpu_by_thread.values())
    split = ", ".join(f"{name} {cpu * per_1000:.1f}" for name, cpu in hub.cpu_by_thread.items())
    print(f"  hub cpu by thread, ms per 1000 readings: {split}, other {other * per_1000:.1f}")
    print(
        f"  board process (not counted): {hub.board.reports_sent:,} messages sent since boot, "
        f"cpu {hub.board.cpu_s:.2f} s since it started"
    )

    expected = run.window_s * 1000 / interval_ms
    counts = [p.count for p in run.pins]
    print(f"expected per pin: {expected:,.0f} ({run.window_s:.1f} s x {1000 / interval_ms:g}/s)")
    print(f"stored per pin: {min(counts):,} to {max(counts):,}")
    print(f"ratio stored/expected: {sum(counts) / (expected * len(counts)):.4f}")
    print(f"sent and stored, the whole session: {run.totals()}")
    print(
        f"readings stored per second: {run.readings / run.window_s:,.1f} "
        f"({run.readings / run.window_s / len(PINS):,.1f} per pin)"
    )
    print(
        f"largest gap: {run.largest_gap_us / US_PER_MS:.1f} ms ({run.gap_intervals():.1f} "
        "intervals)"
    )
    print(f"gaps over {TARGET_GAP_INTERVALS:g} intervals: {run.over_target}")
    met = run.gap_intervals() < TARGET_GAP_INTERVALS
    print(
        f"target: largest gap under {TARGET_GAP_INTERVALS:g} intervals: "
        f"{'target met' if met else 'target missed'}"
    )
    hub_ms, baseline_ms = run.ms_per_1000(), baseline.ms_per_1000()
    print(f"cpu: {run.cpu_s / run.window_s:.1%} of a core, {hub_ms:.1f} ms per 1000 readings")
    print(
        f"baseline pyfirmata2 cpu: {baseline.cpu_s / baseline.window_s:.1%} of a core, "
        f"{baseline_ms:.1f} ms per 1000 readings"
    )
    print(f"ratio hub cpu / pyfirmata2 cpu: {hub_ms / baseline_ms:.2f} (lower is better)")
    print(
        f"open cpu: hub {hub.opened.cpu_s:.3f} s, pyfirmata2 {base_open.cpu_s:.3f} s; "
        f"ratio hub / pyfirmata2: {hub.opened.cpu_s / base_open.cpu_s:.4f} (lower is better)"
    )

    print(f"load average at the end: {load_average()}")
    threads_left = [
        t.name for t in threading.enumerate() if t.ident not in threads_before and t.is_alive()
    ]
    processes_left = [p.name for p in multiprocessing.active_children()]
    ptys_left = sorted(pty_fds() - ptys_before)
    clean = not (threads_left or processes_left or ptys_left)
    print(
        f"cleanup: threads left {threads_left}, processes left {processes_left}, pty fds left "
        f"{ptys_left}: {'ok' if clean else 'LEFTOVERS'}"
    )


if __name__ == "__main__":
    main()
