"""Retention on every backend: raw readings are pruned only once rolled up (no dirty hour)
and, on a hub in a network, acknowledged by the central (its position in the readings'
journal, set in the membership table as a contact would); ``readings_keep_days = 0``
prunes nothing; a late reading into a pruned hour adds to what was pruned; and the API's
bucketed read answers the same before and after pruning, from the rollups."""

from __future__ import annotations

import random
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from fastapi.testclient import TestClient
from signed_in import as_admin
from sqlalchemy import Engine, text

from labhub.app import create_app
from labhub.jobs import readings as reading_jobs
from labhub.network import membership
from labhub.scheduler.jobs import JobContext
from labhub.settings import Settings
from labtext.times import format_time
from sensors import queries, rollups
from sensors.rollups import DAY, HOUR, JournalMark, prune_raw, roll_up
from sensors.samples import US_PER_S
from sensors.storage import ReadingStore

T0 = 1_767_225_600 * US_PER_S  # 2026-01-01T00:00:00Z
DAYS = 8
STEP = 120 * US_PER_S  # a reading every two minutes


def _station(engine: Engine) -> tuple[int, int]:
    """Two channels of a reading a minute over DAYS days, written a batch per 3 hours (so
    one journal span per channel and 3 hours), rolled up."""
    store = ReadingStore(engine)
    ids = tuple(store.ensure_series(device="st", channel=c, quantity="temperature",
                                    unit="degC", site=None).id for c in ("t", "h"))
    rng = random.Random(5)
    writer = store.writer()
    try:
        for lo in range(T0, T0 + DAYS * DAY, 3 * HOUR):
            writer.write([[(sid, ts, round(rng.uniform(0, 30), 2), 0)
                           for ts in range(lo, lo + 3 * HOUR, STEP) for sid in ids]])
    finally:
        writer.close()
    roll_up(engine=engine)
    return ids  # type: ignore[return-value]


def _times(engine: Engine, sid: int) -> list[int]:
    with engine.connect() as conn:
        return [int(t) for t in conn.execute(text(
            "SELECT ts FROM readings WHERE series_id = :s ORDER BY ts"), {"s": sid}).scalars()]


def _hours(engine: Engine, sid: int) -> list[tuple[int, rollups.Aggregate]]:
    with engine.connect() as conn:
        return rollups.rollups(conn=conn, series_id=sid, level="hour")


def _buckets(engine: Engine, sid: int, start: int, end: int, count: int) -> list[Any]:
    with engine.connect() as conn:
        return queries.downsample(conn=conn, series_id=sid, buckets=count, start=start, end=end)


def _span_seq(engine: Engine, sid: int, ts: int) -> int:
    with engine.connect() as conn:
        return int(conn.execute(text(
            "SELECT seq FROM reading_spans WHERE series_id = :s AND ts_min <= :t "
            "AND ts_max >= :t ORDER BY seq LIMIT 1"), {"s": sid, "t": ts}).scalar_one())


def _join(engine: Engine, acknowledged: list[int] | None) -> None:
    with engine.begin() as conn:
        membership.store_joined(conn, central_url="https://central.example", hub_id="h-1",
                                credential="lhh_test", site="LAB-A", joined_at=T0)
        if acknowledged is not None:
            membership.record_acknowledged(conn, {"readings": acknowledged})


def test_not_in_a_network_prunes_rolled_up_clean_hours_only(engine: Engine) -> None:
    t, h = _station(engine)
    hours_before = _hours(engine, t)
    buckets_before = _buckets(engine, t, T0, T0 + DAYS * DAY, DAYS * 4)
    # A late reading into day 2, not rolled up yet: that hour is dirty, so t keeps its
    # raw readings from there on.
    late = T0 + 2 * DAY + 5 * HOUR + 30 * US_PER_S
    ReadingStore(engine).writer().write([[(t, late, 12.5, 0)]])
    done = prune_raw(engine=engine, before=T0 + 5 * DAY + 20 * 60 * US_PER_S,
                     shared=reading_jobs.central_holds)
    assert done.finished and done.series == 2
    assert _times(engine, t)[0] == T0 + 2 * DAY + 5 * HOUR
    assert _times(engine, h)[0] == T0 + 5 * DAY
    assert done.readings == (2 * DAY + 5 * HOUR + 5 * DAY) // STEP
    # The next run, once it is rolled up, goes on to the boundary; nothing twice.
    roll_up(engine=engine)
    again = prune_raw(engine=engine, before=T0 + 5 * DAY, shared=lambda _: None)
    assert again.readings == 3 * DAY // STEP - 5 * HOUR // STEP + 1
    assert _times(engine, t)[0] == T0 + 5 * DAY
    hours_after = _hours(engine, h)
    assert hours_after == _hours(engine, h) and len(hours_after) == DAYS * 24
    # Rollups are kept: the hours of h are what they were; t's gained the late reading.
    changed = [(s, a) for (s, a), (_, b) in zip(_hours(engine, t), hours_before, strict=True)
               if a != b]
    assert [s for s, _ in changed] == [T0 + 2 * DAY + 5 * HOUR]
    assert changed[0][1][0] == hours_before[2 * 24 + 5][1][0] + 1
    # A late reading into a pruned hour adds to what was pruned of it.
    ReadingStore(engine).writer().write([[(h, T0 + DAY + 7 * US_PER_S, -40.0, 0)]])
    roll_up(engine=engine)
    first_day = dict(_hours(engine, h))[T0 + DAY]
    assert first_day[0] == HOUR // STEP + 1 and first_day[2] == -40.0
    with engine.connect() as conn:
        day = dict(rollups.rollups(conn=conn, series_id=h, level="day"))[T0 + DAY]
    assert day[0] == DAY // STEP + 1
    # Bucketed reads over the pruned range are served from the rollups, unchanged.
    after = _buckets(engine, t, T0, T0 + DAYS * DAY, DAYS * 4)
    assert [(b.start, b.min, b.max) for b in after if b.start != T0 + 2 * DAY]  == [
        (b.start, b.min, b.max) for b in buckets_before if b.start != T0 + 2 * DAY]
    assert sum(b.count for b in after) == sum(b.count for b in buckets_before) + 1
    # The journal's spans of pruned readings (rolled up, nobody to wait for) are gone.
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM reading_spans WHERE ts_max < :t"),
                            {"t": T0 + 5 * DAY}).scalar_one() <= 2  # the late ones' spans


def test_in_a_network_prunes_only_what_the_central_acknowledged(engine: Engine) -> None:
    t, h = _station(engine)
    count = DAYS * DAY // STEP
    before = T0 + 6 * DAY
    _join(engine, None)  # joined, nothing acknowledged yet: nothing goes
    done = prune_raw(engine=engine, before=before, shared=reading_jobs.central_holds)
    assert done.readings == 0 and len(_times(engine, t)) == count
    # The central holds every span before the one of day 3, 03:00-06:00.
    seq = _span_seq(engine, t, T0 + 3 * DAY + 3 * HOUR)
    _join(engine, [seq])
    prune_raw(engine=engine, before=before, shared=reading_jobs.central_holds)
    assert _times(engine, t)[0] == T0 + 3 * DAY + 3 * HOUR
    assert _times(engine, h)[0] == T0 + 3 * DAY + 3 * HOUR  # same batch, same span seq
    # ... and of that span's readings, those up to 04:10 (a large span sent in parts).
    _join(engine, [seq, T0 + 3 * DAY + 4 * HOUR + 10 * 60 * US_PER_S])
    prune_raw(engine=engine, before=before, shared=reading_jobs.central_holds)
    assert _times(engine, t)[0] == T0 + 3 * DAY + 4 * HOUR
    # Everything acknowledged: pruned to the keeping boundary, no further.
    with engine.connect() as conn:
        last = int(conn.execute(text("SELECT max(seq) FROM reading_spans")).scalar_one())
    _join(engine, [last + 1])
    prune_raw(engine=engine, before=before, shared=reading_jobs.central_holds)
    assert _times(engine, t)[0] == before and _times(engine, h)[0] == before


def test_a_position_that_went_back_stops_the_pruning(engine: Engine) -> None:
    t, _ = _station(engine)
    marks = iter([JournalMark(10_000), JournalMark(10_000), JournalMark(2)])
    done = prune_raw(engine=engine, before=T0 + 6 * DAY, shared=lambda _: next(marks),
                     hours_per_chunk=3)
    assert done.readings == 3 * HOUR // STEP  # the first chunk of the first series only
    assert _times(engine, t)[0] == T0 + 3 * HOUR


def _ctx(engine: Engine, **settings: Any) -> JobContext:
    hub = SimpleNamespace(engine=engine, settings=Settings(**settings))
    return JobContext(hub=hub, job_id="readings-prune")  # type: ignore[arg-type]


def test_the_jobs_keep_everything_at_zero_days_and_prune_old_readings_otherwise(
        engine: Engine, tmp_path: Path) -> None:
    t, _ = _station(engine)
    count = DAYS * DAY // STEP
    ctx = _ctx(engine, data_dir=tmp_path, readings_keep_days=0)
    assert "keeping every raw reading" in reading_jobs.prune(ctx)
    assert len(_times(engine, t)) == count
    ReadingStore(engine).writer().write([[(t, T0 + 40 * US_PER_S, 1.0, 0)]])
    assert "rolled up 1 hours" in reading_jobs.rollups(ctx)
    assert reading_jobs.rollups(ctx) == "rollups up to date: nothing new"
    ctx = _ctx(engine, data_dir=tmp_path, readings_keep_days=1)  # the readings are of 2026
    assert "pruned" in reading_jobs.prune(ctx)
    assert _times(engine, t) == []
    specs = {s.id: s for s in reading_jobs.specs(ctx.settings)}
    assert set(specs) == {"rollups", "readings-prune"}
    assert specs["readings-prune"].misfire_grace_s >= 3 * 3600
    assert all(s.coalesce for s in specs.values())


def test_the_api_answers_the_same_before_and_after_pruning(
        engine: Engine, database_url: str, tmp_path: Path) -> None:
    _station(engine)
    settings = Settings(data_dir=tmp_path / "data", database_url=database_url,
                        jobs_enabled=False)
    asked = [{"device": "st", "channel": "t", "buckets": str(count),
              "start": format_time(T0), "end": format_time(T0 + DAYS * DAY)}
             for count in (8, 64, 192)]
    with as_admin(TestClient(create_app(settings))) as client:
        before = [client.get("/api/v1/readings", params=p) for p in asked]
        assert all(r.status_code == 200 for r in before), before[0].text
        done = prune_raw(engine=engine, before=T0 + 6 * DAY, shared=lambda _: None)
        assert done.readings == 2 * 6 * DAY // STEP
        after = [client.get("/api/v1/readings", params=p) for p in asked]
    for a, b in zip(after, before, strict=True):
        assert a.status_code == 200
        assert a.json() == b.json()
        assert sum(x["count"] for x in a.json()["buckets"]) == DAYS * DAY // STEP
