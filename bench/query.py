"""Query benchmark: charts, latest values and CSV export on a year of readings.

Builds a SQLite database of 10,521,800 readings: one station with 20 channels read once a
minute for a whole year (20 x 525,600) plus 980 small series of 10 readings each (other
kits), 1,000 series in all. The database is created by LabHub's migrations and then
bulk-loaded with the standard library's ``sqlite3`` ``executemany`` (much faster than the
ingest pipeline, and the stored rows are the same); ``--reuse`` keeps it for the next run.
Then it times, each call repeated (20 times by default, after one untimed warm-up call):

1. ``downsample`` of one week of one channel (10,080 readings) into 500 buckets, at a
   random week each time (target: under 50 ms);
2. ``latest`` of all 1,000 series (target: under 20 ms);
3. CSV export, ``iter_csv`` over ``iter_wide`` into a sink that only counts characters:
   one channel for the whole year (525,600 rows; target: 500,000 rows/s or more), and the
   station's 20 channels over a random 30 days (43,200 rows of 20 values; the same target,
   read as readings/s).

Each measured call alternates with a baseline doing the same job naively with plain
``sqlite3`` in the same run: fetching the raw week instead of downsampling it; one
``ORDER BY ts DESC LIMIT 1`` probe per series instead of ``latest``; fetching the rows and
writing ``(ISO time, value...)`` with ``csv.writer`` into ``io.StringIO`` instead of the
export.

Reading the output: each measurement prints the median and the p95 (nearest rank) of its
repetitions, then ``target met`` or ``target missed`` with the median as a fraction of the
target (below 1.00 is better for times, above 1.00 for rates), and the indented baseline
line ends with the speed ratio: baseline median time over measured median time, so above
1.00 means faster than the naive way. The machine is shared and noisy: compare the ratios,
not absolute times, across machines and days. ``--explain`` also prints SQLite's query plan
for every statement the measured calls ran.

Run: ``python bench/query.py``; ``--smoke`` runs it at a small size in a few seconds
(``make test`` does), which checks that it works and measures nothing worth reading.
"""

from __future__ import annotations

import argparse
import csv
import gc
import importlib.util
import io
import math
import random
import re
import sqlite3
import statistics
import sys
import tempfile
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from itertools import repeat
from pathlib import Path
from typing import Any

if importlib.util.find_spec("sensors") is None:  # run from a checkout without installing
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _common import STATION_CHANNELS as CHANNELS
from _common import Timings, alternate, machine, ms, p95, timed, verdict
from sqlalchemy import Connection

from labhub.db import make_engine, upgrade
from sensors.export import CsvOptions, ExportColumn, iter_csv
from sensors.quantities import QUANTITIES, resolve_channel
from sensors.queries import downsample, iter_wide, latest
from sensors.samples import US_PER_S, to_us

MINUTE_US = 60 * US_PER_S
WEEK_MINUTES = 7 * 1440
MONTH_MINUTES = 30 * 1440
YEAR_START = datetime(2025, 1, 1, tzinfo=UTC)
STATION = "station-bench"
BUCKETS = 500
TARGET_DOWNSAMPLE_MS = 50.0  # from the issue: a week of one channel as a 500-point chart
TARGET_LATEST_MS = 20.0  # from the issue: latest value of 1,000 series
TARGET_EXPORT_PER_S = 500_000.0  # from the issue: CSV export rows per second
LOAD_CHUNK_ROWS = 100_000  # rows per executemany while building: bounded memory

# The station's channels: (name as the kit prints it, centre value, daily swing, noise).
# --- building the data set ----------------------------------------------------------------


def series_rows(args: argparse.Namespace) -> list[tuple[Any, ...]]:
    """Series rows ``(id, device, channel, quantity, unit, site, created_at)``, ids from 1."""
    created = to_us(YEAR_START)
    rows: list[tuple[Any, ...]] = []
    for number in range(args.big_series):
        channel = CHANNELS[number % len(CHANNELS)][0]
        if number >= len(CHANNELS):
            channel = f"{channel}_{number // len(CHANNELS)}"
        spec = resolve_channel(channel)
        rows.append((len(rows) + 1, STATION, channel, spec.quantity, spec.unit, "bench", created))
    for number in range(args.small_series):
        spec = resolve_channel("temp")
        rows.append(
            (len(rows) + 1, f"kit-{number:04d}", "temp", spec.quantity, spec.unit, "bench", created)
        )
    return rows


def big_series_values(number: int, minutes: int, rng: random.Random) -> list[float]:
    _name, centre, swing, noise = CHANNELS[number % len(CHANNELS)]
    gauss = rng.gauss
    sin = math.sin
    day = 2 * math.pi / 1440
    return [round(centre + swing * sin(k * day) + gauss(0.0, noise), 2) for k in range(minutes)]


def build(path: Path, args: argparse.Namespace) -> None:
    """Create the database at ``path``: LabHub's migrations, then a stdlib bulk load."""
    building = path.with_name(path.name + ".building")
    for suffix in ("", "-wal", "-shm"):
        Path(f"{building}{suffix}").unlink(missing_ok=True)
    engine = make_engine(f"sqlite:///{building}")
    upgrade(engine)
    engine.dispose()
    rng = random.Random(args.seed)
    start = to_us(YEAR_START)
    conn = sqlite3.connect(building)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=OFF")  # building only: the file is thrown away on a crash
    conn.executemany(
        "INSERT INTO series (id, device, channel, quantity, unit, site, created_at) "
        "VALUES (?, ?, ?, ?, ?, ?, ?)",
        series_rows(args),
    )
    sql = "INSERT INTO readings (series_id, ts, value, flags) VALUES (?, ?, ?, ?)"
    for number in range(args.big_series):
        values = big_series_values(number, args.minutes, rng)
        times = range(start, start + args.minutes * MINUTE_US, MINUTE_US)
        rows = list(zip(repeat(number + 1), times, values, repeat(0), strict=False))
        for i in range(0, len(rows), LOAD_CHUNK_ROWS):
            conn.executemany(sql, rows[i : i + LOAD_CHUNK_ROWS])
        conn.commit()
    # The other kits: a few readings each, at random minutes of the year's last day.
    last_day = start + (args.minutes - 1440) * MINUTE_US
    small: list[tuple[int, int, float, int]] = []
    for sid in range(args.big_series + 1, args.big_series + args.small_series + 1):
        minutes = sorted(rng.sample(range(1440), args.small_readings))
        small.extend(
            (sid, last_day + m * MINUTE_US, round(rng.uniform(15, 25), 2), 0) for m in minutes
        )
    conn.executemany(sql, small)
    conn.commit()
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    building.rename(path)


def database_path(args: argparse.Namespace, directory: Path) -> Path:
    key = f"{args.big_series}x{args.minutes}-{args.small_series}x{args.small_readings}"
    return directory / f"labhub-bench-query-{key}-seed{args.seed}.sqlite"


# --- timing -------------------------------------------------------------------------------


# --- baselines ----------------------------------------------------------------------------

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def iso(ts: int) -> str:
    return (_EPOCH + timedelta(microseconds=ts)).isoformat()


def naive_fetch(raw: sqlite3.Connection, sid: int, start: int, end: int) -> list[Any]:
    return raw.execute(
        "SELECT ts, value FROM readings WHERE series_id=? AND ts BETWEEN ? AND ?",
        (sid, start, end - 1),
    ).fetchall()


def naive_latest(raw: sqlite3.Connection, ids: list[int]) -> dict[int, tuple[int, float, int]]:
    found: dict[int, tuple[int, float, int]] = {}
    for sid in ids:
        row = raw.execute(
            "SELECT ts, value, flags FROM readings WHERE series_id=? ORDER BY ts DESC LIMIT 1",
            (sid,),
        ).fetchone()
        if row is not None:
            found[sid] = row
    return found


def naive_csv(raw: sqlite3.Connection, ids: list[int], start: int, end: int) -> int:
    """Characters of a naive CSV of the series over [start, end): fetch, pivot, csv.writer."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["time", *(str(sid) for sid in ids)])
    if len(ids) == 1:
        cursor = raw.execute(
            "SELECT ts, value FROM readings WHERE series_id=? AND ts >= ? AND ts < ? ORDER BY ts",
            (ids[0], start, end),
        )
        for ts, value in cursor:
            writer.writerow((iso(ts), value))
        return len(out.getvalue())
    position = {sid: i for i, sid in enumerate(ids)}
    marks = ", ".join("?" * len(ids))
    cursor = raw.execute(
        f"SELECT ts, series_id, value FROM readings WHERE series_id IN ({marks}) "
        "AND ts >= ? AND ts < ? ORDER BY ts, series_id",
        (*ids, start, end),
    )
    current = None
    values: list[Any] = []
    for ts, sid, value in cursor:
        if ts != current:
            if current is not None:
                writer.writerow((iso(current), *values))
            current = ts
            values = [""] * len(ids)
        values[position[sid]] = value
    if current is not None:
        writer.writerow((iso(current), *values))
    return len(out.getvalue())


# --- the measured calls -------------------------------------------------------------------


def export_columns(conn: Connection, ids: list[int]) -> list[ExportColumn]:
    columns = []
    for sid in ids:
        device, channel, quantity, unit = conn.exec_driver_sql(
            "SELECT device, channel, quantity, unit FROM series WHERE id = ?", (sid,)
        ).one()
        label = channel if quantity is None else QUANTITIES[quantity].label("en")
        columns.append(ExportColumn(device, channel, quantity, unit, label))
    return columns


def export_chars(conn: Connection, columns: list[ExportColumn], ids: list[int], span: Any) -> int:
    """Characters of LabHub's CSV export of ``ids`` over ``span`` = (start, end)."""
    rows = iter_wide(conn=conn, series_ids=ids, start=span[0], end=span[1])
    return sum(map(len, iter_csv(columns, rows, CsvOptions())))


def export_lines(conn: Connection, columns: list[ExportColumn], ids: list[int], span: Any) -> int:
    rows = iter_wide(conn=conn, series_ids=ids, start=span[0], end=span[1])
    return sum(chunk.count("\n") for chunk in iter_csv(columns, rows, CsvOptions()))


def explain(conn: Connection, label: str, call: Callable[[], object]) -> None:
    """Run ``call`` once and print SQLite's plan of every readings statement it ran."""
    driver: Any = conn.connection.driver_connection
    statements: list[str] = []
    driver.set_trace_callback(statements.append)
    try:
        call()
    finally:
        driver.set_trace_callback(None)
    # One entry per statement shape: numbers as "N", lists of numbers as "N, ...".
    shapes: dict[str, tuple[str, int]] = {}
    for sql in statements:
        if "readings" not in sql or not sql.lstrip().upper().startswith("SELECT"):
            continue
        shape = re.sub(r"N(, N)+", "N, ...", re.sub(r"\b\d+\b", "N", " ".join(sql.split())))
        first, times = shapes.get(shape, (sql, 0))
        shapes[shape] = (first, times + 1)
    print(f"  plan of {label}:")
    for shape, (sql, times) in shapes.items():
        print(f"    {shape}  [executed {times}x]")
        for row in driver.execute(f"EXPLAIN QUERY PLAN {sql}"):
            print(f"      {row[3]}")


# --- main ---------------------------------------------------------------------------------


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=int, default=525_600, help="readings per big series")
    parser.add_argument("--big-series", type=int, default=20, help="channels of the station")
    parser.add_argument("--small-series", type=int, default=980, help="small series (kits)")
    parser.add_argument("--small-readings", type=int, default=10, help="readings per kit")
    parser.add_argument("--repeat", type=int, default=20, help="repetitions of each timing")
    parser.add_argument("--seed", type=int, default=1, help="seed of values and random weeks")
    parser.add_argument(
        "--reuse",
        nargs="?",
        type=Path,
        const=Path(tempfile.gettempdir()) / "labhub-bench",
        default=None,
        metavar="DIR",
        help="keep the built database in DIR (default %(const)s), keyed by size, and use it "
        "again on the next run instead of building",
    )
    parser.add_argument("--dir", type=Path, default=None, help="temporary directory to build in")
    parser.add_argument("--explain", action="store_true", help="print the query plans")
    parser.add_argument("--smoke", action="store_true",
                        help="small sizes, a few seconds: checks the script still runs")
    args = parser.parse_args()
    if args.smoke:
        args.minutes, args.big_series, args.small_series, args.repeat = 43_200, 3, 50, 2
    if args.minutes < MONTH_MINUTES or args.big_series < 1 or args.repeat < 1:
        parser.error(f"--minutes must be at least {MONTH_MINUTES}, the others at least 1")
    if not 1 <= args.small_readings <= 1440:
        parser.error("--small-readings must be between 1 and 1440")
    return args


def main() -> None:
    args = parse_args()
    with tempfile.TemporaryDirectory(prefix="labhub-bench-query-", dir=args.dir) as tmp:
        directory = Path(tmp) if args.reuse is None else args.reuse
        directory.mkdir(parents=True, exist_ok=True)
        run(args, database_path(args, directory))


def run(args: argparse.Namespace, path: Path) -> None:
    total = args.big_series * args.minutes + args.small_series * args.small_readings
    n_series = args.big_series + args.small_series
    print(
        f"query: {total:,} readings in {n_series:,} series ({args.big_series} channels x "
        f"{args.minutes:,} one-minute readings + {args.small_series} kits x "
        f"{args.small_readings})"
    )
    print(f"machine: {machine()}")
    if path.exists():
        print(f"database: {path} (reused, built by an earlier run)")
    else:
        seconds = timed(lambda: build(path, args))
        print(
            f"database: {path} built in {seconds:.1f} s (LabHub migrations, then stdlib "
            f"sqlite3 executemany bulk load), {path.stat().st_size / 2**20:,.0f} MiB"
        )
    print(
        f"timings: median and p95 of {args.repeat} repetitions after one untimed warm-up; "
        "each alternates with its baseline (plain stdlib sqlite3)"
    )

    rng = random.Random(args.seed + 1)
    start = to_us(YEAR_START)
    end = start + args.minutes * MINUTE_US
    big_ids = list(range(1, args.big_series + 1))
    all_ids = list(range(1, n_series + 1))
    engine = make_engine(f"sqlite:///{path}")
    raw = sqlite3.connect(path)
    gc.collect()
    with engine.connect() as conn:
        # 1. One week of one channel as a 500-point chart.
        weeks = [
            (rng.choice(big_ids), start + rng.randrange(args.minutes - WEEK_MINUTES) * MINUTE_US)
            for _ in range(args.repeat)
        ]

        def chart(i: int) -> Callable[[], object]:
            sid, t0 = weeks[i]
            return lambda: downsample(
                conn=conn,
                series_id=sid,
                buckets=BUCKETS,
                start=t0,
                end=t0 + WEEK_MINUTES * MINUTE_US,
            )

        def chart_baseline(i: int) -> Callable[[], object]:
            sid, t0 = weeks[i]
            return lambda: naive_fetch(raw, sid, t0, t0 + WEEK_MINUTES * MINUTE_US)

        sid, t0 = weeks[0]
        buckets = downsample(
            conn=conn, series_id=sid, buckets=BUCKETS, start=t0, end=t0 + WEEK_MINUTES * MINUTE_US
        )
        fetched = naive_fetch(raw, sid, t0, t0 + WEEK_MINUTES * MINUTE_US)
        counted = sum(b.count for b in buckets)
        check = "ok" if counted == len(fetched) == WEEK_MINUTES else "MISMATCH"
        t = alternate(args.repeat, chart, chart_baseline)
        median = statistics.median(t.measured)
        print(
            f"downsample week/{BUCKETS}: median {ms(median)}, p95 {ms(p95(t.measured))} "
            f"(target {TARGET_DOWNSAMPLE_MS:.0f} ms: "
            f"{verdict(median * 1000, TARGET_DOWNSAMPLE_MS, lower_is_better=True)})"
        )
        print(
            f"  baseline fetchall of the same week ({len(fetched):,} rows): median "
            f"{ms(statistics.median(t.baseline))}, p95 {ms(p95(t.baseline))}; "
            f"speed ratio {t.speed_ratio():.2f}"
        )
        print(f"  check: {len(buckets)} buckets holding {counted:,} readings: {check}")

        # 2. The latest value of every series.
        found = latest(conn=conn, series_ids=all_ids)
        probed = naive_latest(raw, all_ids)
        same = {k: (v.ts, v.value, v.flags) for k, v in found.items()} == probed
        t = alternate(
            args.repeat,
            lambda _i: lambda: latest(conn=conn, series_ids=all_ids),
            lambda _i: lambda: naive_latest(raw, all_ids),
        )
        median = statistics.median(t.measured)
        print(
            f"latest of {n_series:,} series: median {ms(median)}, p95 {ms(p95(t.measured))} "
            f"(target {TARGET_LATEST_MS:.0f} ms: "
            f"{verdict(median * 1000, TARGET_LATEST_MS, lower_is_better=True)})"
        )
        print(
            f"  baseline {n_series:,} probes 'ORDER BY ts DESC LIMIT 1': median "
            f"{ms(statistics.median(t.baseline))}, p95 {ms(p95(t.baseline))}; "
            f"speed ratio {t.speed_ratio():.2f}"
        )
        print(
            f"  check: {len(found):,} latest values, "
            f"{'same as the probes: ok' if same and len(found) == n_series else 'MISMATCH'}"
        )

        # 3a. CSV export of one channel for the whole year.
        one = big_ids[:1]
        columns = export_columns(conn, one)
        lines = export_lines(conn, columns, one, (start, end))
        chars = export_chars(conn, columns, one, (start, end))
        t = alternate(
            args.repeat,
            lambda _i: lambda: export_chars(conn, columns, one, (start, end)),
            lambda _i: lambda: naive_csv(raw, one, start, end),
        )
        report_export(
            f"export 1 series x {args.minutes:,} min ({args.minutes:,} rows, "
            f"{chars / 2**20:.1f} MiB of CSV)",
            t,
            rows=args.minutes,
            readings=args.minutes,
            per_readings=False,
        )
        check = "ok" if lines == args.minutes + 1 else "MISMATCH"
        print(f"  check: {lines:,} lines (header + rows): {check}")

        # 3b. CSV export of the station's channels over a random 30 days.
        months = [
            start + rng.randrange(args.minutes - MONTH_MINUTES + 1) * MINUTE_US
            for _ in range(args.repeat)
        ]
        span = MONTH_MINUTES * MINUTE_US
        columns = export_columns(conn, big_ids)
        lines = export_lines(conn, columns, big_ids, (months[0], months[0] + span))
        t = alternate(
            args.repeat,
            lambda i: lambda: export_chars(conn, columns, big_ids, (months[i], months[i] + span)),
            lambda i: lambda: naive_csv(raw, big_ids, months[i], months[i] + span),
        )
        report_export(
            f"export {len(big_ids)} series x 30 days ({MONTH_MINUTES:,} rows, "
            f"{MONTH_MINUTES * len(big_ids):,} readings)",
            t,
            rows=MONTH_MINUTES,
            readings=MONTH_MINUTES * len(big_ids),
            per_readings=True,
        )
        check = "ok" if lines == MONTH_MINUTES + 1 else "MISMATCH"
        print(f"  check: {lines:,} lines (header + rows): {check}")

        if args.explain:
            print("query plans (EXPLAIN QUERY PLAN of each statement the measured calls ran):")
            sid, t0 = weeks[0]
            explain(
                conn,
                "downsample",
                lambda: downsample(
                    conn=conn,
                    series_id=sid,
                    buckets=BUCKETS,
                    start=t0,
                    end=t0 + WEEK_MINUTES * MINUTE_US,
                ),
            )
            explain(conn, "latest", lambda: latest(conn=conn, series_ids=all_ids))
            explain(
                conn,
                "export of 1 series",
                lambda: export_chars(conn, columns[:1], one, (start, end)),
            )
            explain(
                conn,
                f"export of {len(big_ids)} series",
                lambda: export_chars(conn, columns, big_ids, (months[0], months[0] + span)),
            )
    raw.close()
    engine.dispose()


def report_export(label: str, t: Timings, *, rows: int, readings: int, per_readings: bool) -> None:
    median = statistics.median(t.measured)
    rate = rows / median
    reading_rate = readings / median
    target_rate = reading_rate if per_readings else rate
    unit = "readings/s" if per_readings else "rows/s"
    also = f", {reading_rate:,.0f} readings/s" if per_readings else ""
    print(
        f"{label}: median {median:.3f} s = {rate:,.0f} rows/s{also}, p95 {p95(t.measured):.3f} s "
        f"(target {TARGET_EXPORT_PER_S:,.0f} {unit}: "
        f"{verdict(target_rate, TARGET_EXPORT_PER_S, lower_is_better=False)})"
    )
    base = statistics.median(t.baseline)
    print(
        f"  baseline stdlib fetch + csv.writer into io.StringIO: median {base:.3f} s = "
        f"{rows / base:,.0f} rows/s, p95 {p95(t.baseline):.3f} s; "
        f"speed ratio {t.speed_ratio():.2f}"
    )


if __name__ == "__main__":
    main()
