"""The readings' journal of spans (sensors.storage) and, on PostgreSQL, the readings table partitioned by time.

``reading_spans`` is the journal a hub sends its readings up by. Every series that holds
readings gets one span covering them all, so a hub that joins a network after this
migration sends its whole history.

On PostgreSQL ``readings`` becomes a table partitioned by range of ``ts``, one partition a
month (``readings_pYYYYMM``), with the same primary key, foreign key and ``ON CONFLICT``
behaviour. The months of the stored readings and the next three get their partitions here;
the writers make later ones before they need them. There is no DEFAULT partition: rows
there would have to be moved out before their month's partition could be made (making it
scans the default and fails if the month is there), and every new month's partition would
have to scan it; a row with no partition is an error the writer never lets happen.
SQLite is unchanged.

Revision ID: 0019_reading_spans
Revises: 0018_network
Create Date: 2026-12-05
"""

from __future__ import annotations

import time

import sqlalchemy as sa
from alembic import op

from sensors.storage import is_readings_partition, partition_ddl, partition_months

revision = "0019_reading_spans"
down_revision = "0018_network"
branch_labels = None
depends_on = None

_MONTH_AHEAD_US = 3 * 31 * 86_400 * 1_000_000


def upgrade() -> None:
    op.create_table(
        "reading_spans",
        sa.Column("seq", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("series_id", sa.Integer(), nullable=False),
        sa.Column("ts_min", sa.BigInteger(), nullable=False),
        sa.Column("ts_max", sa.BigInteger(), nullable=False),
        sa.Column("rows", sa.Integer(), nullable=False),
        sa.Column("at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("seq", name="pk_reading_spans"),
        sqlite_autoincrement=True,
    )
    now = int(time.time() * 1_000_000)
    op.execute(
        "INSERT INTO reading_spans (series_id, ts_min, ts_max, rows, at) "
        f"SELECT series_id, min(ts), max(ts), count(*), {now} FROM readings "
        "GROUP BY series_id ORDER BY series_id"
    )
    if op.get_bind().dialect.name == "postgresql":
        _partition_readings(now)


def _partition_readings(now: int) -> None:
    bind = op.get_bind()
    op.execute("ALTER TABLE readings RENAME TO readings_unpartitioned")
    op.execute("ALTER TABLE readings_unpartitioned RENAME CONSTRAINT pk_readings "
               "TO pk_readings_unpartitioned")
    op.execute("ALTER TABLE readings_unpartitioned RENAME CONSTRAINT "
               "fk_readings_series_id_series TO fk_readings_unpartitioned_series")
    op.execute(
        "CREATE TABLE readings ("
        "series_id INTEGER NOT NULL, ts BIGINT NOT NULL, value FLOAT NOT NULL, "
        "flags SMALLINT DEFAULT '0' NOT NULL, "
        "CONSTRAINT pk_readings PRIMARY KEY (series_id, ts), "
        "CONSTRAINT fk_readings_series_id_series FOREIGN KEY(series_id) "
        "REFERENCES series (id) ON DELETE CASCADE"
        ") PARTITION BY RANGE (ts)"
    )
    low, high = bind.execute(sa.text(
        "SELECT min(ts), max(ts) FROM readings_unpartitioned")).one()
    low = now if low is None else min(low, now)
    high = max(high or now, now + _MONTH_AHEAD_US)
    for name, start, end in partition_months(low, high):
        op.execute(partition_ddl(name, start, end))
    op.execute("INSERT INTO readings SELECT series_id, ts, value, flags "
               "FROM readings_unpartitioned")
    op.execute("DROP TABLE readings_unpartitioned")


def downgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name == "postgresql":
        op.execute("ALTER TABLE readings RENAME TO readings_partitioned")
        op.execute("ALTER TABLE readings_partitioned RENAME CONSTRAINT pk_readings "
                   "TO pk_readings_partitioned")
        op.execute("ALTER TABLE readings_partitioned RENAME CONSTRAINT "
                   "fk_readings_series_id_series TO fk_readings_partitioned_series")
        op.create_table(
            "readings",
            sa.Column("series_id", sa.Integer(), nullable=False),
            sa.Column("ts", sa.BigInteger(), nullable=False),
            sa.Column("value", sa.Float(), nullable=False),
            sa.Column("flags", sa.SmallInteger(), server_default="0", nullable=False),
            sa.ForeignKeyConstraint(["series_id"], ["series.id"],
                                    name="fk_readings_series_id_series", ondelete="CASCADE"),
            sa.PrimaryKeyConstraint("series_id", "ts", name="pk_readings"),
        )
        op.execute("INSERT INTO readings SELECT series_id, ts, value, flags "
                   "FROM readings_partitioned")
        names = [n for n in sa.inspect(bind).get_table_names() if is_readings_partition(n)]
        for name in names:
            op.execute(f"DROP TABLE IF EXISTS {name}")
        op.execute("DROP TABLE readings_partitioned")
    op.drop_table("reading_spans")
