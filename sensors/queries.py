"""Reading the readings back: series lists, latest values, ranges, buckets, wide rows.

Everything here reads; nothing writes. Range queries walk the clustered
``(series_id, ts)`` key, so one week of one channel is one short scan whatever the table
holds. Downsampling groups a range into N equal time buckets in the database (min, mean,
max and count per bucket), so a week of 1 s data draws as a 500-point chart without the
rows ever reaching Python; buckets of an hour or more read the rollups, so a year does
too. Wide rows for export are read in time windows sized to stay small, so an export of
any length streams in bounded memory.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass
from itertools import pairwise
from typing import Any

from sqlalchemy import BigInteger, Connection, LargeBinary, Select, func, or_, select, text

from sensors import rollups
from sensors.errors import UnknownSeriesError
from sensors.storage import (
    DEAD_LETTER_PAYLOAD_MAX,
    FLAG_SUSPECT,
    SeriesRow,
    dead_letters,
    series,
)

EXPORT_WINDOW_START_US = 86_400 * 1_000_000  # first export window: one day
EXPORT_WINDOW_ROWS = (20_000, 100_000)  # readings per window: grow below, shrink above
# Readings per series looked at to tell how far apart its readings are: enough for a
# median that ignores gaps and bursts, few enough to cost one short index scan.
INTERVAL_SAMPLE = 1000
# Up to this many buckets, SQLite aggregates each bucket with a query of its own (see
# _sqlite_buckets); beyond it the statements' own cost outweighs the sort they save.
BUCKET_QUERIES_MAX = 1000


@dataclass(frozen=True, slots=True)
class Latest:
    """The newest reading of a series."""

    series_id: int
    ts: int
    value: float
    flags: int


@dataclass(frozen=True, slots=True)
class Bucket:
    """Aggregates of the readings in one time bucket ``[start, end)``."""

    start: int
    end: int
    count: int
    min: float
    mean: float
    max: float
    first_ts: int
    last_ts: int


def _row(r: Any) -> SeriesRow:
    return SeriesRow(r.id, r.device, r.channel, r.quantity, r.unit, r.site)


def list_series(
    *,
    conn: Connection,
    device: str | None = None,
    channel: str | None = None,
    site: str | None = None,
    quantity: str | None = None,
    sites: Sequence[str] | None = None,
) -> list[SeriesRow]:
    """Series matching the filters, ordered by device then channel; ``sites``: at any of
    these sites (a subtree's codes)."""
    query = select(series).order_by(series.c.device, series.c.channel)
    if device is not None:
        query = query.where(series.c.device == device)
    if channel is not None:
        query = query.where(series.c.channel == channel)
    if site is not None:
        query = query.where(series.c.site == site)
    if sites is not None:
        query = query.where(series.c.site.in_(list(sites)))
    if quantity is not None:
        query = query.where(series.c.quantity == quantity)
    return [_row(r) for r in conn.execute(query)]


def get_series(*, conn: Connection, device: str, channel: str) -> SeriesRow:
    """The series of (device, channel); :class:`UnknownSeriesError` when there is none."""
    r = conn.execute(
        select(series).where(series.c.device == device, series.c.channel == channel)
    ).first()
    if r is None:
        raise UnknownSeriesError(f"no readings stored for device {device!r} channel {channel!r}")
    return _row(r)


def latest(*, conn: Connection, series_ids: Sequence[int] | None = None) -> dict[int, Latest]:
    """The newest reading of each series (all series when ``series_ids`` is None)."""
    where = ""
    if series_ids is not None:
        if not series_ids:
            return {}
        # Integers written into the SQL: a thousand bind parameters cost more than the query.
        where = f"WHERE s.id IN ({', '.join(str(int(i)) for i in series_ids)})"
    if conn.dialect.name == "postgresql":
        sql = (
            "SELECT s.id, r.ts, r.value, r.flags FROM series s CROSS JOIN LATERAL "
            "(SELECT ts, value, flags FROM readings WHERE series_id = s.id "
            f"ORDER BY ts DESC LIMIT 1) r {where}"
        )
    else:
        sql = (
            "SELECT s.id, r.ts, r.value, r.flags FROM series s JOIN readings r "
            "ON r.series_id = s.id AND r.ts = "
            f"(SELECT max(ts) FROM readings WHERE series_id = s.id) {where}"
        )
    return {
        sid: Latest(sid, ts, value, flags)
        for sid, ts, value, flags in conn.exec_driver_sql(sql)
    }


def time_bounds(*, conn: Connection, series_ids: Sequence[int]) -> tuple[int, int] | None:
    """Earliest and latest reading time over the series, or None when they hold nothing."""
    lows: list[int] = []
    highs: list[int] = []
    for sid in series_ids:
        # One ordered probe per end uses the clustered key on both databases.
        low = conn.execute(
            text("SELECT ts FROM readings WHERE series_id = :s ORDER BY ts LIMIT 1"), {"s": sid}
        ).scalar()
        if low is None:
            continue
        high = conn.execute(
            text("SELECT ts FROM readings WHERE series_id = :s ORDER BY ts DESC LIMIT 1"),
            {"s": sid},
        ).scalar_one()
        lows.append(low)
        highs.append(high)
    if not lows:
        return None
    return min(lows), max(highs)


def typical_interval(
    *, conn: Connection, series_ids: Sequence[int], start: int | None = None,
    end: int | None = None,
) -> int | None:
    """How far apart (microseconds) the readings of the fastest of ``series_ids`` are over
    ``[start, end)``: the median gap between its first :data:`INTERVAL_SAMPLE` readings
    there. None when no series has two readings in the range."""
    shortest: int | None = None
    query = text("SELECT ts FROM readings WHERE series_id = :s AND ts >= :a AND ts < :b "
                 "ORDER BY ts LIMIT :n")
    low = -(1 << 63) if start is None else start
    high = (1 << 63) - 1 if end is None else end
    for sid in series_ids:
        stamps = list(conn.execute(query, {"s": sid, "a": low, "b": high,
                                           "n": INTERVAL_SAMPLE}).scalars())
        gaps = sorted(b - a for a, b in pairwise(stamps))
        if gaps:
            median = gaps[len(gaps) // 2]
            shortest = median if shortest is None else min(shortest, median)
    return shortest


def read_range(
    *,
    conn: Connection,
    series_id: int,
    start: int | None = None,
    end: int | None = None,
    limit: int = 10_000,
    offset: int = 0,
) -> list[tuple[int, float, int]]:
    """Readings ``(ts, value, flags)`` of one series with ``start <= ts < end``, oldest first."""
    sql = "SELECT ts, value, flags FROM readings WHERE series_id = :s"
    params: dict[str, Any] = {"s": series_id, "limit": limit, "offset": offset}
    if start is not None:
        sql += " AND ts >= :start"
        params["start"] = start
    if end is not None:
        sql += " AND ts < :end"
        params["end"] = end
    sql += " ORDER BY ts LIMIT :limit OFFSET :offset"
    return [(r[0], r[1], r[2]) for r in conn.execute(text(sql), params)]


def _sqlite_buckets(conn: Connection, series_id: int, start: int, end: int,
                    width: int) -> list[tuple[int, int, float, float, float, int, int]]:
    """:func:`downsample`'s rows on SQLite: one aggregate per bucket over its own stretch
    of the primary key. SQLite sorts a ``GROUP BY`` on a computed bucket number in a
    temporary B-tree; a week of 1 Hz readings in 500 buckets took 2-3x longer that way."""
    cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
    sql = ("SELECT count(*), min(value), avg(value), max(value), min(ts), max(ts) "
           "FROM readings WHERE series_id = ? AND ts >= ? AND ts < ?")
    found = []
    try:
        for b in range(-(-(end - start) // width)):
            low = start + b * width
            n, lo, mean, hi, t0, t1 = cursor.execute(
                sql, (series_id, low, min(low + width, end))).fetchone()
            if n:
                found.append((b, n, lo, mean, hi, t0, t1))
    finally:
        cursor.close()
    return found


def _merge_bounds(a: tuple[int, int] | None, b: tuple[int, int] | None
                  ) -> tuple[int, int] | None:
    if a is None or b is None:
        return a or b
    return min(a[0], b[0]), max(a[1], b[1])


def downsample(
    *,
    conn: Connection,
    series_id: int,
    buckets: int,
    start: int | None = None,
    end: int | None = None,
) -> list[Bucket]:
    """The range split into ``buckets`` equal time buckets, empty buckets left out.

    Without ``start``/``end`` the range is the series' own first to last reading. Buckets
    an hour wide or wider are read from the rollups (:mod:`sensors.rollups`) where they are
    up to date, and from raw readings elsewhere: the same answer as from raw readings
    alone. Over hours whose raw readings were pruned an hour counts whole, in the bucket
    its start is in.
    """
    if buckets < 1:
        raise ValueError("buckets must be at least 1")
    if start is None or end is None:
        bounds = _merge_bounds(time_bounds(conn=conn, series_ids=[series_id]),
                               rollups.time_bounds(conn, series_id))
        if bounds is None:
            return []
        start = bounds[0] if start is None else start
        end = bounds[1] + 1 if end is None else end
    if end <= start:
        return []
    width = -(-(end - start) // buckets)  # ceiling division: the last bucket reaches `end`
    rows: Iterable[Any] | None = None
    if width >= rollups.HOUR:
        rows = rollups.bucket_rows(conn, series_id, start, end, width)
    if rows is None and conn.dialect.name == "sqlite" and buckets <= BUCKET_QUERIES_MAX:
        rows = _sqlite_buckets(conn, series_id, start, end, width)
    elif rows is None:
        rows = conn.execute(
            text(
                "SELECT (ts - :start) / :width AS b, count(*), min(value), avg(value), "
                "max(value), min(ts), max(ts) FROM readings "
                "WHERE series_id = :s AND ts >= :start AND ts < :end GROUP BY b ORDER BY b"
            ),
            {"s": series_id, "start": start, "end": end, "width": width},
        )
    return [
        Bucket(
            start + int(b) * width,
            min(start + (int(b) + 1) * width, end),
            int(n),
            float(lo),
            float(mean),
            float(hi),
            int(t0),
            int(t1),
        )
        for b, n, lo, mean, hi, t0, t1 in rows
    ]


def suspect_readings(
    *,
    conn: Connection,
    series_id: int,
    start: int,
    end: int,
    limit: int = 1000,
) -> tuple[int, list[tuple[int, float]]]:
    """How many readings of one series over ``[start, end)`` are flagged suspect, and the
    first ``limit`` of them ``(ts, value)``, oldest first: the marks a chart draws (the
    buckets of :func:`downsample` aggregate values, not flags)."""
    where = ("FROM readings WHERE series_id = :s AND ts >= :start AND ts < :end "
             f"AND (flags & {FLAG_SUSPECT}) <> 0")
    params = {"s": series_id, "start": start, "end": end, "limit": limit}
    found = [(int(ts), float(value)) for ts, value in conn.execute(
        text(f"SELECT ts, value {where} ORDER BY ts LIMIT :limit"), params)]
    if len(found) < limit:
        return len(found), found
    return int(conn.execute(text(f"SELECT count(*) {where}"), params).scalar_one()), found


def iter_wide(
    *,
    conn: Connection,
    series_ids: Sequence[int],
    start: int | None = None,
    end: int | None = None,
) -> Iterator[tuple[int, Sequence[float | None]]]:
    """Rows ``(ts, [value per series])`` over ``[start, end)``, oldest first.

    One row per distinct time; a series with no reading at that time has ``None``. Reads
    in time windows that adapt to the data's density, so memory stays bounded.
    """
    if not series_ids:
        return
    bounds = time_bounds(conn=conn, series_ids=series_ids)
    if bounds is None:
        return
    lo = bounds[0] if start is None else max(start, bounds[0])
    hi = bounds[1] + 1 if end is None else min(end, bounds[1] + 1)
    position = {sid: i for i, sid in enumerate(series_ids)}
    width = len(series_ids)
    ph = "%s" if conn.dialect.name == "postgresql" else "?"
    ids = ", ".join(str(int(s)) for s in series_ids)  # integers from our own table
    # Rows come in key order (series, then time): no sort in the database; each window is
    # pivoted to one row per time here.
    if width == 1:
        sql = (f"SELECT ts, value FROM readings WHERE series_id = {ids} "
               f"AND ts >= {ph} AND ts < {ph} ORDER BY ts")
    else:
        sql = (f"SELECT series_id, ts, value FROM readings WHERE series_id IN ({ids}) "
               f"AND ts >= {ph} AND ts < {ph} ORDER BY series_id, ts")
    cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
    window = EXPORT_WINDOW_START_US
    small, large = EXPORT_WINDOW_ROWS
    t = lo
    try:
        while t < hi:
            stop = min(t + window, hi)
            cursor.execute(sql, (t, stop))
            rows = cursor.fetchall()
            t = stop
            if len(rows) < small:
                window *= 2
            elif len(rows) > large:
                window = max(window // 2, 1)
            if width == 1:
                yield from ((ts, (value,)) for ts, value in rows)
                continue
            by_time: dict[int, list[float | None]] = {}
            for sid, ts, value in rows:
                line = by_time.get(ts)
                if line is None:
                    line = by_time[ts] = [None] * width
                line[position[sid]] = value
            for ts in sorted(by_time):
                yield ts, by_time[ts]
    finally:
        cursor.close()


def _dead_letters_of(query: Select[Any], source: str | None, topic: str | None,
                     leave_out_devices: Collection[str] | None = None) -> Select[Any]:
    if source is not None:
        query = query.where(dead_letters.c.source == source)
    if topic is not None:
        query = query.where(dead_letters.c.topic == topic)
    if leave_out_devices:
        device = dead_letters.c.device
        query = query.where(or_(device.is_(None), device.not_in(sorted(leave_out_devices))))
    return query


def count_dead_letters(
    *, conn: Connection, source: str | None = None, topic: str | None = None,
    leave_out_devices: Collection[str] | None = None,
) -> int:
    """How many dead letters are stored (of one source, of one topic, when given; not
    those of ``leave_out_devices``)."""
    query = _dead_letters_of(select(func.count()).select_from(dead_letters), source, topic,
                             leave_out_devices)
    return int(conn.execute(query).scalar_one())


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """Input that could not be stored, with where it came from and why."""

    uuid: str
    received_at: int
    source: str
    device: str | None
    reason: str
    payload: bytes  # its first DEAD_LETTER_PAYLOAD_MAX bytes; ``size`` is the whole one's
    topic: str | None = None  # the MQTT topic; None for other sources and older rows
    size: int = 0  # the payload's size in bytes as it arrived
    sha256: str | None = None  # the whole payload's SHA-256 (hex); None in older rows
    kind: str | None = None  # why, as a word (storage.DEAD_LETTER_UNKNOWN_SITE); None: other
    site: str | None = None  # the site the submission named (kind unknown_site)
    format: str | None = None  # an HTTP device upload's wire format
    replayed_at: int | None = None  # when it was replayed into storage (µs); None: not yet

    @property
    def truncated(self) -> bool:
        """True when ``payload`` is only the start of what arrived."""
        return len(self.payload) < self.size


def list_dead_letters(
    *, conn: Connection, limit: int = 100, offset: int = 0, source: str | None = None,
    topic: str | None = None, with_payload: bool = True,
    leave_out_devices: Collection[str] | None = None,
) -> list[DeadLetter]:
    """Dead letters, newest first (of one source, of one topic, when given; not those of
    ``leave_out_devices``: devices at sites the person asking may not look at).

    Reads at most DEAD_LETTER_PAYLOAD_MAX bytes of each payload: rows stored before
    revision 0010 may hold a payload of any size whole, and a page of 100 such bodies of
    16 MiB read whole was over a gigabyte in the hub's memory. Without ``with_payload``
    no payload is read at all (``payload`` is empty; ``size`` and ``sha256`` still say
    what arrived).
    """
    c = dead_letters.c
    kept = DEAD_LETTER_PAYLOAD_MAX if with_payload else 0
    query = _dead_letters_of(
        select(c.uuid, c.received_at, c.source, c.device, c.reason, c.topic, c.kind, c.site,
               c.format, c.replayed_at,
               func.substr(c.payload, 1, kept, type_=LargeBinary).label("payload"),
               func.coalesce(c.payload_bytes, func.length(c.payload),
                             type_=BigInteger).label("size"),
               c.payload_sha256)
        .order_by(c.received_at.desc(), c.id.desc())
        .limit(limit)
        .offset(offset),
        source, topic, leave_out_devices,
    )
    return [
        # SQLite's substr() of an empty blob is NULL, not an empty blob.
        DeadLetter(r.uuid, r.received_at, r.source, r.device, r.reason, bytes(r.payload or b""),
                   r.topic, int(r.size), r.payload_sha256, r.kind, r.site, r.format,
                   r.replayed_at)
        for r in conn.execute(query)
    ]


def replayable_dead_letters(
    *, conn: Connection, kind: str, source: str | None = None, site: str | None = None,
    limit: int = 1000,
) -> list[DeadLetter]:
    """Dead letters of ``kind`` not yet replayed (of one source, naming one site, when
    given), oldest first, with their payloads' kept start."""
    c = dead_letters.c
    query = (
        select(c.uuid, c.received_at, c.source, c.device, c.reason, c.topic, c.kind, c.site,
               c.format, c.replayed_at,
               func.substr(c.payload, 1, DEAD_LETTER_PAYLOAD_MAX,
                           type_=LargeBinary).label("payload"),
               func.coalesce(c.payload_bytes, func.length(c.payload),
                             type_=BigInteger).label("size"),
               c.payload_sha256)
        .where(c.kind == kind, c.replayed_at.is_(None))
        .order_by(c.received_at, c.id)
        .limit(limit)
    )
    if source is not None:
        query = query.where(c.source == source)
    if site is not None:
        query = query.where(c.site == site)
    return [
        DeadLetter(r.uuid, r.received_at, r.source, r.device, r.reason, bytes(r.payload or b""),
                   r.topic, int(r.size), r.payload_sha256, r.kind, r.site, r.format,
                   r.replayed_at)
        for r in conn.execute(query)
    ]
