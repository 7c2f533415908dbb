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
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import chain
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
    select,
    update,
)

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

readings = Table(
    "readings",
    metadata,
    Column("series_id", Integer, ForeignKey("series.id", ondelete="CASCADE"), primary_key=True),
    Column("ts", BigInteger, primary_key=True),  # microseconds since the epoch, UTC
    Column("value", Float, nullable=False),
    Column("flags", SmallInteger, nullable=False, server_default="0"),
    sqlite_with_rowid=False,
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

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.dialect = engine.dialect.name
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

    def writer(self) -> BatchWriter:
        """A writer with its own connection, for the one thread that writes readings."""
        return BatchWriter(self.engine)


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
        else:
            kept = select(readings.c.ts).where(readings.c.series_id == into)
            conn.execute(delete(readings).where(readings.c.series_id == row.id,
                                                readings.c.ts.in_(kept)))
            conn.execute(update(readings).where(readings.c.series_id == row.id)
                         .values(series_id=into))
            conn.execute(delete(series).where(series.c.id == row.id))
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

    def __init__(self, engine: Engine) -> None:
        self._raw = engine.raw_connection()
        self._dbapi: Any = self._raw.driver_connection
        self._postgres = engine.dialect.name == "postgresql"

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
        conn = self._dbapi
        insert_one = self._insert_postgres if self._postgres else self._insert_sqlite
        ph = "%s" if self._postgres else "?"
        try:
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
            for hook in hooks:
                hook(cursor, "postgresql" if self._postgres else "sqlite")
            cursor.close()
            conn.commit()
        except BaseException:
            conn.rollback()
            raise
        return stored

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
