"""Where readings live: the tables of the readings domain and the fast write path.

Readings are stored compactly: a ``series`` row per (device, channel) carries the quantity,
unit and site once, and each reading is ``(series_id, ts, value, flags)`` keyed by
``(series_id, ts)``, a clustered key (``WITHOUT ROWID`` on SQLite) so a range of one series
is one contiguous scan. Storing a reading that is already stored changes nothing
(``INSERT OR IGNORE`` / ``ON CONFLICT DO NOTHING``), so retries and replays are safe.

The hot path bypasses the ORM and SQLAlchemy Core: :class:`BatchWriter` holds one DBAPI
connection and writes whole batches with multi-row ``INSERT ... VALUES`` statements on
SQLite (128 rows a statement: ~30% fewer instructions a row than the driver's
``executemany``, which binds, steps and resets once per row) and an ``unnest`` insert on
PostgreSQL (see ``docs/performance.md`` for why).

Each batch also journals, in its transaction, one span per series it wrote
(``reading_spans``): what a hub in a network sends up by (``labhub.network.up_readings``).
On PostgreSQL ``readings`` is partitioned by month of ``ts`` (migration 0019); the writers
make a month's partition before they write into it (:func:`ensure_partitions_dbapi`,
:func:`ensure_partitions`).
"""

from __future__ import annotations

import re
import threading
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import chain
from operator import itemgetter
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    Connection,
    Engine,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    SmallInteger,
    String,
    Table,
    Text,
    UniqueConstraint,
    delete,
    func,
    insert,
    literal,
    select,
    update,
)
from sqlalchemy.exc import DBAPIError

from sensors.samples import now_us

# Constraint and index names every domain's tables follow, so migrations can name them.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

metadata = MetaData(naming_convention=NAMING_CONVENTION)

# Integer autoincrement ids stay inside one hub's database; what leaves it (APIs, exports,
# sync) names a series by its stable (device, channel) strings.
series = Table(
    "series",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("device", String(200), nullable=False),
    Column("channel", String(200), nullable=False),
    Column("quantity", String(40), nullable=True),
    Column("unit", String(40), nullable=True),
    Column("site", String(100), nullable=True),
    Column("created_at", BigInteger, nullable=False),
    UniqueConstraint("device", "channel", name="uq_series_device_channel"),
)

MAX_TOPIC_CHARS = 1000  # a dead letter's topic; MQTT allows 65,535 bytes, nodes use ~50
# A dead letter keeps the first 64 KiB of what arrived, with the whole payload's size and
# SHA-256: enough to see what a device sent and to tell payloads apart. A 16 MiB bad upload
# kept whole went through SQLite's page cache and into the hub's memory every time a
# listing read it back, and the hub's resident memory stayed up.
DEAD_LETTER_PAYLOAD_MAX = 64 * 1024

# A dead letter's kind: readings naming a site that is not a site of the inventory's tree
# (replayable once the site exists).
DEAD_LETTER_UNKNOWN_SITE = "unknown_site"

FLAG_SUSPECT = 1  # value outside the plausible range of its quantity: kept, but flagged
# Taken in by a central while the hub that sent it had a clock off by more than the
# central's tolerance: its time may be wrong until a coordinator corrects it.
FLAG_CLOCK = 2

readings = Table(
    "readings",
    metadata,
    Column("series_id", Integer, ForeignKey("series.id", ondelete="CASCADE"), primary_key=True),
    Column("ts", BigInteger, primary_key=True),  # microseconds since the epoch, UTC
    Column("value", Float, nullable=False),
    Column("flags", SmallInteger, nullable=False, server_default="0"),
    sqlite_with_rowid=False,
)

# The readings' journal: what each committed batch wrote, one span per series, in the
# order they were committed (``seq``). A hub in a network sends its readings up by this
# journal (labhub.network.up_readings): a span names the series and a time range covering
# every reading the batch wrote to it (``rows`` of them, new or not), so the readings are
# read back from ``readings`` itself and the journal stays a few rows a batch.
reading_spans = Table(
    "reading_spans",
    metadata,
    Column("seq", Integer, primary_key=True, autoincrement=True),
    Column("series_id", Integer, nullable=False),
    Column("ts_min", BigInteger, nullable=False),
    Column("ts_max", BigInteger, nullable=False),
    Column("rows", Integer, nullable=False),
    Column("at", BigInteger, nullable=False),  # when it was committed (microseconds)
    sqlite_autoincrement=True,
)


# -- rollups (sensors.rollups) -----------------------------------------------------------
def _rollup_table(name: str) -> Table:
    """A table of aggregates, one row per series and time bucket (``start``, µs UTC): what
    its readings add up to. Keyed like ``readings``, so one series' range is one scan."""
    return Table(
        name,
        metadata,
        Column("series_id", Integer, ForeignKey("series.id", ondelete="CASCADE"),
               primary_key=True),
        Column("start", BigInteger, primary_key=True),
        Column("n", BigInteger, nullable=False),  # readings
        Column("total", Float, nullable=False),  # their sum (mean = total / n)
        Column("low", Float, nullable=False),
        Column("high", Float, nullable=False),
        Column("first_ts", BigInteger, nullable=False),
        Column("first_value", Float, nullable=False),
        Column("last_ts", BigInteger, nullable=False),
        Column("last_value", Float, nullable=False),
        Column("suspect", BigInteger, nullable=False),  # of them flagged FLAG_SUSPECT
        Column("clock", BigInteger, nullable=False),  # of them flagged FLAG_CLOCK
        sqlite_with_rowid=False,
    )


# Minutes live as long as the raw readings they sum (they make a chart's bucket edges
# cheap); hours and days are kept for ever. ``rollup_pruned``: of each hour, the part
# whose raw readings were pruned (a late reading into that hour adds to it).
rollup_minutes = _rollup_table("rollup_minutes")
rollup_hours = _rollup_table("rollup_hours")
rollup_days = _rollup_table("rollup_days")
rollup_pruned = _rollup_table("rollup_pruned")

# A series' rollups: present once its readings are rolled up; ``pruned_before``: its raw
# readings before this time (an hour's start, µs) are pruned (null: none yet).
rollup_series = Table(
    "rollup_series",
    metadata,
    Column("series_id", Integer, ForeignKey("series.id", ondelete="CASCADE"),
           primary_key=True),
    Column("pruned_before", BigInteger, nullable=True),
)

# Where the rollups are in the readings' journal: every span up to ``seq`` is rolled up.
rollup_state = Table(
    "rollup_state",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("seq", BigInteger, nullable=False),
)

dead_letters = Table(
    "dead_letters",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("uuid", String(36), nullable=False, unique=True),
    Column("received_at", BigInteger, nullable=False),
    Column("source", String(40), nullable=False),
    Column("device", String(200), nullable=True),
    Column("reason", Text, nullable=False),
    Column("payload", LargeBinary, nullable=False),
    # Where in its source it came from: the MQTT topic; null for other sources and for
    # rows older than revision 0009 (their topic is at the start of the reason).
    Column("topic", String(MAX_TOPIC_CHARS), nullable=True),
    # The payload as it arrived: its size in bytes and its SHA-256 (hex); ``payload`` holds
    # its first DEAD_LETTER_PAYLOAD_MAX bytes. Null in rows older than revision 0010, which
    # kept the payload whole.
    Column("payload_bytes", BigInteger, nullable=True),
    Column("payload_sha256", String(64), nullable=True),
    # Why, as a word a filter takes (DEAD_LETTER_UNKNOWN_SITE), the site the submission
    # named, and the wire format of an HTTP device upload: what a replay needs besides the
    # payload. Null for other reasons and in rows older than revision 0013.
    Column("kind", String(40), nullable=True),
    Column("site", String(100), nullable=True),
    Column("format", String(40), nullable=True),
    # When the dead letter was replayed into storage (µs); null while it was not.
    Column("replayed_at", BigInteger, nullable=True),
    Index("ix_dead_letters_received_at", "received_at"),
)

runs = Table(
    "runs",
    metadata,
    Column("id", String(36), primary_key=True),  # UUID: runs merge across hubs
    Column("title", String(200), nullable=False),
    Column("group_name", String(200), nullable=True),
    Column("site", String(100), nullable=True),
    Column("started_at", BigInteger, nullable=False),
    Column("stopped_at", BigInteger, nullable=True),
    Column("created_at", BigInteger, nullable=False),
    # The account name of the person who started it (a student's "my runs"); null: unknown.
    Column("started_by", String(200), nullable=True, index=True),
)

run_channels = Table(
    "run_channels",
    metadata,
    Column("run_id", String(36), ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True),
    Column("device", String(200), primary_key=True),
    # "*" records every channel of the device.
    Column("channel", String(200), primary_key=True),
)

run_notes = Table(
    "run_notes",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("run_id", String(36), ForeignKey("runs.id", ondelete="CASCADE"), nullable=False),
    Column("ts", BigInteger, nullable=False),
    Column("text", Text, nullable=False),
    Index("ix_run_notes_run_id_ts", "run_id", "ts"),
)


@dataclass(frozen=True, slots=True)
class SeriesRow:
    """A stored series: its local id and how its values are kept."""

    id: int
    device: str
    channel: str
    quantity: str | None
    unit: str | None
    site: str | None


class ReadingStore:
    """The readings domain's access to one database (SQLite or PostgreSQL)."""

    def __init__(self, engine: Engine, *, journal: bool = True) -> None:
        self.engine = engine
        self.dialect = engine.dialect.name
        self.journal = journal  # whether its writers keep the journal of spans
        self._series_lock = threading.Lock()

    def ensure_series(
        self,
        *,
        device: str,
        channel: str,
        quantity: str | None,
        unit: str | None,
        site: str | None,
    ) -> SeriesRow:
        """The series of (device, channel), created with these attributes if it is new."""
        with self._series_lock, self.engine.begin() as conn:
            row = conn.execute(
                select(series).where(series.c.device == device, series.c.channel == channel)
            ).first()
            if row is None:
                conn.execute(
                    insert(series).values(
                        device=device,
                        channel=channel,
                        quantity=quantity,
                        unit=unit,
                        site=site,
                        created_at=now_us(),
                    )
                )
                row = conn.execute(
                    select(series).where(series.c.device == device, series.c.channel == channel)
                ).one()
        return SeriesRow(row.id, row.device, row.channel, row.quantity, row.unit, row.site)

    def writer(self, *, journal: bool | None = None) -> BatchWriter:
        """A writer with its own connection, for the one thread that writes readings;
        ``journal=False``: one that keeps no journal of spans (a central's ingest; by
        default the store's own choice)."""
        return BatchWriter(self.engine, journal=self.journal if journal is None else journal)


@dataclass(frozen=True, slots=True)
class SeriesMoved:
    """What moving a device's series did: series moved, and series left where they were."""

    moved: int
    left: int


def move_device_series(*, conn: Connection, old: str, new: str) -> SeriesMoved:
    """Give device ``old``'s series to device ``new`` (the same board, found under two
    ids). A channel ``new`` already has takes ``old``'s readings into its own series
    (a reading at a time it already has is the same reading, stored once)."""
    moved = 0
    theirs = {r.channel: r.id for r in conn.execute(
        select(series.c.channel, series.c.id).where(series.c.device == new))}
    for row in conn.execute(select(series.c.id, series.c.channel)
                            .where(series.c.device == old)).all():
        into = theirs.get(row.channel)
        if into is None:
            conn.execute(update(series).where(series.c.id == row.id).values(device=new))
            journal_series(conn=conn, series_id=row.id)  # its readings, under the new name
        else:
            kept = select(readings.c.ts).where(readings.c.series_id == into)
            conn.execute(delete(readings).where(readings.c.series_id == row.id,
                                                readings.c.ts.in_(kept)))
            conn.execute(update(readings).where(readings.c.series_id == row.id)
                         .values(series_id=into))
            conn.execute(delete(series).where(series.c.id == row.id))
            journal_series(conn=conn, series_id=into)
        moved += 1
    left = conn.execute(
        select(func.count()).select_from(series).where(series.c.device == old)
    ).scalar_one()
    return SeriesMoved(moved, int(left))


def set_device_site(*, conn: Connection, device: str, site: str | None) -> int:
    """Place every series of ``device`` at ``site`` (the device moved): the number of
    series moved."""
    done = conn.execute(update(series).where(series.c.device == device).values(site=site))
    return int(done.rowcount)


# Rows in one SQLite INSERT: 128 rows (512 parameters, under the 999 of old SQLite builds)
# cost ~30% fewer instructions a row than executemany; 500 or 1,000 gain nothing more.
SQLITE_ROWS_PER_INSERT = 128
# The statements for 128, 64, ..., 1 rows: a batch's remainder goes in power-of-two
# pieces, so only these eight texts are ever prepared and each stays in the driver's cache.
_SQLITE_INSERTS = {
    size: "INSERT OR IGNORE INTO readings (series_id, ts, value, flags) VALUES "
    + ", ".join(["(?, ?, ?, ?)"] * size)
    for size in (2**k for k in range(SQLITE_ROWS_PER_INSERT.bit_length()))
}

# A reading row as written: (series_id, ts, value, flags).
ReadingRow = tuple[int, int, float, int]
# A dead-letter row as written: (uuid, received_at, source, device, reason, payload (its
# first DEAD_LETTER_PAYLOAD_MAX bytes), topic, payload_bytes, payload_sha256, kind, site,
# format).
DeadLetterRow = tuple[str, int, str, str | None, str, bytes, str | None, int, str,
                      str | None, str | None, str | None]


class BatchWriter:
    """Writes batches of reading rows and dead letters in one transaction per batch.

    Owned by a single thread. ``write`` returns, for each group of rows, how many were
    new (the rest were already stored), and commits before it returns: when it returns,
    the rows are durable.
    """

    def __init__(self, engine: Engine, *, journal: bool = True) -> None:
        self._raw = engine.raw_connection()
        self._dbapi: Any = self._raw.driver_connection
        self._postgres = engine.dialect.name == "postgresql"
        self._journal = journal
        self._database = _database_key(engine)

    def write(
        self,
        groups: Sequence[Sequence[ReadingRow]],
        dead: Sequence[DeadLetterRow] = (),
        hooks: Sequence[Callable[[Any, str], None]] = (),
    ) -> list[int]:
        """Store every group and dead letter; return the count of new rows per group.

        Each of ``hooks`` is called with the cursor and the dialect name after the rows
        and before COMMIT, so what it writes is durable together with them.

        All groups go in with one statement; only when that reports duplicates (a replay,
        rare) is it rolled back to a savepoint and redone group by group, to tell each
        submission how many of its readings were new.
        """
        try:
            return self._write_once(groups, dead, hooks)
        except Exception as exc:
            if not (self._postgres and _no_partition(exc)):
                raise
        # A month's partition this writer remembered is gone (dropped by an operator, or
        # the schema made again): it forgot them on the way out, and makes them now.
        return self._write_once(groups, dead, hooks)

    def _write_once(
        self,
        groups: Sequence[Sequence[ReadingRow]],
        dead: Sequence[DeadLetterRow],
        hooks: Sequence[Callable[[Any, str], None]],
    ) -> list[int]:
        """One try of :meth:`write`, in one transaction."""
        conn = self._dbapi
        insert_one = self._insert_postgres if self._postgres else self._insert_sqlite
        ph = "%s" if self._postgres else "?"
        bounds = _group_bounds(groups) if self._journal or self._postgres else []
        try:
            held = [b for b in bounds if b[0] <= b[1]]  # an empty group has none
            if self._postgres and held:
                ensure_partitions_dbapi(conn, self._database, min(b[0] for b in held),
                                        max(b[1] for b in held))
            cursor = conn.cursor()
            sizes = [len(g) for g in groups]
            total = sum(sizes)
            stored: list[int] | None = None
            if len(groups) > 1 and total:
                if not self._postgres and not conn.in_transaction:
                    # A SAVEPOINT outside a transaction starts one that its RELEASE
                    # commits: the dead letters and hooks after it would be committed
                    # apart from the readings (a crash in between split them).
                    cursor.execute("BEGIN")
                cursor.execute("SAVEPOINT labhub_batch")
                if insert_one(cursor, list(chain.from_iterable(groups))) == total:
                    stored = sizes
                    cursor.execute("RELEASE SAVEPOINT labhub_batch")
                else:
                    cursor.execute("ROLLBACK TO SAVEPOINT labhub_batch")
                    cursor.execute("RELEASE SAVEPOINT labhub_batch")
            if stored is None:
                stored = [insert_one(cursor, g) if g else 0 for g in groups]
            if dead:
                # A dead letter written again (a redelivered MQTT message, whose uuid is
                # derived from its delivery) is already stored: kept once, like readings.
                cursor.executemany(
                    "INSERT INTO dead_letters (uuid, received_at, source, device, reason, "
                    "payload, topic, payload_bytes, payload_sha256, kind, site, format) "
                    f"VALUES ({', '.join([ph] * 12)}) "
                    "ON CONFLICT (uuid) DO NOTHING",
                    dead,
                )
            if self._journal and any(stored):
                self._write_spans(cursor, groups, bounds, stored)
            for hook in hooks:
                hook(cursor, "postgresql" if self._postgres else "sqlite")
            cursor.close()
            conn.commit()
        except BaseException:
            conn.rollback()
            if self._postgres:
                forget_partitions(self._database)  # a partition dropped under us: look again
            raise
        return stored

    def _write_spans(self, cursor: Any, groups: Sequence[Sequence[ReadingRow]],
                     bounds: Sequence[tuple[int, int]], stored: Sequence[int]) -> None:
        """One span per series of the groups that stored something: the range of the
        groups' times that hold the series (see :func:`_group_bounds`), and its rows."""
        spans: dict[int, list[int]] = {}
        for group, (lo, hi), new in zip(groups, bounds, stored, strict=True):
            if not new:
                continue  # a replay: every row of it was journaled when it was first written
            for sid, count in Counter(map(_SERIES_OF, group)).items():
                span = spans.get(sid)
                if span is None:
                    spans[sid] = [lo, hi, count]
                else:
                    span[0] = min(span[0], lo)
                    span[1] = max(span[1], hi)
                    span[2] += count
        at = now_us()
        ph = "%s" if self._postgres else "?"
        if self._postgres:
            # Spans are committed in ``seq`` order: a second writer waits here until the
            # first commits, so a reader that sees span n+1 has seen every span before it
            # (a hole left behind is a rollback, for good). The lock is held from the spans'
            # insert to COMMIT only; a hub has one writer, so it is seldom waited for.
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", (SPANS_LOCK_KEY,))
        # One statement for the batch's spans (up to 128 at a time): a multi-row VALUES
        # costs SQLite half what executemany's step per row does.
        items = [(sid, lo, hi, n, at) for sid, (lo, hi, n) in spans.items()]
        for start in range(0, len(items), 128):
            piece = items[start:start + 128]
            cursor.execute(
                "INSERT INTO reading_spans (series_id, ts_min, ts_max, rows, at) VALUES "
                + ", ".join([f"({ph}, {ph}, {ph}, {ph}, {ph})"] * len(piece)),
                list(chain.from_iterable(piece)))

    @staticmethod
    def _insert_sqlite(cursor: Any, rows: Sequence[ReadingRow]) -> int:
        params = list(chain.from_iterable(rows))
        count = len(rows)
        size = SQLITE_ROWS_PER_INSERT
        start = stored = 0
        while start < count:
            while count - start < size:
                size //= 2
            cursor.execute(_SQLITE_INSERTS[size], params[start * 4:(start + size) * 4])
            stored += cursor.rowcount  # rows inserted; those already stored are ignored
            start += size
        return stored

    @staticmethod
    def _insert_postgres(cursor: Any, rows: Sequence[ReadingRow]) -> int:
        sids, tss, values, flags = zip(*rows, strict=True)
        cursor.execute(
            "INSERT INTO readings (series_id, ts, value, flags) "
            "SELECT * FROM unnest(%s::integer[], %s::bigint[], %s::float8[], %s::smallint[]) "
            "ON CONFLICT DO NOTHING",
            (list(sids), list(tss), list(values), list(flags)),
        )
        return int(cursor.rowcount)

    def close(self) -> None:
        """Give the connection back."""
        self._raw.close()


# -- the journal of spans ---------------------------------------------------------------

# pg_advisory_xact_lock's key around the spans' insert: "LHSPAN" in ASCII.
SPANS_LOCK_KEY = 0x4C4853_50414E
_SERIES_OF = itemgetter(0)
_TS_OF = itemgetter(1)


def _group_bounds(groups: Sequence[Sequence[ReadingRow]]) -> list[tuple[int, int]]:
    """``(min ts, max ts)`` of each group (``(0, -1)`` for an empty one).

    A span covers its series' rows with the range of the whole group that holds them:
    a group is one submission (an upload, a message, a serial line's samples), whose
    channels share their times, so the range is the series' own one there, and taking
    it costs two C-level passes instead of a Python loop over every row."""
    out = []
    for group in groups:
        if group:
            times = list(map(_TS_OF, group))
            out.append((min(times), max(times)))
        else:
            out.append((0, -1))
    return out


@dataclass(frozen=True, slots=True)
class Span:
    """One series' readings written by one batch: every one has ``ts_min <= ts <= ts_max``."""

    seq: int
    series_id: int
    ts_min: int
    ts_max: int
    rows: int
    at: int


def spans_after(*, conn: Connection, seq: int, limit: int) -> list[Span]:
    """Up to ``limit`` spans after position ``seq`` (``seq`` itself excluded), in order.

    Spans are committed in ``seq`` order on both databases (one writer at a time on
    SQLite, an advisory lock on PostgreSQL), so nothing is ever committed behind a span
    already seen."""
    rows = conn.execute(
        select(reading_spans).where(reading_spans.c.seq > seq)
        .order_by(reading_spans.c.seq).limit(limit)
    ).all()
    return [Span(r.seq, r.series_id, r.ts_min, r.ts_max, r.rows, r.at) for r in rows]


def journal_series(*, conn: Connection, series_id: int) -> None:
    """Journal one span covering every reading of a series (its readings changed hands:
    a device renamed or merged), so a hub in a network sends them again as they are now."""
    if conn.dialect.name == "postgresql":
        conn.execute(select(func.pg_advisory_xact_lock(SPANS_LOCK_KEY)))
    conn.execute(insert(reading_spans).from_select(
        ["series_id", "ts_min", "ts_max", "rows", "at"],
        select(readings.c.series_id, func.min(readings.c.ts), func.max(readings.c.ts),
               func.count(), literal(now_us(), BigInteger))
        .where(readings.c.series_id == series_id).group_by(readings.c.series_id)))


def compact_spans(*, conn: Connection, before_seq: int) -> int:
    """Merge the spans before ``before_seq`` (those a central acknowledged) into one span
    per series and day (UTC, of their first time), each kept at the largest ``seq`` of
    what it merges; the number of spans removed.

    A live hub journals about one span per series per batch: far more rows than a week's
    history needs. A merged span covers every reading its parts covered, and sits at the
    last of their positions, so a reader sent back before any part (a central restored
    from an older backup) reads it all again: more than it lost, never less."""
    day = 86_400 * US_PER_S
    groups = conn.execute(
        select(func.max(reading_spans.c.seq).label("keep"), func.count().label("n"),
               func.min(reading_spans.c.ts_min).label("lo"),
               func.max(reading_spans.c.ts_max).label("hi"),
               func.sum(reading_spans.c.rows).label("rows"))
        .where(reading_spans.c.seq < before_seq)
        .group_by(reading_spans.c.series_id, reading_spans.c.ts_min // day)
        .having(func.count() > 1)
    ).all()
    removed = 0
    for g in groups:
        keep = conn.execute(select(reading_spans.c.series_id, reading_spans.c.ts_min)
                            .where(reading_spans.c.seq == g.keep)).one()
        removed += conn.execute(delete(reading_spans).where(
            reading_spans.c.seq < g.keep, reading_spans.c.series_id == keep.series_id,
            reading_spans.c.ts_min // day == keep.ts_min // day,
            reading_spans.c.seq < before_seq)).rowcount
        conn.execute(update(reading_spans).where(reading_spans.c.seq == g.keep)
                     .values(ts_min=g.lo, ts_max=g.hi, rows=int(g.rows)))
    return removed


def span_rows_after(*, conn: Connection, seq: int) -> int:
    """The rows the spans after ``seq`` wrote (a readings count, replays counted once)."""
    return int(conn.execute(
        select(func.coalesce(func.sum(reading_spans.c.rows), 0))
        .where(reading_spans.c.seq > seq)
    ).scalar_one())


def span_readings(*, conn: Connection, series_id: int, ts_min: int, ts_max: int,
                  after_ts: int | None = None,
                  limit: int | None = None) -> list[tuple[int, float, int]]:
    """``(ts, value, flags)`` of a series in ``[ts_min, ts_max]`` (a span, or several of
    one series) and after ``after_ts`` if given, in ``ts`` order, up to ``limit``."""
    low = ts_min if after_ts is None else max(ts_min, after_ts + 1)
    query = (select(readings.c.ts, readings.c.value, readings.c.flags)
             .where(readings.c.series_id == series_id, readings.c.ts >= low,
                    readings.c.ts <= ts_max)
             .order_by(readings.c.ts))
    if limit is not None:
        query = query.limit(limit)
    return [(r[0], r[1], r[2]) for r in conn.execute(query)]


# -- PostgreSQL: the readings table partitioned by month ---------------------------------

PARTITION_PREFIX = "readings_p"
_PARTITION_NAME = re.compile(r"readings_p\d{6}")
_KNOWN_PARTITIONS: dict[str, set[str]] = {}  # by database: partitions seen to exist
_PARTITIONS_LOCK = threading.Lock()
US_PER_S = 1_000_000


def is_readings_partition(name: str) -> bool:
    """Whether a table's name is one of the readings' monthly partitions."""
    return _PARTITION_NAME.fullmatch(name) is not None


def _database_key(engine: Engine) -> str:
    return engine.url.render_as_string(hide_password=True)


def _month_start_us(year: int, month: int) -> int:
    return int(datetime(year, month, 1, tzinfo=UTC).timestamp()) * US_PER_S


def partition_months(ts_min: int, ts_max: int) -> list[tuple[str, int, int]]:
    """``(name, start, end)`` of each month's partition that ``[ts_min, ts_max]`` touches:
    rows with ``start <= ts < end`` (microseconds, UTC)."""
    first = datetime.fromtimestamp(ts_min // US_PER_S, tz=UTC)
    last = datetime.fromtimestamp(ts_max // US_PER_S, tz=UTC)
    year, month = first.year, first.month
    out = []
    while (year, month) <= (last.year, last.month):
        nxt = (year + month // 12, month % 12 + 1)
        out.append((f"{PARTITION_PREFIX}{year:04d}{month:02d}", _month_start_us(year, month),
                    _month_start_us(*nxt)))
        year, month = nxt
    return out


def partition_ddl(name: str, start: int, end: int) -> str:
    """The statement that creates one month's partition of ``readings``."""
    return (f"CREATE TABLE IF NOT EXISTS {name} PARTITION OF readings "
            f"FOR VALUES FROM ({start}) TO ({end})")


def _no_partition(exc: BaseException) -> bool:
    """Whether PostgreSQL refused a row for want of its month's partition."""
    return getattr(exc, "sqlstate", None) == "23514" and "no partition" in str(exc)


def forget_partitions(database: str) -> None:
    """Forget the partitions seen in ``database`` (one may have been dropped)."""
    with _PARTITIONS_LOCK:
        _KNOWN_PARTITIONS.pop(database, None)


def _missing_partitions(database: str, ts_min: int, ts_max: int) -> list[tuple[str, int, int]]:
    with _PARTITIONS_LOCK:
        known = _KNOWN_PARTITIONS.get(database, set())
        return [m for m in partition_months(ts_min, ts_max) if m[0] not in known]


def _known(database: str, name: str) -> None:
    with _PARTITIONS_LOCK:
        _KNOWN_PARTITIONS.setdefault(database, set()).add(name)


def ensure_partitions_dbapi(dbapi: Any, database: str, ts_min: int, ts_max: int) -> None:
    """Make sure the months of ``[ts_min, ts_max]`` have their partitions, on an idle
    psycopg connection: each is created and committed in its own transaction, before the
    rows that need it are written (a process that lost the race to create one finds it
    made). Partitions seen once are remembered, so a batch usually costs no query."""
    for name, start, end in _missing_partitions(database, ts_min, ts_max):
        cursor = dbapi.cursor()
        try:
            cursor.execute("SELECT to_regclass(%s) IS NOT NULL", (name,))
            if not cursor.fetchone()[0]:
                cursor.execute(partition_ddl(name, start, end))
            dbapi.commit()
        except Exception:
            dbapi.rollback()
            cursor.execute("SELECT to_regclass(%s) IS NOT NULL", (name,))
            made = cursor.fetchone()[0]
            dbapi.rollback()
            if not made:
                raise
        finally:
            cursor.close()
        _known(database, name)


def ensure_partitions(conn: Connection, ts_min: int, ts_max: int) -> None:
    """The same inside a transaction of ``conn`` (a central applying a batch): a missing
    partition is created in a savepoint, and remembered only once another transaction
    finds it committed (this one may still roll back). Two workers that make the same
    month at once: the second waits on the first's lock of ``readings``, and its statement
    fails once the first commits; it finds the partition made and goes on."""
    if conn.dialect.name != "postgresql":
        return
    database = _database_key(conn.engine)
    exists = "SELECT to_regclass('{}') IS NOT NULL"
    for name, start, end in _missing_partitions(database, ts_min, ts_max):
        if conn.exec_driver_sql(exists.format(name)).scalar_one():
            _known(database, name)
            continue
        try:
            with conn.begin_nested():
                conn.exec_driver_sql(partition_ddl(name, start, end))
        except DBAPIError:
            if not conn.exec_driver_sql(exists.format(name)).scalar_one():
                raise
            _known(database, name)  # another transaction made it, and committed it
