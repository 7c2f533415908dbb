"""A backup of a large database while ingest runs. (Part of ``bench/ops.py``.)

A hub database of :data:`TARGET_BYTES` (2 GB; 20 MB with ``--smoke``) is built quickly:
migrated, then readings of 200 series bulk-inserted with the standard library's
``executemany`` (WAL, no sync), outside every timing. Then, in one run and on that file:

1. ingest alone: a producer thread hands the real ``IngestPipeline`` 1,000 readings a
   submission (a 20-channel station, ``submit_columns``) as fast as it takes them, for
   :data:`ALONE_S` seconds; the rate is the readings committed per second;
2. the backup alone (``labhub.backup.take_backup``: the stepped copy, its integrity check
   and its rename), timed;
3. the backup again while the same ingest runs: its time, and the ingest rate during it;
4. ingest alone again (the file has grown; the baseline is the mean of 1 and 4).

The printed ratio is the ingest rate during the backup over the rate alone. The producer's
own CPU per reading is printed too: it must stay well under the writer's, or the producer,
not storage, would set the pace of both rates. The whole file sits in the page cache of a
machine with this much memory (and the copy mostly too), so the backup's time here is a
floor: an SD card reads at 20-40 MB/s and writes slower.
"""

from __future__ import annotations

import os
import sqlite3
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from _common import load_average, thread_cpu

from labhub import backup
from labhub.db import make_engine, upgrade
from sensors.pipeline import IngestPipeline
from sensors.samples import US_PER_S, now_us
from sensors.storage import ReadingStore

TARGET_BYTES = 2_000_000_000
SMOKE_BYTES = 20_000_000
ALONE_S = 15.0
SMOKE_ALONE_S = 1.0
SERIES = 200
CHANNELS = [f"c{i:02d}" for i in range(20)]
STEPS_PER_SUBMISSION = 50  # 50 times x 20 channels = 1,000 readings a submission


def _build(path: Path, target: int) -> tuple[int, float]:
    """A migrated hub database of about ``target`` bytes; (readings, seconds)."""
    engine = make_engine(f"sqlite:///{path}")
    upgrade(engine)
    store = ReadingStore(engine)
    ids = [store.ensure_series(device=f"kit-{i // 20:02d}", channel=CHANNELS[i % 20],
                               quantity=None, unit=None, site=None).id
           for i in range(SERIES)]
    engine.dispose()
    started = time.perf_counter()
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA synchronous=OFF")
    start_s = now_us() // US_PER_S - 400 * 86_400  # a year of history before the ingest's
    per_round = 20_000 if target > 100 * SMOKE_BYTES else 500  # rows a series, a round
    total = 0
    offset = 0
    while os.path.getsize(path) + _wal(path) < target:
        conn.execute("BEGIN")
        for sid in ids:  # each series' next stretch of seconds: primary key order
            rows = ((sid, (start_s + offset + k) * US_PER_S, 20.0 + (k % 97) / 10, 0)
                    for k in range(per_round))
            conn.executemany("INSERT INTO readings (series_id, ts, value, flags) "
                             "VALUES (?, ?, ?, ?)", rows)
        conn.execute("COMMIT")
        offset += per_round
        total += per_round * len(ids)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    return total, time.perf_counter() - started


def _wal(path: Path) -> int:
    wal = Path(f"{path}-wal")
    return wal.stat().st_size if wal.exists() else 0


class _Ingest:
    """A producer thread feeding the pipeline until stopped; new times on every run."""

    def __init__(self, pipeline: IngestPipeline) -> None:
        self.pipeline = pipeline
        self.next_s = now_us() // US_PER_S - 30 * 86_400
        self.columns = [[float(20 + c + (i % 7) / 10) for i in range(STEPS_PER_SUBMISSION)]
                        for c in range(len(CHANNELS))]

    def run(self, until: threading.Event) -> tuple[int, float, float]:
        """Ingest until ``until`` is set: (readings committed, seconds, producer CPU s)."""
        done = threading.Event()
        cpu = [0.0]

        def produce() -> None:
            me = [threading.current_thread()]
            while not until.is_set():
                times = [(self.next_s + k) * US_PER_S for k in range(STEPS_PER_SUBMISSION)]
                self.next_s += STEPS_PER_SUBMISSION
                self.pipeline.submit_columns(CHANNELS, times, self.columns,
                                             device="station-bench", source="bench")
            cpu[0] = thread_cpu(me)
            done.set()

        before = self.pipeline.counters()["accepted"]
        started = time.perf_counter()
        thread = threading.Thread(target=produce, name="bench-producer")
        thread.start()
        done.wait()
        thread.join()
        elapsed = time.perf_counter() - started
        committed = self.pipeline.counters()["accepted"] - before
        self.pipeline.flush(60)
        return committed, elapsed, cpu[0]


def _timed_stop(seconds: float) -> threading.Event:
    event = threading.Event()
    threading.Timer(seconds, event.set).start()
    return event


def measure(smoke: bool) -> Iterator[str]:
    """The part's lines of figures."""
    target = SMOKE_BYTES if smoke else TARGET_BYTES
    alone_s = SMOKE_ALONE_S if smoke else ALONE_S
    with tempfile.TemporaryDirectory(prefix="labhub-bench-backup-") as tmp:
        folder = Path(tmp)
        database = folder / "labhub.db"
        copies = folder / "copies"
        copies.mkdir()
        rows, built = _build(database, target)
        size = database.stat().st_size
        yield (f"[backup] database: {size / 1e9:.2f} GB, {rows:,} readings of {SERIES} series "
               f"(built in {built:.0f} s, outside the timings); load {load_average()}")
        engine = make_engine(f"sqlite:///{database}")
        try:
            with IngestPipeline(ReadingStore(engine), flush_interval_s=0.05) as pipeline:
                ingest = _Ingest(pipeline)
                a_rows, a_s, a_cpu = ingest.run(_timed_stop(alone_s))
                lone = backup.take_backup(database, copies)
                lone.path.unlink()
                stop = threading.Event()
                result: list[backup.Backup] = []

                def back_up() -> None:
                    try:
                        result.append(backup.take_backup(database, copies))
                    finally:
                        stop.set()

                runner = threading.Thread(target=back_up, name="bench-backup")
                runner.start()
                d_rows, d_s, d_cpu = ingest.run(stop)
                runner.join()
                during = result[0]
                b_rows, b_s, b_cpu = ingest.run(_timed_stop(alone_s))
        finally:
            engine.dispose()
    alone_rate = (a_rows + b_rows) / (a_s + b_s)
    during_rate = d_rows / d_s
    yield (f"[backup] ingest alone: {a_rows / a_s:,.0f} then {b_rows / b_s:,.0f} readings/s "
           f"(producer CPU {1e6 * (a_cpu + b_cpu) / max(a_rows + b_rows, 1):.2f} us a "
           "reading)")
    yield (f"[backup] backup alone: {lone.seconds:.1f} s ({lone.size / 1e9:.2f} GB, "
           f"{lone.size / 1e6 / lone.seconds:,.0f} MB/s; integrity check "
           f"{lone.check_seconds:.1f} s of it)")
    yield (f"[backup] backup during ingest: {during.seconds:.1f} s ({during.size / 1e9:.2f} "
           f"GB; integrity check {during.check_seconds:.1f} s of it); ingest meanwhile "
           f"{during_rate:,.0f} readings/s over {d_s:.1f} s (producer CPU "
           f"{1e6 * d_cpu / max(d_rows, 1):.2f} us a reading)")
    yield (f"[backup] ingest ratio during the backup / alone: {during_rate / alone_rate:.2f}; "
           f"backup time ratio during ingest / alone: {during.seconds / lone.seconds:.2f}")
