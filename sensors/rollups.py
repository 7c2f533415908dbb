"""Rollups of every series (by minute, hour and day) kept up to date from the readings'
journal, bucketed reads served from them, and the pruning of raw readings they allow.

**What a rollup is.** For each series and each minute, hour and day (UTC) that holds
readings: how many (``n``), their sum (the mean is ``total / n``), the lowest and highest
value, the first and last reading (time and value), and how many were flagged suspect or
with a doubtful clock. Every reading counts, flagged or not, as in
:func:`sensors.queries.downsample`. Hours and days are kept for ever; minutes only as long
as the raw readings they sum (they make a chart's bucket edges cheap, see below).

**Kept up to date by the journal.** Every batch a hub writes journals one span per series
(``reading_spans``, :mod:`sensors.storage`), in ``seq`` order, and every stored reading is
inside a span of the batch that wrote it. The rollups remember the last ``seq`` they took
in (``rollup_state``): :func:`roll_up` reads the spans after it, and recomputes the hours
they touch from the raw readings (minutes, then hours, then the days of those hours), in
chunks of a day, then moves the position. A late reading (an SD card's log, a node that
was offline) is just a span over an old hour: that hour is done again. The writer does no
extra work at all. Merging old spans (``compact_spans``) keeps each merged span at the
last of its parts' positions, so it is never behind the position and nothing is missed.
A central keeps no journal (it sends nothing up), so its readings are not rolled up here.

**An hour is clean** when no span after the position touches it; the others are dirty
until the next run. A query (:func:`bucket_rows`) reads clean hours from the rollups and
dirty ones from the raw readings, so its answer equals the raw computation.

**Pruning** (:func:`prune_raw`) deletes the raw readings of clean hours before a time,
series by series, in small transactions: before deleting an hour's readings it copies the
hour's rollup into ``rollup_pruned`` (what was pruned of that hour), so a late reading
into that hour later rolls up as ``pruned + raw``. On a hub in a network only readings
the central holds go (``shared``: what it acknowledged, as a journal position).
"""

from __future__ import annotations

import json
from bisect import bisect_right
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Engine, Table, delete, func, insert, select, text, update

from sensors.storage import (
    FLAG_CLOCK,
    FLAG_SUSPECT,
    reading_spans,
    readings,
    rollup_days,
    rollup_hours,
    rollup_minutes,
    rollup_series,
    rollup_state,
    series,
)

US_PER_S = 1_000_000
MINUTE = 60 * US_PER_S
HOUR = 3600 * US_PER_S
DAY = 86_400 * US_PER_S
STATE_ID = 1  # the one row of rollup_state
SPANS_PER_PASS = 5_000  # spans read at once by roll_up (a few seconds of a busy hub)
HOURS_PER_CHUNK = 24  # hours recomputed per transaction: a day of 1 Hz is 86,400 readings
# Spans after the position a query looks through one by one to find the dirty hours;
# further behind (the rollups job off or far behind), it takes their whole range as dirty.
DIRTY_SPANS_MAX = 20_000
PRUNE_HOURS_PER_CHUNK = 6  # a prune transaction: 21,600 readings of a 1 Hz channel
SPANS_DELETED_PER_CHUNK = 10_000

# (n, total, low, high, first_ts, first_value, last_ts, last_value, suspect, clock)
Aggregate = tuple[int, float, float, float, int, float, int, float, int, int]
_COLUMNS = ("n", "total", "low", "high", "first_ts", "first_value", "last_ts", "last_value",
            "suspect", "clock")


def merge(a: Aggregate | None, b: Aggregate) -> Aggregate:
    """The aggregate of the readings of ``a`` and ``b`` together (``a`` may be none)."""
    if a is None:
        return b
    first = a if a[4] <= b[4] else b
    last = a if a[6] >= b[6] else b
    return (a[0] + b[0], a[1] + b[1], min(a[2], b[2]), max(a[3], b[3]), first[4], first[5],
            last[6], last[7], a[8] + b[8], a[9] + b[9])


def _floor(ts: int, unit: int) -> int:
    return ts - ts % unit


def _ceil(ts: int, unit: int) -> int:
    return -(-ts // unit) * unit


# -- the position in the journal -----------------------------------------------------------

def position(conn: Connection) -> int:
    """The journal's ``seq`` up to which every span is rolled up (0: none yet)."""
    found = conn.execute(select(rollup_state.c.seq)
                         .where(rollup_state.c.id == STATE_ID)).scalar()
    return 0 if found is None else int(found)


def _move_position(conn: Connection, seq: int) -> None:
    if not conn.execute(update(rollup_state).where(rollup_state.c.id == STATE_ID)
                        .values(seq=seq)).rowcount:
        conn.execute(insert(rollup_state).values(id=STATE_ID, seq=seq))


def _last_seq(conn: Connection) -> int:
    return int(conn.execute(select(func.coalesce(func.max(reading_spans.c.seq), 0)))
               .scalar_one())


def _hour_ranges(spans: Iterable[Any], unit: int = HOUR) -> dict[int, list[list[int]]]:
    """Per series, the hours (or other ``unit``; ``[start, end)``, merged) spans touch."""
    by_series: dict[int, list[tuple[int, int]]] = {}
    for span in spans:
        by_series.setdefault(span.series_id, []).append(
            (_floor(span.ts_min, unit), _floor(span.ts_max, unit) + unit))
    out: dict[int, list[list[int]]] = {}
    for sid, ranges in by_series.items():
        merged: list[list[int]] = []
        for lo, hi in sorted(ranges):
            if merged and lo <= merged[-1][1]:
                merged[-1][1] = max(merged[-1][1], hi)
            else:
                merged.append([lo, hi])
        out[sid] = merged
    return out


# -- keeping them up to date -----------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class RolledUp:
    """What a :func:`roll_up` did: spans taken in, hours recomputed, whether it finished
    (False: it was asked to stop; the rest waits for the next run)."""

    spans: int
    hours: int
    finished: bool


def roll_up(*, engine: Engine, stopping: Callable[[], bool] = lambda: False,
            spans_per_pass: int = SPANS_PER_PASS) -> RolledUp:
    """Take in every span journaled after the position: recompute the hours they touch
    (and those hours' minutes and days), then move the position past them."""
    spans_done = hours_done = 0
    while True:
        with engine.connect() as conn:
            start = position(conn)
            spans = conn.execute(
                select(reading_spans.c.seq, reading_spans.c.series_id,
                       reading_spans.c.ts_min, reading_spans.c.ts_max)
                .where(reading_spans.c.seq > start).order_by(reading_spans.c.seq)
                .limit(spans_per_pass)).all()
            ranges = _hour_ranges(spans, MINUTE)
            present = set(conn.execute(select(series.c.id)
                                       .where(series.c.id.in_(sorted(ranges)))).scalars())
        if not spans:
            return RolledUp(spans_done, hours_done, True)
        for sid in sorted(present):
            for lo, hi in ranges[sid]:
                for a in range(lo, hi, HOURS_PER_CHUNK * HOUR):
                    if stopping():
                        return RolledUp(spans_done, hours_done, False)
                    hours_done += _recompute(engine, sid, a, min(hi, a + HOURS_PER_CHUNK * HOUR))
        with engine.begin() as conn:
            known = set(conn.execute(select(rollup_series.c.series_id)
                                     .where(rollup_series.c.series_id.in_(sorted(present))))
                        .scalars())
            if present - known:
                conn.execute(insert(rollup_series),
                             [{"series_id": s, "pruned_before": None}
                              for s in sorted(present - known)])
            _move_position(conn, spans[-1].seq)
        spans_done += len(spans)
        if stopping():
            return RolledUp(spans_done, hours_done, False)


_FLAGGED = ("sum(CASE WHEN (flags & {flag}) <> 0 THEN 1 ELSE 0 END)")
# The minutes of [lo, hi) from the raw readings, with the first and last value of each.
_MINUTES = (
    "SELECT g.m, g.n, g.total, g.low, g.high, g.t0, "
    " (SELECT value FROM readings WHERE series_id = :s AND ts = g.t0), g.t1, "
    " (SELECT value FROM readings WHERE series_id = :s AND ts = g.t1), g.sus, g.clk "
    "FROM (SELECT (ts - :lo) / " + str(MINUTE) + " AS m, count(*) AS n, sum(value) AS total,"
    " min(value) AS low, max(value) AS high, min(ts) AS t0, max(ts) AS t1, "
    + _FLAGGED.format(flag=FLAG_SUSPECT) + " AS sus, " + _FLAGGED.format(flag=FLAG_CLOCK)
    + " AS clk FROM readings WHERE series_id = :s AND ts >= :lo AND ts < :hi GROUP BY m) g"
)
# An hour is its minutes and its pruned part, read in one statement (one snapshot: a prune
# committing between two statements would count the hour's pruned readings twice).
_HOUR_PARTS = (
    "SELECT start, " + ", ".join(_COLUMNS) + " FROM rollup_minutes "
    "WHERE series_id = :s AND start >= :lo AND start < :hi "
    "UNION ALL SELECT start, " + ", ".join(_COLUMNS) + " FROM rollup_pruned "
    "WHERE series_id = :s AND start >= :lo AND start < :hi"
)


_COPY_TYPES = ["int4", "int8", "int8", "float8", "float8", "float8", "int8", "float8", "int8",
               "float8", "int8", "int8"]


def _replace(conn: Connection, table: Table, sid: int, lo: int, hi: int,
             aggregates: dict[int, Aggregate]) -> None:
    conn.execute(delete(table).where(table.c.series_id == sid, table.c.start >= lo,
                                     table.c.start < hi))
    if not aggregates:
        return
    if conn.dialect.name != "postgresql":  # the driver's executemany: C-level on SQLite
        conn.exec_driver_sql(
            f"INSERT INTO {table.name} (series_id, start, {', '.join(_COLUMNS)}) "
            f"VALUES ({', '.join(['?'] * 12)})",
            [(sid, start, *agg) for start, agg in aggregates.items()])
    else:  # psycopg's executemany sends a statement a row: a binary COPY instead
        cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
        try:
            with cursor.copy(f"COPY {table.name} (series_id, start, {', '.join(_COLUMNS)}) "
                             "FROM STDIN (FORMAT BINARY)") as copy:
                copy.set_types(_COPY_TYPES)
                for start, agg in aggregates.items():
                    copy.write_row((sid, start, *agg))
        finally:
            cursor.close()


def _recompute(engine: Engine, sid: int, lo: int, hi: int) -> int:
    """Recompute the minutes of ``[lo, hi)`` (whole minutes) of one series from its raw
    readings, then the hours they fall in (from their minutes and pruned parts) and the
    days of those hours (from their hours); the hours written."""
    minutes: dict[int, Aggregate] = {}
    with engine.connect() as conn:
        for m, n, total, low, high, t0, v0, t1, v1, sus, clk in conn.execute(
                text(_MINUTES), {"s": sid, "lo": lo, "hi": hi}):
            minutes[lo + int(m) * MINUTE] = (int(n), float(total), float(low), float(high),
                                            int(t0), float(v0), int(t1), float(v1),
                                            int(sus), int(clk))
    h0, h1 = _floor(lo, HOUR), _ceil(hi, HOUR)
    d0, d1 = _floor(lo, DAY), _ceil(hi, DAY)
    with engine.begin() as conn:
        _replace(conn, rollup_minutes, sid, lo, hi, minutes)
        hours: dict[int, Aggregate] = {}
        for row in conn.execute(text(_HOUR_PARTS), {"s": sid, "lo": h0, "hi": h1}):
            hour = _floor(row[0], HOUR)
            hours[hour] = merge(hours.get(hour), _aggregate(row[1:]))
        _replace(conn, rollup_hours, sid, h0, h1, hours)
        days: dict[int, Aggregate] = {}
        for row in conn.execute(select(rollup_hours.c.start, *_agg_columns(rollup_hours))
                                .where(rollup_hours.c.series_id == sid,
                                       rollup_hours.c.start >= d0, rollup_hours.c.start < d1)
                                .order_by(rollup_hours.c.start)):
            day = _floor(row[0], DAY)
            days[day] = merge(days.get(day), _aggregate(row[1:]))
        _replace(conn, rollup_days, sid, d0, d1, days)
    return len(hours)


def _agg_columns(table: Table) -> list[Any]:
    return [table.c[name] for name in _COLUMNS]


def _aggregate(row: Sequence[Any]) -> Aggregate:
    return (int(row[0]), float(row[1]), float(row[2]), float(row[3]), int(row[4]),
            float(row[5]), int(row[6]), float(row[7]), int(row[8]), int(row[9]))


def rollups(*, conn: Connection, series_id: int, level: str, start: int | None = None,
            end: int | None = None) -> list[tuple[int, Aggregate]]:
    """The stored rollups of one series, ``level`` "minute", "hour" or "day", whose start is
    in ``[start, end)``, oldest first: ``(start, aggregate)``. A dirty hour's may be old."""
    table = {"minute": rollup_minutes, "hour": rollup_hours, "day": rollup_days}[level]
    query = (select(table.c.start, *_agg_columns(table)).where(table.c.series_id == series_id)
             .order_by(table.c.start))
    if start is not None:
        query = query.where(table.c.start >= start)
    if end is not None:
        query = query.where(table.c.start < end)
    return [(int(r[0]), _aggregate(r[1:])) for r in conn.execute(query)]


def time_bounds(conn: Connection, series_id: int) -> tuple[int, int] | None:
    """The first and last reading time the series' hourly rollups hold (raw readings of
    pruned hours included); None when it has none."""
    h = rollup_hours.c
    first = conn.execute(select(h.first_ts).where(h.series_id == series_id)
                         .order_by(h.start).limit(1)).scalar()
    if first is None:
        return None
    last = conn.execute(select(h.last_ts).where(h.series_id == series_id)
                        .order_by(h.start.desc()).limit(1)).scalar_one()
    return int(first), int(last)


# -- pruning raw readings ---------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class JournalMark:
    """What another database holds of the journal: every span before ``seq`` and, of span
    ``seq``, its readings at or before ``ts`` (None: none of it)."""

    seq: int
    ts: int | None = None

    def key(self) -> tuple[int, int]:
        return (self.seq, -1 if self.ts is None else self.ts)


@dataclass(frozen=True, slots=True)
class Pruned:
    """What a :func:`prune_raw` did: raw readings deleted, series they were of, spans of
    the journal that covered only deleted readings, and whether it finished."""

    readings: int
    series: int
    spans: int
    finished: bool


@contextmanager
def _write_snapshot(engine: Engine) -> Iterator[Connection]:
    """A transaction whose reads and writes see one state: on SQLite it holds the write
    lock from its start (``BEGIN IMMEDIATE``), so no batch commits between a check and a
    delete; on PostgreSQL it is REPEATABLE READ, so a delete leaves alone what committed
    after the check (a late reading stays, its span makes its hour dirty)."""
    if engine.dialect.name == "postgresql":
        with (engine.connect().execution_options(isolation_level="REPEATABLE READ") as conn,
              conn.begin()):
            yield conn
        return
    with engine.connect() as conn:
        conn.exec_driver_sql("BEGIN IMMEDIATE")
        try:
            yield conn
        except BaseException:
            conn.rollback()
            raise
        conn.commit()


def _first_ts(conn: Connection, sid: int, at_least: int | None = None) -> int | None:
    query = select(readings.c.ts).where(readings.c.series_id == sid)
    if at_least is not None:
        query = query.where(readings.c.ts >= at_least)
    found = conn.execute(query.order_by(readings.c.ts).limit(1)).scalar()
    return None if found is None else int(found)


def _unsent(conn: Connection, mark: JournalMark) -> dict[int, int]:
    """Per series, the earliest time of a reading in a span not (wholly) held elsewhere."""
    after = mark.seq if mark.ts is not None else mark.seq - 1
    out = {int(sid): int(low) for sid, low in conn.execute(
        select(reading_spans.c.series_id, func.min(reading_spans.c.ts_min))
        .where(reading_spans.c.seq > after).group_by(reading_spans.c.series_id))}
    if mark.ts is not None:
        part = conn.execute(select(reading_spans.c.series_id, reading_spans.c.ts_min,
                                   reading_spans.c.ts_max)
                            .where(reading_spans.c.seq == mark.seq)).first()
        if part is not None and part.ts_max > mark.ts:
            low = max(int(part.ts_min), mark.ts + 1)
            out[part.series_id] = min(out.get(part.series_id, low), low)
    return out


def prune_raw(*, engine: Engine, before: int,
              shared: Callable[[Connection], JournalMark | None],
              stopping: Callable[[], bool] = lambda: False,
              hours_per_chunk: int = PRUNE_HOURS_PER_CHUNK) -> Pruned:
    """Delete raw readings older than ``before`` (µs; rounded down to an hour) that are
    rolled up, of clean hours only, and held elsewhere.

    ``shared(conn)`` says what another database holds: None when there is none to wait
    for (a hub in no network prunes by its own rules), else the journal position it
    acknowledged (:class:`JournalMark`): a reading in a span it does not hold stays. It is
    asked again in every transaction, so a position that went back (a central restored
    from an older backup) stops the pruning at once. Each series goes in transactions of
    ``hours_per_chunk`` hours; before deleting an hour's readings its rollup is copied into
    ``rollup_pruned``. Journal spans that covered only deleted readings (and are rolled up
    and held elsewhere) are deleted last, so the journal does not grow for ever.
    """
    before = _floor(before, HOUR)
    with engine.connect() as conn:
        cursor = position(conn)
        top = _last_seq(conn)
        mark = shared(conn)
        rolled = conn.execute(select(rollup_series.c.series_id)
                              .order_by(rollup_series.c.series_id)).scalars().all()
        dirty = {int(sid): int(low) for sid, low in conn.execute(
            select(reading_spans.c.series_id, func.min(reading_spans.c.ts_min))
            .where(reading_spans.c.seq > cursor).group_by(reading_spans.c.series_id))}
        unsent = _unsent(conn, mark) if mark is not None else {}
    deleted = touched = 0
    for sid in rolled:
        bound = min(before, _floor(dirty.get(sid, before), HOUR),
                    _floor(unsent.get(sid, before), HOUR))
        with engine.connect() as conn:
            a = _first_ts(conn, sid)
        gone = 0
        while a is not None and _floor(a, HOUR) < bound:
            if stopping():
                return Pruned(deleted + gone, touched + bool(gone), 0, False)
            lo = _floor(a, HOUR)
            hi = min(bound, lo + hours_per_chunk * HOUR)
            got = _prune_chunk(engine, sid, lo, hi, top, mark, shared)
            if got is _WENT_BACK:  # the central lost what it had: prune nothing more
                return Pruned(deleted + gone, touched + bool(gone), 0, True)
            if got is None:
                break  # a late reading in this series: leave the rest of it for next time
            gone += got
            with engine.connect() as conn:
                a = _first_ts(conn, sid, hi)
        deleted += gone
        touched += bool(gone)
    spans = 0 if stopping() else _drop_spent_spans(engine, cursor, mark, shared)
    return Pruned(deleted, touched, spans, True)


def _same_or_further(now: JournalMark | None, then: JournalMark | None) -> bool:
    if then is None:
        return now is None
    return now is not None and now.key() >= then.key()


_WENT_BACK = -1


def _prune_chunk(engine: Engine, sid: int, lo: int, hi: int, top: int,
                 mark: JournalMark | None,
                 shared: Callable[[Connection], JournalMark | None]) -> int | None:
    """Prune one series' raw readings of ``[lo, hi)``: how many went; None when a late
    reading is there, ``_WENT_BACK`` when what is held elsewhere went back."""
    with _write_snapshot(engine) as conn:
        if not _same_or_further(shared(conn), mark):
            return _WENT_BACK
        late = conn.execute(select(reading_spans.c.seq).where(
            reading_spans.c.seq > top, reading_spans.c.series_id == sid,
            reading_spans.c.ts_min < hi, reading_spans.c.ts_max >= lo).limit(1)).first()
        if late is not None:
            return None
        names = ", ".join(_COLUMNS)
        conn.execute(text(
            f"INSERT INTO rollup_pruned (series_id, start, {names}) "
            f"SELECT series_id, start, {names} FROM rollup_hours "
            "WHERE series_id = :s AND start >= :lo AND start < :hi "
            "ON CONFLICT (series_id, start) DO UPDATE SET "
            + ", ".join(f"{c} = excluded.{c}" for c in _COLUMNS)),
            {"s": sid, "lo": lo, "hi": hi})
        gone = conn.execute(delete(readings).where(
            readings.c.series_id == sid, readings.c.ts >= lo, readings.c.ts < hi)).rowcount
        conn.execute(delete(rollup_minutes).where(
            rollup_minutes.c.series_id == sid, rollup_minutes.c.start >= lo,
            rollup_minutes.c.start < hi))
        conn.execute(update(rollup_series).where(
            rollup_series.c.series_id == sid,
            func.coalesce(rollup_series.c.pruned_before, lo - 1) < hi).values(pruned_before=hi))
    return int(gone)


def _drop_spent_spans(engine: Engine, cursor: int, mark: JournalMark | None,
                      shared: Callable[[Connection], JournalMark | None]) -> int:
    """Delete the journal's spans, rolled up and held elsewhere, whose readings are all
    pruned (before their series' ``pruned_before``), a few thousand at a time."""
    limit = cursor if mark is None else min(cursor, mark.seq - 1)
    spent = (select(rollup_series.c.pruned_before)
             .where(rollup_series.c.series_id == reading_spans.c.series_id)
             .scalar_subquery())
    done = 0
    low = 0
    while low < limit:
        high = min(limit, low + SPANS_DELETED_PER_CHUNK)
        with _write_snapshot(engine) as conn:
            if not _same_or_further(shared(conn), mark):
                break
            done += conn.execute(delete(reading_spans).where(
                reading_spans.c.seq > low, reading_spans.c.seq <= high,
                reading_spans.c.ts_max < spent)).rowcount
        low = high
    return done


# -- reading them: buckets served from rollups where they are up to date ------------------

RAW, MINUTES, HOURS, DAYS, PRUNED = range(5)
_PIECE_SQL = {
    RAW: ("count(ts), sum(value), min(value), max(value), min(ts), max(ts)", "readings", "ts"),
    MINUTES: ("sum(n), sum(total), min(low), max(high), min(first_ts), max(last_ts)",
              "rollup_minutes", "start"),
    HOURS: ("sum(n), sum(total), min(low), max(high), min(first_ts), max(last_ts)",
            "rollup_hours", "start"),
    DAYS: ("sum(n), sum(total), min(low), max(high), min(first_ts), max(last_ts)",
           "rollup_days", "start"),
    PRUNED: ("sum(n), sum(total), min(low), max(high), min(first_ts), max(last_ts)",
             "rollup_pruned", "start"),
}


@dataclass(frozen=True, slots=True)
class Coverage:
    """How far one series' rollups can be read: its raw readings before ``pruned_before``
    are pruned (None: none), and ``dirty`` hours (``[start, end)``, sorted, disjoint) are
    not up to date in the rollups."""

    pruned_before: int | None
    dirty: list[tuple[int, int]]


def coverage(conn: Connection, series_id: int) -> Coverage | None:
    """The series' :class:`Coverage`; None when it is not rolled up (yet)."""
    row = conn.execute(select(rollup_series.c.pruned_before)
                       .where(rollup_series.c.series_id == series_id)).first()
    if row is None:
        return None
    start = position(conn)
    spans: Sequence[Any]
    if _last_seq(conn) - start <= DIRTY_SPANS_MAX:
        spans = conn.execute(select(reading_spans.c.series_id, reading_spans.c.ts_min,
                                    reading_spans.c.ts_max)
                             .where(reading_spans.c.seq > start,
                                    reading_spans.c.series_id == series_id)).all()
    else:  # far behind: one range over all of them, a single aggregate
        spans = [r for r in conn.execute(
            select(reading_spans.c.series_id, func.min(reading_spans.c.ts_min).label("ts_min"),
                   func.max(reading_spans.c.ts_max).label("ts_max"))
            .where(reading_spans.c.seq > start, reading_spans.c.series_id == series_id)
            .group_by(reading_spans.c.series_id)).all()]
    dirty = [(lo, hi) for lo, hi in _hour_ranges(spans).get(series_id, [])]
    return Coverage(None if row.pruned_before is None else int(row.pruned_before), dirty)


Piece = tuple[int, int, int, int]  # (kind, bucket, lo, hi)


def _split(lo: int, hi: int, dirty: list[tuple[int, int]]
           ) -> Iterator[tuple[bool, int, int]]:
    """``[lo, hi)`` cut into stretches ``(is_dirty, start, end)`` in order."""
    i = max(0, bisect_right(dirty, (lo, lo)) - 1)
    t = lo
    while t < hi:
        while i < len(dirty) and dirty[i][1] <= t:
            i += 1
        if i < len(dirty) and dirty[i][0] <= t:
            end = min(hi, dirty[i][1])
            yield True, t, end
        else:
            end = min(hi, dirty[i][0]) if i < len(dirty) else hi
            yield False, t, end
        t = end


def _by_unit(b: int, s: int, e: int, unit: int, whole: int, rest: int,
             out: list[Piece]) -> None:
    """``[s, e)``: its whole ``unit``s from the ``whole`` table, the edges from ``rest``."""
    ws, we = _ceil(s, unit), _floor(e, unit)
    if ws < we:
        if s < ws:
            out.append((rest, b, s, ws))
        out.append((whole, b, ws, we))
        if we < e:
            out.append((rest, b, we, e))
    else:
        out.append((rest, b, s, e))


def _aligned(b: int, s: int, e: int, out: list[Piece]) -> None:
    """Whole hours ``[s, e)``: whole days from days, the rest from hours."""
    _by_unit(b, s, e, DAY, DAYS, HOURS, out)


def _fine(b: int, s: int, e: int, out: list[Piece]) -> None:
    """Part of a clean hour: whole minutes from minutes, the rest raw."""
    _by_unit(b, s, e, MINUTE, MINUTES, RAW, out)


def _pieces(b: int, lo: int, hi: int, cover: Coverage, out: list[Piece]) -> None:
    """Where bucket ``b`` = ``[lo, hi)`` is read from.

    Before ``pruned_before`` an hour's raw readings may be gone, so an hour is read whole,
    in the bucket its start is in. After it, clean whole hours come from rollups, parts of
    clean hours from minutes and raw readings, dirty hours from raw readings."""
    pruned = cover.pruned_before
    if pruned is not None and lo < pruned:
        x, y = _ceil(lo, HOUR), _ceil(min(hi, pruned), HOUR)
        for is_dirty, s, e in _split(x, y, cover.dirty):
            if is_dirty:
                out.append((PRUNED, b, s, e))
                out.append((RAW, b, s, e))
            else:
                _aligned(b, s, e, out)
        lo = max(lo, pruned, y)
    if lo >= hi:
        return
    for is_dirty, s, e in _split(lo, hi, cover.dirty):
        if is_dirty:
            out.append((RAW, b, s, e))
            continue
        hs, he = _ceil(s, HOUR), _floor(e, HOUR)
        if hs >= he:
            _fine(b, s, e, out)
            continue
        if s < hs:
            _fine(b, s, hs, out)
        _aligned(b, hs, he, out)
        if he < e:
            _fine(b, he, e, out)


BucketRow = tuple[int, int, float, float, float, int, int]  # b, n, low, mean, high, t0, t1


def bucket_rows(conn: Connection, series_id: int, start: int, end: int, width: int
                ) -> list[BucketRow] | None:
    """:func:`sensors.queries.downsample`'s rows for ``[start, end)`` in buckets of
    ``width``, from the rollups where they are up to date and raw readings elsewhere;
    None when the series is not rolled up (the caller reads raw readings)."""
    cover = coverage(conn, series_id)
    if cover is None:
        return None
    pieces: list[Piece] = []
    for b in range(-(-(end - start) // width)):
        edge = start + b * width
        _pieces(b, edge, min(edge + width, end), cover, pieces)
    totals: dict[int, list[Any]] = {}
    for b, n, total, low, high, t0, t1 in _fetch(conn, series_id, pieces):
        got = totals.get(b)
        if got is None:
            totals[b] = [n, total, low, high, t0, t1]
        else:
            got[0] += n
            got[1] += total
            got[2] = min(got[2], low)
            got[3] = max(got[3], high)
            got[4] = min(got[4], t0)
            got[5] = max(got[5], t1)
    return [(b, n, low, total / n, high, t0, t1)
            for b, (n, total, low, high, t0, t1) in sorted(totals.items())]


def _fetch(conn: Connection, sid: int, pieces: list[Piece]
           ) -> Iterator[tuple[int, int, float, float, float, int, int]]:
    """``(bucket, n, total, low, high, first_ts, last_ts)`` of each piece holding readings."""
    by_kind: dict[int, list[Piece]] = {}
    for piece in pieces:
        by_kind.setdefault(piece[0], []).append(piece)
    postgres = conn.dialect.name == "postgresql"
    for kind, some in by_kind.items():
        columns, table, key = _PIECE_SQL[kind]
        if postgres:
            sql = (f"SELECT p.i, a.* FROM unnest(CAST(:los AS bigint[]), CAST(:his AS bigint[]),"
                   " CAST(:bs AS integer[])) AS p(lo, hi, i) CROSS JOIN LATERAL ("
                   f"SELECT {columns} FROM {table} WHERE series_id = :s AND {key} >= p.lo "
                   f"AND {key} < p.hi) AS a(n, total, low, high, t0, t1) WHERE a.n > 0")
            rows = conn.execute(text(sql), {"s": sid, "los": [p[2] for p in some],
                                            "his": [p[3] for p in some],
                                            "bs": [p[1] for p in some]})
            for b, n, total, low, high, t0, t1 in rows:
                yield int(b), int(n), float(total), float(low), float(high), int(t0), int(t1)
            continue
        # One statement for every piece of a kind: the pieces (a JSON array of [lo, hi]) as
        # the outer loop (CROSS JOIN keeps that order), a seek on the key for each. A
        # statement a piece cost ~2,500 statements for a year in 500 buckets, most of the
        # time. Grouped by the piece's index in the array (json_each's own integer key),
        # not by a value read out of the JSON for every row: a third less time.
        pieces_json = json.dumps([[p[2], p[3]] for p in some])
        sql = (f"SELECT p.key, {columns.replace('(', '(r.')} FROM json_each(?) AS p "
               f"CROSS JOIN {table} AS r WHERE r.series_id = ? "
               f"AND r.{key} >= json_extract(p.value, '$[0]') "
               f"AND r.{key} < json_extract(p.value, '$[1]') GROUP BY p.key")
        for i, n, total, low, high, t0, t1 in conn.exec_driver_sql(sql, (pieces_json, sid)):
            if n:
                yield (some[i][1], int(n), float(total), float(low), float(high), int(t0),
                       int(t1))
