"""The readings' up stream: the readings journal's spans after a position, columnar and
compressed (:mod:`labhub.network.codec`).

**Positions.** The hub's readings journal (``reading_spans`` in :mod:`sensors.storage`)
numbers every batch's span of each series by ``seq``, committed in that order. A position
of this stream is one of:

- ``[]``: nothing sent yet;
- ``[seq]``: every span before ``seq`` was sent, and nothing of the ones from ``seq`` on;
- ``[seq, ts]``: every span before ``seq`` was sent, and of span ``seq`` every reading at
  or before ``ts`` (µs): a span too large for one section is sent in parts.

They compare as the protocol compares positions (element by element): ``[seq] <
[seq, ts] < [seq + 1]``. A section sends whole spans, from the first not sent to about
``budget_bytes``, and moves to ``[last + 1]``; or a part of one large span, and moves to
``[seq, ts of its last reading]`` (``[seq + 1]`` once its last part went).

**What is sent.** The readings of a span are read back from ``readings`` (by series and
time range): the journal holds ranges, not copies. The spans of one series in a section go
together as one range, so a station's many small spans cost one read; a reading another
span also covers may go twice, which the central's keys make harmless.

**The central** (:meth:`ReadingsStream.apply`) keeps a hub's device ``d`` of lab ``s`` as
device ``s/d`` (:func:`labhub.network.protocol.network_device`), its series at site ``s``,
inserts the readings ``ON CONFLICT DO NOTHING`` (a replay adds nothing), flags them
:data:`sensors.storage.FLAG_CLOCK` while the hub's clock is off by more than the central's
tolerance, and adds the new ones to ``network_daily`` by their day (UTC).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from itertools import chain
from typing import Any

from sqlalchemy import Connection, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from labhub.network.codec import SeriesReadings, decode, encode
from labhub.network.protocol import (
    CODEC_READINGS,
    Position,
    ProtocolError,
    Section,
    network_device,
)
from labhub.network.streams import FromHub, UpStream
from labhub.network.tables import network_daily
from sensors.samples import now_us
from sensors.storage import (
    FLAG_CLOCK,
    Span,
    compact_spans,
    ensure_partitions,
    series,
    span_readings,
    span_rows_after,
    spans_after,
)

NAME = "readings"
# Bytes a reading takes on the wire, to size a first try at a section (a station's week
# measured ~1.3-2.5: bench/sync.py); a section over budget is made again, smaller.
GUESS_BYTES_PER_READING = 2
MAX_SPANS = 50_000  # spans looked at for one section (a week of a busy hub's batches)
TRIES = 4
US_PER_DAY = 86_400_000_000
SQLITE_ROWS_PER_INSERT = 200  # 800 parameters, under the 999 of old SQLite builds


def parse_position(position: Position) -> tuple[int, int | None]:
    """``(first span not wholly sent, ts sent up to in it or None)`` of a position."""
    if not position:
        return 1, None
    if len(position) == 1:
        return position[0], None
    if len(position) == 2:
        return position[0], position[1]
    raise ProtocolError(f"a readings position is [], [seq] or [seq, ts], not {position}")


class ReadingsStream:
    """The ``readings`` up stream (see the module's text)."""

    name = NAME

    def compact(self, conn: Connection, acknowledged: Position) -> int:
        """Hub, after a contact: :func:`compact` up to what the central acknowledged."""
        return compact(conn, acknowledged)

    # -- the hub ---------------------------------------------------------------------------

    def collect(self, conn: Connection, after: Position, budget_bytes: int) -> Section | None:
        seq, after_ts = parse_position(after)
        spans = spans_after(conn=conn, seq=seq - 1, limit=MAX_SPANS)
        if not spans:
            return None
        target = max(1, budget_bytes // GUESS_BYTES_PER_READING)
        section = None
        for _ in range(TRIES):
            section = self._section(conn, after, spans, after_ts if spans[0].seq == seq
                                    else None, target)
            if len(section.data) <= budget_bytes or section.count <= 1:
                return section
            target = max(1, int(section.count * budget_bytes / len(section.data) * 0.9))
        return section

    def _section(self, conn: Connection, after: Position, spans: Sequence[Span],
                 first_after: int | None, target: int) -> Section:
        chosen: list[Span] = []
        total = 0
        for span in spans:
            if chosen and total + span.rows > target:
                break
            chosen.append(span)
            total += span.rows
        names = _series_names(conn, {s.series_id for s in chosen})
        if len(chosen) == 1 and chosen[0].rows > target:
            span = chosen[0]  # a large span: a part of it
            rows = span_readings(conn=conn, series_id=span.series_id, ts_min=span.ts_min,
                                 ts_max=span.ts_max, after_ts=first_after, limit=target + 1)
            more = len(rows) > target
            rows = rows[:target]
            to = [span.seq, rows[-1][0]] if more else [span.seq + 1]
            one = _series(names, span.series_id, rows) if rows else None
            out = [one] if one is not None else []
        else:
            ranges: dict[int, list[int]] = {}
            for i, span in enumerate(chosen):
                low = span.ts_min
                if i == 0 and first_after is not None:
                    low = max(low, first_after + 1)
                if low > span.ts_max:
                    continue
                bounds = ranges.get(span.series_id)
                if bounds is None:
                    ranges[span.series_id] = [low, span.ts_max]
                else:
                    bounds[0] = min(bounds[0], low)
                    bounds[1] = max(bounds[1], span.ts_max)
            out = []
            for sid, (low, high) in ranges.items():
                rows = span_readings(conn=conn, series_id=sid, ts_min=low, ts_max=high)
                got = _series(names, sid, rows) if rows else None
                if got is not None:
                    out.append(got)
            to = [chosen[-1].seq + 1]
        count = sum(len(s.ts) for s in out)
        return Section(stream=NAME, codec=CODEC_READINGS, start=list(after), to=to,
                       count=count, data=encode(out))

    def backlog(self, conn: Connection, after: Position) -> int:
        seq, _ = parse_position(after)
        return span_rows_after(conn=conn, seq=seq - 1)

    # -- the central -----------------------------------------------------------------------

    def apply(self, conn: Connection, hub: FromHub, section: Section) -> int:
        if section.codec != CODEC_READINGS:
            raise ProtocolError(f"the readings section's codec is {section.codec!r}, not "
                                f"{CODEC_READINGS!r}")
        got = decode(section.data)
        if not got:
            return 0
        ids = _central_series(conn, hub.site, got)
        sids: list[int] = []
        tss: list[int] = []
        values: list[float] = []
        flags: list[int] = []
        for s, sid in zip(got, ids, strict=True):
            sids.extend([sid] * len(s.ts))
            tss.extend(s.ts)
            values.extend(s.values)
            flags.extend([f | FLAG_CLOCK for f in s.flags] if hub.clock_suspect else s.flags)
        if not tss:
            return 0
        if conn.dialect.name == "postgresql":
            ensure_partitions(conn, min(tss), max(tss))
            return _insert_postgres(conn, hub.site, sids, tss, values, flags)
        return _insert_sqlite(conn, hub.site, list(zip(sids, tss, values, flags, strict=True)))


def compact(conn: Connection, acknowledged: Position) -> int:
    """Hub: merge the journal's spans the central acknowledged (before ``acknowledged``)
    into one per series and day (:func:`sensors.storage.compact_spans`); call it in a
    transaction after a contact. The number of spans removed."""
    seq, _ = parse_position(acknowledged)
    return compact_spans(conn=conn, before_seq=seq)


def _series_names(conn: Connection, ids: set[int]) -> dict[int, tuple[str, str, str | None,
                                                                       str | None]]:
    rows = conn.execute(select(series.c.id, series.c.device, series.c.channel,
                               series.c.quantity, series.c.unit)
                        .where(series.c.id.in_(sorted(ids)))).all()
    return {r.id: (r.device, r.channel, r.quantity, r.unit) for r in rows}


def _series(names: dict[int, tuple[str, str, str | None, str | None]], sid: int,
            rows: list[tuple[int, float, int]]) -> SeriesReadings | None:
    name = names.get(sid)
    if name is None:  # the series was deleted since: its readings went with it
        return None
    ts, values, flags = (list(c) for c in zip(*rows, strict=True))
    return SeriesReadings(name[0], name[1], name[2], name[3], ts, values, flags)


def _central_series(conn: Connection, site: str, got: Sequence[SeriesReadings]) -> list[int]:
    """The central's series id of each of ``got``, made (at ``site``) if new."""
    wanted = {(network_device(site, s.device), s.channel): s for s in got}
    devices = sorted({d for d, _ in wanted})

    def known() -> dict[tuple[str, str], int]:
        return {(r.device, r.channel): r.id for r in conn.execute(
            select(series.c.id, series.c.device, series.c.channel)
            .where(series.c.device.in_(devices)))}

    ids = known()
    missing = [key for key in wanted if key not in ids]
    if missing:
        make = pg_insert if conn.dialect.name == "postgresql" else sqlite_insert
        at = now_us()
        conn.execute(make(series).values([
            {"device": d, "channel": c, "quantity": wanted[(d, c)].quantity,
             "unit": wanted[(d, c)].unit, "site": site, "created_at": at}
            for d, c in missing]).on_conflict_do_nothing(index_elements=["device", "channel"]))
        ids = known()
    return [ids[(network_device(site, s.device), s.channel)] for s in got]


_DAY = US_PER_DAY
# The section's rows go by binary COPY into a temporary table of the connection (made once,
# emptied at each commit), then into readings with one INSERT ... SELECT: the COPY costs the
# central ~10x less CPU than binding four arrays for unnest (bench/sync.py).
_POSTGRES_STAGE = (
    "CREATE TEMPORARY TABLE IF NOT EXISTS readings_in (series_id integer, ts bigint, "
    "value float8, flags smallint) ON COMMIT DELETE ROWS"
)
_POSTGRES_INSERT = (
    "WITH ins AS ("
    " INSERT INTO readings (series_id, ts, value, flags)"
    " SELECT series_id, ts, value, flags FROM readings_in"
    " ON CONFLICT DO NOTHING RETURNING ts),"
    f" days AS (SELECT CASE WHEN ts >= 0 THEN ts / {_DAY} ELSE (ts + 1) / {_DAY} - 1 END"
    "  AS day, count(*) AS n FROM ins GROUP BY 1),"
    " counted AS (INSERT INTO network_daily (site, day, readings)"
    "  SELECT %s, day, n FROM days"
    "  ON CONFLICT (site, day) DO UPDATE SET readings = network_daily.readings"
    "  + excluded.readings)"
    " SELECT coalesce(sum(n), 0) FROM days"
)


_POSTGRES_PLAIN_INSERT = (
    "INSERT INTO readings (series_id, ts, value, flags) "
    "SELECT series_id, ts, value, flags FROM readings_in"
)
_POSTGRES_COUNT_ALL = (
    f"WITH days AS (SELECT CASE WHEN ts >= 0 THEN ts / {_DAY} ELSE (ts + 1) / {_DAY} - 1 END"
    " AS day, count(*) AS n FROM readings_in GROUP BY 1),"
    " counted AS (INSERT INTO network_daily (site, day, readings)"
    "  SELECT %s, day, n FROM days"
    "  ON CONFLICT (site, day) DO UPDATE SET readings = network_daily.readings"
    "  + excluded.readings)"
    " SELECT coalesce(sum(n), 0) FROM days"
)


def _insert_postgres(conn: Connection, site: str, sids: list[int], tss: list[int],
                     values: list[float], flags: list[int]) -> int:
    """COPY into the staging table, then into readings: a plain INSERT first (a section
    is new readings almost always, and ``ON CONFLICT`` costs every row a speculative
    insertion), and only if some were stored before, again with ``ON CONFLICT DO NOTHING``
    counting the new ones. Either way the new ones are counted by day."""
    import psycopg  # the central's driver: a hub on SQLite never loads it (9 MB)

    dbapi: Any = conn.connection.driver_connection
    with dbapi.cursor() as cursor:
        cursor.execute(_POSTGRES_STAGE)
        cursor.execute("TRUNCATE readings_in")  # a section applied twice in one transaction
        with cursor.copy("COPY readings_in (series_id, ts, value, flags) FROM STDIN "
                         "(FORMAT BINARY)") as copy:
            copy.set_types(["int4", "int8", "float8", "int2"])
            for row in zip(sids, tss, values, flags, strict=True):
                copy.write_row(row)
        cursor.execute("SAVEPOINT labhub_readings_in")
        try:
            cursor.execute(_POSTGRES_PLAIN_INSERT)
        except psycopg.errors.UniqueViolation:
            cursor.execute("ROLLBACK TO SAVEPOINT labhub_readings_in")
            cursor.execute(_POSTGRES_INSERT, (site,))
        else:
            cursor.execute("RELEASE SAVEPOINT labhub_readings_in")
            cursor.execute(_POSTGRES_COUNT_ALL, (site,))
        return int(cursor.fetchone()[0])


def _insert_sqlite(conn: Connection, site: str,
                   rows: list[tuple[int, int, float, int]]) -> int:
    days: Counter[int] = Counter()
    for start in range(0, len(rows), SQLITE_ROWS_PER_INSERT):
        piece = rows[start:start + SQLITE_ROWS_PER_INSERT]
        sql = ("INSERT OR IGNORE INTO readings (series_id, ts, value, flags) VALUES "
               + ", ".join(["(?, ?, ?, ?)"] * len(piece)) + " RETURNING ts")
        for (ts,) in conn.exec_driver_sql(sql, tuple(chain.from_iterable(piece))):
            days[ts // US_PER_DAY] += 1
    if days:
        make = sqlite_insert(network_daily)
        conn.execute(make.values([{"site": site, "day": d, "readings": n}
                                  for d, n in sorted(days.items())])
                     .on_conflict_do_update(index_elements=["site", "day"],
                                            set_={"readings": network_daily.c.readings
                                                  + make.excluded.readings}))
    return sum(days.values())


UP: tuple[UpStream, ...] = (ReadingsStream(),)
