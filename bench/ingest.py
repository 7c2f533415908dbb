"""Ingest benchmark: the full pipeline against the standard library's sqlite3, in one run.

Pushes 1,000,000 decoded readings of one station (20 channels sharing a timestamp every
second, varied float values) through :class:`sensors.pipeline.IngestPipeline` into a fresh,
migrated SQLite file, submitted in chunks of 1,000 samples (what an HTTP upload or a serial
reader hands over), and times from the first ``submit`` until ``flush()`` returns, that is
until every reading is committed. In the same run it inserts the same rows into a fresh file
with the same schema using plain ``sqlite3`` ``executemany`` in batches of 1,000 with one
commit per batch (WAL, ``synchronous=NORMAL``): the baseline, what the hardware and SQLite
allow with no validation, conversion, threading or acknowledgement at all. Baseline and
pipeline runs alternate (3 each by default, fresh files every time); the medians are
compared. Decoding, building the samples and migrating the files are outside the timings.

Reading the output: one line per run with its rate in readings/s (the pipeline lines also
show the count check: rows in the table and the pipeline's ``accepted`` counter), the two
medians, the machine, and the last line ``ratio: 0.NN``, the pipeline median divided by the
baseline median. The target is a ratio of at least 0.5. The machine is shared and noisy:
compare the ratio, not the absolute rates, across machines and days. The pipeline runs with
foreign keys ON (LabHub's connection setting) and the baseline with the stdlib default OFF,
which favours the baseline.

Run: ``python bench/ingest.py``; ``--smoke`` runs it at a small size in a few seconds
(``make test`` does), which checks that it works and measures nothing worth reading.
"""

from __future__ import annotations

import argparse
import gc
import importlib.util
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path

if importlib.util.find_spec("sensors") is None:  # run from a checkout without installing
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _common import STATION_CHANNELS as CHANNELS
from _common import machine, station_samples

from labhub.db import make_engine, upgrade
from sensors.pipeline import IngestPipeline
from sensors.quantities import resolve_channel
from sensors.samples import Sample
from sensors.storage import ReadingStore

DEVICE = "station-bench"
SOURCE = "bench"
TARGET_RATIO = 0.5  # from the issue: the pipeline reaches at least half the raw rate
STEP_S = 1  # one timestamp per second, shared by every channel of the station

# A school weather and environment station: (channel name as the kit prints it, centre value,
# daily swing, noise). Every value stays inside its quantity's plausible range, so no reading
# is flagged suspect and the pipeline stores exactly the rows the baseline stores.
def sqlite_url(path: Path) -> str:
    return f"sqlite:///{path}"


def create_schema(path: Path) -> None:
    """A fresh migrated database file at ``path``."""
    engine = make_engine(sqlite_url(path))
    upgrade(engine)
    engine.dispose()


def table_summary(path: Path) -> tuple[int, int, int, float, int]:
    """``(rows, sums of series ids, times, values, flags)``: equal tables, equal sums."""
    with sqlite3.connect(path) as conn:
        row = conn.execute(
            "SELECT count(*), total(series_id), sum(ts % 1000000007), total(value), "
            "total(flags) FROM readings"
        ).fetchone()
    conn.close()
    return int(row[0]), int(row[1]), int(row[2]), float(row[3]), int(row[4])


def run_baseline(path: Path, batches: list[list[tuple[int, int, float, int]]]) -> float:
    """Seconds to insert every batch with stdlib sqlite3, one commit per batch."""
    create_schema(path)
    engine = make_engine(sqlite_url(path))
    store = ReadingStore(engine)
    for number, (channel, *_shape) in enumerate(CHANNELS, start=1):
        spec = resolve_channel(channel)
        row = store.ensure_series(
            device=DEVICE, channel=channel, quantity=spec.quantity, unit=spec.unit, site=None
        )
        if row.id != number:
            raise SystemExit(f"series {channel!r} got id {row.id}, expected {number}")
    engine.dispose()
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    sql = "INSERT INTO readings VALUES (?,?,?,?)"
    gc.collect()
    start = time.perf_counter()
    for batch in batches:
        conn.executemany(sql, batch)
        conn.commit()
    elapsed = time.perf_counter() - start
    conn.close()
    return elapsed


def run_pipeline(path: Path, chunks: list[list[Sample]], expected: int) -> tuple[float, str]:
    """Seconds from the first submit until flush() returns, and the count check's line."""
    create_schema(path)
    engine = make_engine(sqlite_url(path))
    store = ReadingStore(engine)
    gc.collect()
    with IngestPipeline(store) as pipeline:
        start = time.perf_counter()
        for chunk in chunks:
            pipeline.submit(chunk, device=DEVICE, source=SOURCE)
        pipeline.flush()
        elapsed = time.perf_counter() - start
        counters = pipeline.counters()
    engine.dispose()
    stored = table_summary(path)[0]
    if stored != expected or counters["accepted"] != expected:
        raise SystemExit(
            f"count check failed: {stored:,} rows stored, counters {counters}, "
            f"expected {expected:,}"
        )
    check = (
        f"{stored:,} rows in readings, accepted {counters['accepted']:,}, "
        f"duplicate {counters['duplicate']}, suspect {counters['suspect']}, "
        f"rejected {counters['rejected']}, batches {counters['batches']:,}: ok"
    )
    return elapsed, check


def remove_database(path: Path) -> None:
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--readings", type=int, default=1_000_000, help="readings per run")
    parser.add_argument("--runs", type=int, default=3, help="runs of each (alternating)")
    parser.add_argument("--chunk", type=int, default=1000, help="samples per submit() call")
    parser.add_argument("--batch", type=int, default=1000, help="rows per baseline commit")
    parser.add_argument("--seed", type=int, default=1, help="seed of the sample values")
    parser.add_argument("--dir", type=Path, default=None, help="where the temporary files go")
    parser.add_argument("--smoke", action="store_true",
                        help="small sizes, a few seconds: checks the script still runs")
    args = parser.parse_args()
    if args.smoke:
        args.readings, args.runs = 20_000, 1
    return args


def main() -> None:
    args = parse_args()
    n = args.readings
    samples = station_samples(n, args.seed, STEP_S)
    chunks = [samples[i : i + args.chunk] for i in range(0, n, args.chunk)]
    sid = {channel: number for number, (channel, *_shape) in enumerate(CHANNELS, start=1)}
    rows = [(sid[s.channel], s.ts, s.value, 0) for s in samples]
    batches = [rows[i : i + args.batch] for i in range(0, n, args.batch)]
    del rows
    # The prebuilt samples and rows belong to the harness, not to the code measured: keep
    # the cyclic garbage collector from walking them again and again during the timings.
    gc.collect()
    gc.freeze()

    print(
        f"ingest: {n:,} readings of one station ({len(CHANNELS)} channels, one timestamp "
        f"every {STEP_S} s), {args.runs} runs of each, alternating, fresh files each run"
    )
    print(f"machine: {machine()}")
    print(
        f"baseline: stdlib sqlite3 executemany, {args.batch:,} rows per commit, WAL + "
        "synchronous=NORMAL, foreign keys OFF (stdlib default)"
    )
    print(
        f"pipeline: IngestPipeline.submit() in chunks of {args.chunk:,} samples, then "
        "flush(), timed until durable; WAL + synchronous=NORMAL, foreign keys ON"
    )
    print("  (foreign keys ON in the pipeline and OFF in the baseline favours the baseline)")

    baseline_rates: list[float] = []
    pipeline_rates: list[float] = []
    summaries: set[tuple[int, int, int, float, int]] = set()
    with tempfile.TemporaryDirectory(prefix="labhub-bench-ingest-", dir=args.dir) as tmp:
        for run in range(1, args.runs + 1):
            path = Path(tmp) / f"baseline-{run}.sqlite"
            elapsed = run_baseline(path, batches)
            summaries.add(table_summary(path))
            remove_database(path)
            baseline_rates.append(n / elapsed)
            print(f"run {run} baseline: {elapsed:6.2f} s  {n / elapsed:11,.0f} readings/s")

            path = Path(tmp) / f"pipeline-{run}.sqlite"
            elapsed, check = run_pipeline(path, chunks, n)
            summaries.add(table_summary(path))
            remove_database(path)
            pipeline_rates.append(n / elapsed)
            print(f"run {run} pipeline: {elapsed:6.2f} s  {n / elapsed:11,.0f} readings/s")
            print(f"  check: {check}")

    same = "yes" if len(summaries) == 1 else f"NO ({sorted(summaries)})"
    print(f"same rows stored by baseline and pipeline (count and sums): {same}")
    baseline = statistics.median(baseline_rates)
    pipeline = statistics.median(pipeline_rates)
    ratio = pipeline / baseline
    verdict = "target met" if ratio >= TARGET_RATIO else "target missed"
    print(f"baseline median: {baseline:11,.0f} readings/s")
    print(f"pipeline median: {pipeline:11,.0f} readings/s")
    print(f"target: pipeline at least {TARGET_RATIO:.2f} of baseline: {verdict}")
    print(f"ratio: {ratio:.2f}")


if __name__ == "__main__":
    main()
