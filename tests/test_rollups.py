"""Rollups on every backend: after random readings, late ones included, every minute, hour
and day rolled up equals what Python computes from the raw readings; downsampling through
the rollups equals downsampling raw readings, with a dirty hour and a lagging job too."""

from __future__ import annotations

import random
from collections.abc import Callable

import pytest
from sqlalchemy import Engine, text

from sensors import queries, rollups
from sensors.rollups import DAY, HOUR, MINUTE, Aggregate, roll_up
from sensors.samples import US_PER_S
from sensors.storage import FLAG_CLOCK, FLAG_SUSPECT, ReadingStore

T0 = 1_767_225_600 * US_PER_S  # 2026-01-01T00:00:00Z
SPAN = 3 * DAY


def _series(engine: Engine, channel: str = "t") -> int:
    return ReadingStore(engine).ensure_series(device="st", channel=channel,
                                              quantity="temperature", unit="degC",
                                              site=None).id


def _write(engine: Engine, rows: list[tuple[int, int, float, int]], batch: int = 500) -> None:
    writer = ReadingStore(engine).writer()
    try:
        for i in range(0, len(rows), batch):
            writer.write([rows[i:i + batch]])
    finally:
        writer.close()


def _random_rows(rng: random.Random, sid: int, count: int, lo: int, hi: int,
                 taken: set[int]) -> list[tuple[int, int, float, int]]:
    """Readings at random times (whole seconds, a few exactly on an hour's edge), values
    with ties (whole numbers) and some flags."""
    rows = []
    while len(rows) < count:
        ts = rng.randrange(lo // US_PER_S, hi // US_PER_S) * US_PER_S
        if rng.random() < 0.02:
            ts = ts - ts % HOUR
        if ts in taken:
            continue
        taken.add(ts)
        value = float(rng.randint(-5, 30)) if rng.random() < 0.5 else rng.uniform(-5, 30)
        flags = rng.choice([0] * 8 + [FLAG_SUSPECT, FLAG_CLOCK, FLAG_SUSPECT | FLAG_CLOCK])
        rows.append((sid, ts, value, flags))
    rows.sort(key=lambda r: r[1])
    return rows


def _raw(engine: Engine, sid: int) -> list[tuple[int, float, int]]:
    with engine.connect() as conn:
        return [(int(t), float(v), int(f)) for t, v, f in conn.execute(text(
            "SELECT ts, value, flags FROM readings WHERE series_id = :s ORDER BY ts"),
            {"s": sid})]


def _expected(raw: list[tuple[int, float, int]], unit: int) -> dict[int, Aggregate]:
    out: dict[int, Aggregate] = {}
    for ts, value, flags in raw:
        one: Aggregate = (1, value, value, value, ts, value, ts, value,
                          int(bool(flags & FLAG_SUSPECT)), int(bool(flags & FLAG_CLOCK)))
        key = ts - ts % unit
        out[key] = rollups.merge(out.get(key), one)
    return out


def _assert_same(got: list[tuple[int, Aggregate]], want: dict[int, Aggregate]) -> None:
    assert [start for start, _ in got] == sorted(want)
    for start, agg in got:
        exp = want[start]
        assert agg[0] == exp[0] and agg[2:] == exp[2:], (start, agg, exp)
        assert agg[1] == pytest.approx(exp[1], rel=1e-9, abs=1e-9)


def _assert_rollups_match(engine: Engine, sid: int) -> None:
    raw = _raw(engine, sid)
    with engine.connect() as conn:
        for level, unit in (("minute", MINUTE), ("hour", HOUR), ("day", DAY)):
            _assert_same(rollups.rollups(conn=conn, series_id=sid, level=level),
                         _expected(raw, unit))


def _python_buckets(raw: list[tuple[int, float, int]], start: int, end: int,
                    buckets: int) -> list[tuple[int, int, float, float, float, int, int]]:
    width = -(-(end - start) // buckets)
    got: dict[int, list[tuple[int, float]]] = {}
    for ts, value, _ in raw:
        if start <= ts < end:
            got.setdefault((ts - start) // width, []).append((ts, value))
    return [(start + b * width, len(v), min(x for _, x in v), sum(x for _, x in v) / len(v),
             max(x for _, x in v), v[0][0], v[-1][0]) for b, v in sorted(got.items())]


def _assert_downsample_is_raw(engine: Engine, sid: int, rng: random.Random,
                              tries: int = 12) -> None:
    raw = _raw(engine, sid)
    cases = [(T0, T0 + SPAN, 72), (T0 - DAY, T0 + 4 * DAY, 5), (T0, T0 + SPAN, 1)]
    for _ in range(tries):
        start = T0 + rng.randrange(-3600, SPAN // US_PER_S // 2) * US_PER_S + rng.randrange(
            US_PER_S)
        end = start + rng.randrange(3600, SPAN // US_PER_S) * US_PER_S
        cases.append((start, end, rng.randint(1, max(1, (end - start) // HOUR))))
    with engine.connect() as conn:
        for start, end, count in cases:
            got = [(b.start, b.count, b.min, b.mean, b.max, b.first_ts, b.last_ts)
                   for b in queries.downsample(conn=conn, series_id=sid, buckets=count,
                                               start=start, end=end)]
            want = _python_buckets(raw, start, end, count)
            assert len(got) == len(want), (start, end, count)
            for g, w in zip(got, want, strict=True):
                assert g[:3] == w[:3] and g[4:] == w[4:], (start, end, count, g, w)
                assert g[3] == pytest.approx(w[3], rel=1e-9, abs=1e-9)


def _used_rollups(engine: Engine, sid: int) -> Callable[[], bool]:
    def check() -> bool:
        with engine.connect() as conn:
            return rollups.coverage(conn, sid) is not None
    return check


def test_rollups_equal_raw_aggregates_late_readings_included(engine: Engine) -> None:
    rng = random.Random(16)
    sid, other = _series(engine), _series(engine, "h")
    taken: set[int] = set()
    _write(engine, _random_rows(rng, sid, 3000, T0, T0 + SPAN, taken)
           + _random_rows(rng, other, 300, T0, T0 + SPAN, set()))
    done = roll_up(engine=engine)
    assert done.finished and done.spans > 0
    _assert_rollups_match(engine, sid)
    _assert_rollups_match(engine, other)
    # Late readings: old hours again (an SD card's log), and a new day.
    _write(engine, _random_rows(rng, sid, 200, T0, T0 + DAY, taken)
           + _random_rows(rng, sid, 100, T0 + SPAN, T0 + SPAN + DAY, taken), batch=37)
    assert roll_up(engine=engine, spans_per_pass=3).finished  # in small passes
    _assert_rollups_match(engine, sid)
    assert roll_up(engine=engine).spans == 0  # nothing new: nothing done


def test_downsample_through_rollups_equals_raw_with_a_dirty_hour(engine: Engine) -> None:
    rng = random.Random(1616)
    sid = _series(engine)
    taken: set[int] = set()
    _write(engine, _random_rows(rng, sid, 4000, T0, T0 + SPAN, taken))
    assert not _used_rollups(engine, sid)()  # not rolled up yet: raw readings
    _assert_downsample_is_raw(engine, sid, rng, tries=4)
    roll_up(engine=engine)
    assert _used_rollups(engine, sid)()
    _assert_downsample_is_raw(engine, sid, rng)
    # A late reading makes an old hour dirty until the next run: read raw meanwhile.
    late = T0 + 30 * HOUR + 17 * US_PER_S
    while late in taken:
        late += US_PER_S
    _write(engine, [(sid, late, 99.5, 0)])
    with engine.connect() as conn:
        cover = rollups.coverage(conn, sid)
    assert cover is not None and cover.dirty == [(T0 + 30 * HOUR, T0 + 31 * HOUR)]
    _assert_downsample_is_raw(engine, sid, rng)
    roll_up(engine=engine)
    _assert_downsample_is_raw(engine, sid, rng, tries=6)


def test_a_job_far_behind_takes_everything_after_it_as_dirty(
        engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    rng = random.Random(7)
    sid = _series(engine)
    taken: set[int] = set()
    _write(engine, _random_rows(rng, sid, 1500, T0, T0 + SPAN, taken))
    roll_up(engine=engine)
    _write(engine, _random_rows(rng, sid, 400, T0 + DAY, T0 + 2 * DAY, taken), batch=10)
    monkeypatch.setattr(rollups, "DIRTY_SPANS_MAX", 5)
    with engine.connect() as conn:
        cover = rollups.coverage(conn, sid)
    assert cover is not None and len(cover.dirty) == 1
    _assert_downsample_is_raw(engine, sid, rng, tries=4)


def test_a_stopped_run_moves_no_position_and_the_next_finishes(engine: Engine) -> None:
    rng = random.Random(3)
    sid = _series(engine)
    _write(engine, _random_rows(rng, sid, 500, T0, T0 + SPAN, set()))
    calls = iter([False, True])
    done = roll_up(engine=engine, stopping=lambda: next(calls, True))
    assert not done.finished
    with engine.connect() as conn:
        assert rollups.position(conn) == 0
    assert roll_up(engine=engine).finished
    _assert_rollups_match(engine, sid)


def test_a_device_merged_into_another_rolls_up_as_one_series(engine: Engine) -> None:
    from sensors.storage import move_device_series

    rng = random.Random(11)
    store = ReadingStore(engine)
    old = store.ensure_series(device="old", channel="t", quantity="temperature",
                              unit="degC", site=None).id
    new = _series(engine)
    _write(engine, _random_rows(rng, old, 300, T0, T0 + DAY, set())
           + _random_rows(rng, new, 300, T0, T0 + DAY, set()))
    roll_up(engine=engine)
    with engine.begin() as conn:
        move_device_series(conn=conn, old="old", new="st")
    roll_up(engine=engine)
    _assert_rollups_match(engine, new)
    with engine.connect() as conn:  # the merged series' rollups went with it
        assert rollups.rollups(conn=conn, series_id=old, level="hour") == []
        assert rollups.coverage(conn, old) is None
