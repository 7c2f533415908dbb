"""A part of ``bench/sync.py`` (see its text): the central's ingest of hub batches, against
PostgreSQL's own ``COPY`` of the same rows; and what the hub's readings journal costs.

**Central ingest.** A lab's readings (the week of ``bench/_sync_week.py``: 1,028,160; 6,120
with ``--smoke``) are encoded into readings sections of ``network_batch_bytes`` as a hub
sends them. In a fresh PostgreSQL database (migrated: readings partitioned by month) each
section is applied by the readings stream's ``apply``, one transaction a section: the
codec's decode, the lab's series, the ``unnest`` insert ``ON CONFLICT DO NOTHING`` and the
daily counts. The baseline, in the same run and database: the same rows, already written
out as COPY text before the clock starts, copied into a plain (unpartitioned) table with
the same primary key and the same foreign key to ``series`` as ``readings``, one COPY and
commit per section. A second COPY into a bare table (primary key only) shows what the
foreign key's per-row check costs: it, not our path, bounds the central's rate. The
printed ratio is the baseline's time over the central's (target at least 0.5). The
baseline's own client CPU is printed too: it must be a small part of its time (the server,
not the Python feeding it, sets the pace).

**The journal's cost on the hub.** ``BatchWriter`` with and without the journal, alternating,
the same 1,000-row batches of a 20-channel station into fresh databases, on SQLite and on
PostgreSQL: the rate of each and the journal's cost in percent.
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
import uuid
from pathlib import Path

from _sync_week import CHANNELS, week_rows
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from labhub.db import make_engine, upgrade
from labhub.network.codec import SeriesReadings, encode
from labhub.network.protocol import CODEC_READINGS, Section
from labhub.network.streams import FromHub
from labhub.network.up_readings import ReadingsStream
from labhub.settings import Settings
from sensors.storage import ReadingStore

POSTGRES_URL = os.environ.get("LABHUB_BENCH_POSTGRES_URL",
                              "postgresql://postgres@127.0.0.1:5432/postgres")
TARGET_RATIO = 0.5
SITE = "LAB-BENCH"


class _Database:
    """A fresh PostgreSQL database for one run, dropped at the end."""

    def __init__(self) -> None:
        self.admin = make_url(POSTGRES_URL).set(drivername="postgresql+psycopg")
        self.name = f"labhub_bench_{uuid.uuid4().hex[:10]}"
        self.url = self.admin.set(database=self.name).render_as_string(hide_password=False)

    def __enter__(self) -> str:
        engine = create_engine(self.admin, isolation_level="AUTOCOMMIT")
        with engine.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{self.name}"'))
        engine.dispose()
        return self.url

    def __exit__(self, *_: object) -> None:
        engine = create_engine(self.admin, isolation_level="AUTOCOMMIT")
        with engine.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)'))
        engine.dispose()


def _sections(rows: list[tuple[str, str, int, float]], per: int) -> list[list[SeriesReadings]]:
    """The rows cut into sections of ``per`` readings, per series inside each."""
    units = {(c[0], c[1]): (c[2], c[3]) for c in CHANNELS}
    out = []
    for start in range(0, len(rows), per):
        by: dict[tuple[str, str], list[tuple[int, float]]] = {}
        for device, channel, ts, value in rows[start:start + per]:
            by.setdefault((device, channel), []).append((ts, value))
        out.append([SeriesReadings(d, c, units[(d, c)][0], units[(d, c)][1],
                                   [t for t, _ in got], [v for _, v in got], [0] * len(got))
                    for (d, c), got in by.items()])
    return out


def central_ingest(smoke: bool) -> list[str]:
    rows = week_rows(3_600 if smoke else 7 * 86_400)
    budget = Settings().network_batch_bytes
    sections = _sections(rows, budget // 3)  # ~2.6 bytes a reading: about one batch each
    datas = [encode(s) for s in sections]
    hub = FromHub(hub_id=str(uuid.uuid4()), site=SITE, clock_offset_us=0,
                  clock_suspect=False, received_at_us=0)
    stream = ReadingsStream()
    lines = [f"[ingest] {len(rows):,} readings in {len(datas)} sections "
             f"(~{budget // 3:,} readings, {statistics.mean(len(d) for d in datas):,.0f} bytes "
             "each)"]
    with _Database() as url:
        engine = make_engine(url)
        upgrade(engine)
        with engine.begin() as conn:
            for name, key in (("copy_baseline", ", FOREIGN KEY (series_id) REFERENCES "
                               "series (id) ON DELETE CASCADE"), ("copy_bare", "")):
                conn.execute(text(f"CREATE TABLE {name} (series_id integer NOT NULL, "
                                  "ts bigint NOT NULL, value float8 NOT NULL, flags smallint "
                                  f"NOT NULL, PRIMARY KEY (series_id, ts){key})"))
        # The same rows as COPY text, made before the clock starts; series ids as the
        # central gives them (the lab's series are made by the first apply; ids 1..8).
        ids = {(c[0], c[1]): i + 1 for i, c in enumerate(CHANNELS)}
        texts = []
        for part in sections:
            texts.append("".join(f"{ids[(s.device, s.channel)]}\t{t}\t{v!r}\t0\n"
                                 for s in part for t, v in zip(s.ts, s.values, strict=True)
                                 ).encode())
        start = time.perf_counter()
        cpu = time.process_time()
        new = 0
        for data, part in zip(datas, sections, strict=True):
            count = sum(len(s.ts) for s in part)
            section = Section("readings", CODEC_READINGS, [], [1], count, data)
            with engine.begin() as conn:
                new += stream.apply(conn, hub, section)
        central = time.perf_counter() - start
        central_cpu = time.process_time() - cpu
        with engine.connect() as conn:
            got = dict(conn.execute(text("SELECT device || '/' || channel, id FROM series")
                                    ).all())
        assert all(got[f"{SITE}/{d}/{c}"] == i for (d, c), i in ids.items()), got
        raw = engine.raw_connection()
        timings: dict[str, tuple[float, float]] = {}
        try:
            dbapi = raw.driver_connection
            for name in ("copy_baseline", "copy_bare"):
                start = time.perf_counter()
                cpu = time.process_time()
                for piece in texts:
                    with dbapi.cursor() as cur, cur.copy(
                            f"COPY {name} (series_id, ts, value, flags) FROM STDIN") as copy:
                        copy.write(piece)
                    dbapi.commit()
                timings[name] = (time.perf_counter() - start, time.process_time() - cpu)
        finally:
            raw.close()
        baseline, baseline_cpu = timings["copy_baseline"]
        bare, _ = timings["copy_bare"]
        with engine.connect() as conn:
            same = conn.execute(text(
                "SELECT count(*) FROM (SELECT series_id, ts, value FROM readings "
                "EXCEPT SELECT series_id, ts, value FROM copy_baseline) d")).scalar_one()
        engine.dispose()
    if new != len(rows) or same:
        raise RuntimeError(f"the central stored {new} of {len(rows)} readings, {same} differ")
    ratio = baseline / central
    lines += [
        f"[ingest] central apply: {len(rows) / central:,.0f} readings/s ({central:.2f} s, "
        f"client CPU {central_cpu:.2f} s: decode and statements)",
        f"[ingest] COPY baseline (a plain table, the same primary and foreign keys): "
        f"{len(rows) / baseline:,.0f} readings/s ({baseline:.2f} s, client CPU "
        f"{baseline_cpu:.2f} s = {baseline_cpu / baseline:.0%} of it: the server sets its "
        "pace)",
        f"[ingest] COPY into a bare table (primary key only, no foreign key): "
        f"{len(rows) / bare:,.0f} readings/s ({bare:.2f} s; central/bare ratio "
        f"{bare / central:.2f}: what the foreign key's per-row check costs)",
        f"[ingest] ratio (baseline time / central time): {ratio:.2f} (target >= "
        f"{TARGET_RATIO})",
    ]
    return lines


def _journal_rows(count: int) -> list[list[tuple[int, int, float, int]]]:
    batches = []
    rows: list[tuple[int, int, float, int]] = []
    for i in range(count):
        rows.append((1 + i % 20, 1_764_547_200_000_000 + (i // 20) * 1_000_000,
                     20.0 + (i % 97) / 10, 0))
        if len(rows) == 1000:
            batches.append(rows)
            rows = []
    return batches + ([rows] if rows else [])


def _write(url: str, batches: list[list[tuple[int, int, float, int]]], journal: bool) -> float:
    engine = make_engine(url)
    store = ReadingStore(engine)
    for ch in range(20):
        store.ensure_series(device="st", channel=f"c{ch}", quantity=None, unit=None, site=None)
    writer = store.writer(journal=journal)
    try:
        writer.write(batches[:1])  # the month's partition, outside the timing
        start = time.perf_counter()
        for batch in batches[1:]:
            writer.write([batch])
        elapsed = time.perf_counter() - start
    finally:
        writer.close()
    engine.dispose()
    return (sum(len(b) for b in batches[1:])) / elapsed


def journal_cost(smoke: bool, runs: int = 5) -> list[str]:
    batches = _journal_rows(20_000 if smoke else 300_000)
    runs = 1 if smoke else runs
    lines = []
    for kind in ("sqlite", "postgresql"):
        rates: dict[bool, list[float]] = {True: [], False: []}
        for _ in range(runs):
            for journal in (False, True):
                if kind == "sqlite":
                    with tempfile.TemporaryDirectory() as tmp:
                        url = f"sqlite:///{Path(tmp) / 'hub.db'}"
                        upgrade_engine = make_engine(url)
                        upgrade(upgrade_engine)
                        upgrade_engine.dispose()
                        rates[journal].append(_write(url, batches, journal))
                else:
                    with _Database() as url:
                        upgrade_engine = make_engine(url)
                        upgrade(upgrade_engine)
                        upgrade_engine.dispose()
                        rates[journal].append(_write(url, batches, journal))
        without, with_ = statistics.median(rates[False]), statistics.median(rates[True])
        lines.append(f"[journal] {kind}: {without:,.0f} rows/s without the journal, "
                     f"{with_:,.0f} with it: {1 - with_ / without:+.1%} cost (medians of "
                     f"{runs}, 1,000-row batches of 20 series)")
    return lines


def measure(smoke: bool) -> list[str]:
    """This part's lines for ``bench/sync.py``."""
    return central_ingest(smoke) + journal_cost(smoke)
