"""Long ranges from rollups, and rollup upkeep during ingest. (Part of ``bench/ops.py``.)

**Long ranges.** One channel at 1 Hz for a year (31,536,000 readings; ``--smoke``: two
days) bulk-loaded into a fresh, migrated SQLite file with stdlib ``sqlite3`` (ordered
``executemany``, straight into ``readings``) and one journal span covering them (what a
hub's writer would have journaled), then rolled up by :func:`sensors.rollups.roll_up` as
the ``rollups`` job does (its time is printed). Then the year in 500 buckets through
:func:`sensors.queries.downsample` (from the rollups; the range starts at an odd time,
mid-minute, so every bucket edge needs minutes and raw readings), against the same buckets
from raw readings (the SQLite path ``downsample`` takes without rollups: one aggregate per
bucket over its stretch of the key), alternating, median of several runs each; the two
answers are checked equal (count, min, max exactly, mean to 1e-9). Target: under 50 ms.

**Rollup upkeep during ingest.** ``bench/ingest.py``'s measurement (a 20-channel station,
one timestamp a second, through the whole pipeline into a fresh SQLite file, against
stdlib ``executemany`` of the same rows) run three ways, alternating: the baseline, the
pipeline alone, and the pipeline while a thread runs :func:`sensors.rollups.roll_up` over
and over, back to back, then once more at the end, and the rollups are checked to hold
every reading. Back to back, because the bench's data arrives about 10,000 times faster
than a station's: a hub's run every 60 s over a minute of data, scaled to this rate, is
a run every 6 ms, more often than a run can finish (a fixed period of seconds would let
the whole million in before the first run on a quiet machine, and measure nothing).
Printed: each ingest ratio (pipeline over baseline), the drop with rollups, and how many
rollup runs ended during the timed ingest. Target: at most 10 %.
"""

from __future__ import annotations

import gc
import sqlite3
import statistics
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from _common import STATION_CHANNELS, load_average, station_samples
from ingest import DEVICE, SOURCE, create_schema, remove_database, run_baseline

from labhub.db import make_engine
from sensors import queries
from sensors.pipeline import IngestPipeline
from sensors.rollups import roll_up
from sensors.samples import US_PER_S, Sample
from sensors.storage import ReadingStore

T0 = 1_735_689_600 * US_PER_S  # 2025-01-01T00:00:00Z
TARGET_MS = 50
TARGET_DROP = 0.10
BUCKETS = 500


def _load_year(path: Path, seconds: int) -> int:
    """A fresh file with one channel at 1 Hz for ``seconds`` s; its series id."""
    create_schema(path)
    engine = make_engine(f"sqlite:///{path}")
    sid = ReadingStore(engine).ensure_series(device="station", channel="t",
                                             quantity="temperature", unit="degC",
                                             site=None).id
    engine.dispose()
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=OFF")
    step = 86_400
    for day in range(0, seconds, step):
        conn.executemany("INSERT INTO readings VALUES (?, ?, ?, 0)", (
            (sid, T0 + s * US_PER_S, 20.0 + ((s * 7919) % 1000) / 100.0)
            for s in range(day, min(seconds, day + step))))
        conn.commit()
    conn.execute("INSERT INTO reading_spans (series_id, ts_min, ts_max, rows, at) "
                 "SELECT series_id, min(ts), max(ts), count(*), 0 FROM readings "
                 "GROUP BY series_id")
    conn.commit()
    conn.close()
    return int(sid)


def long_ranges(smoke: bool) -> Iterator[str]:
    seconds = 2 * 86_400 if smoke else 365 * 86_400
    runs = 3 if smoke else 15
    with tempfile.TemporaryDirectory(prefix="labhub-bench-rollups-") as tmp:
        path = Path(tmp) / "year.sqlite"
        began = time.perf_counter()
        sid = _load_year(path, seconds)
        loaded = time.perf_counter() - began
        size = path.stat().st_size
        yield (f"[long ranges] {seconds:,} readings of one channel at 1 Hz loaded in "
               f"{loaded:.1f} s ({size / 2**20:,.0f} MiB)")
        engine = make_engine(f"sqlite:///{path}")
        began = time.perf_counter()
        done = roll_up(engine=engine)
        yield (f"[long ranges] rolled up in {time.perf_counter() - began:.1f} s "
               f"({done.hours:,} hours)")
        start = T0 + 12_345_678_901 % (3600 * US_PER_S)  # an odd time, mid-minute
        end = T0 + seconds * US_PER_S - 7_654_321
        buckets = 40 if smoke else BUCKETS  # two days in 40: buckets over an hour wide
        width = -(-(end - start) // buckets)
        fast: list[float] = []
        fast_cpu: list[float] = []
        slow: list[float] = []
        with engine.connect() as conn:
            for run in range(runs):
                t, c = time.perf_counter(), time.process_time()
                got = queries.downsample(conn=conn, series_id=sid, buckets=buckets,
                                         start=start, end=end)
                fast.append(time.perf_counter() - t)
                fast_cpu.append(time.process_time() - c)
                if run % 3 == 0:  # the raw query reads the whole year: a third as often
                    t = time.perf_counter()
                    raw = queries._sqlite_buckets(conn, sid, start, end, width)
                    slow.append(time.perf_counter() - t)
        engine.dispose()
        same = len(got) == len(raw) and all(
            (b.count, b.min, b.max) == (n, lo, hi) and abs(b.mean - mean) <= 1e-9 * abs(mean)
            for b, (_, n, lo, mean, hi, _t0, _t1) in zip(got, raw, strict=True))
        median_fast = statistics.median(fast) * 1000
        median_slow = statistics.median(slow) * 1000
        verdict = "met" if median_fast < TARGET_MS else "missed"
        yield (f"[long ranges] {buckets} buckets of the {'two days' if smoke else 'year'}: "
               f"from rollups {median_fast:.1f} ms (median of {runs}; CPU "
               f"{statistics.median(fast_cpu) * 1000:.1f} ms), from raw readings "
               f"{median_slow:.1f} ms (median of {len(slow)}): "
               f"{median_slow / median_fast:.1f}x; same answer: {'yes' if same else 'NO'}; "
               f"load average {load_average()}")
        yield f"[long ranges] target under {TARGET_MS} ms: {verdict}"


def _pipeline(path: Path, chunks: list[list[Sample]], expected: int,
              rollups: bool) -> tuple[float, float, int]:
    """Seconds from the first submit until flush() returns, rolling up meanwhile or not,
    the process's CPU seconds over the same time (every thread's), and the rollup runs
    that ended within it."""
    create_schema(path)
    engine = make_engine(f"sqlite:///{path}")
    stop = threading.Event()
    runs = [0]

    def keep_up() -> None:
        while not stop.is_set():
            roll_up(engine=engine, stopping=stop.is_set)
            runs[0] += 1

    worker = threading.Thread(target=keep_up, name="bench-rollups")
    gc.collect()
    with IngestPipeline(ReadingStore(engine)) as pipeline:
        if rollups:
            worker.start()
        start, cpu = time.perf_counter(), time.process_time()
        for chunk in chunks:
            pipeline.submit(chunk, device=DEVICE, source=SOURCE)
        pipeline.flush()
        elapsed = time.perf_counter() - start
        cpu = time.process_time() - cpu
        during = runs[0]
    stop.set()
    if rollups:
        worker.join()
        roll_up(engine=engine)
        with engine.connect() as conn:
            rolled = conn.exec_driver_sql("SELECT sum(n) FROM rollup_hours").scalar_one()
        if rolled != expected:
            raise SystemExit(f"the rollups hold {rolled} readings, not {expected}")
    engine.dispose()
    return elapsed, cpu, during


def upkeep(smoke: bool) -> Iterator[str]:
    n = 20_000 if smoke else 1_000_000
    runs = 1 if smoke else 3
    samples = station_samples(n, 1, 1)
    chunks = [samples[i:i + 1000] for i in range(0, n, 1000)]
    sid = {channel: k for k, (channel, *_shape) in enumerate(STATION_CHANNELS, start=1)}
    rows = [(sid[s.channel], s.ts, s.value, 0) for s in samples]
    batches = [rows[i:i + 1000] for i in range(0, n, 1000)]
    del rows
    gc.collect()
    gc.freeze()
    rates: dict[str, list[float]] = {"baseline": [], "pipeline": [], "with rollups": []}
    cpus: dict[str, list[float]] = {"pipeline": [], "with rollups": []}
    rolled_runs: list[int] = []
    with tempfile.TemporaryDirectory(prefix="labhub-bench-upkeep-") as tmp:
        for run in range(runs):
            for kind in rates:
                path = Path(tmp) / f"{kind.replace(' ', '-')}-{run}.sqlite"
                if kind == "baseline":
                    elapsed = run_baseline(path, batches)
                else:
                    elapsed, cpu, during = _pipeline(path, chunks, n, kind == "with rollups")
                    cpus[kind].append(cpu)
                    if kind == "with rollups":
                        rolled_runs.append(during)
                remove_database(path)
                rates[kind].append(n / elapsed)
    gc.unfreeze()
    base = statistics.median(rates["baseline"])
    plain = statistics.median(rates["pipeline"]) / base
    rolled = statistics.median(rates["with rollups"]) / base
    drop = 1 - rolled / plain
    cpu_plain = statistics.median(cpus["pipeline"])
    cpu_rolled = statistics.median(cpus["with rollups"])
    yield (f"[upkeep] {n:,} readings of a {len(STATION_CHANNELS)}-channel station, {runs} "
           f"runs of each, alternating; baseline median {base:,.0f} readings/s")
    yield (f"[upkeep] ingest ratio without rollups {plain:.2f}, with rollups back to back "
           f"{rolled:.2f} ({', '.join(map(str, rolled_runs))} rollup runs ended during "
           f"the timed ingest): drop {drop * 100:.1f} % "
           f"(target at most {TARGET_DROP * 100:.0f} %: "
           f"{'met' if drop <= TARGET_DROP else 'missed'}); load average {load_average()}")
    yield (f"[upkeep] CPU of the process while ingesting: {cpu_plain:.2f} s without rollups, "
           f"{cpu_rolled:.2f} s with: the rollups' share {1 - cpu_plain / cpu_rolled:.1%} "
           "(what the drop would be on a machine with no CPU to spare)")


def measure(smoke: bool) -> Iterator[str]:
    """The part's lines of figures."""
    yield from long_ranges(smoke)
    yield from upkeep(smoke)
