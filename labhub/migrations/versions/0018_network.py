"""The network of hubs (``labhub.network``): the central's tables (enrolled hubs, their
enrolment tokens, acknowledged positions, batches as they arrive and as applied, daily
counts, clock corrections, conflicts), the hub's membership, and the hub's outbox.

The outbox is written by triggers, so the domains that write events, runs and notes know
nothing of it: every insert into ``events``, ``runs`` and ``run_notes`` (and every update
of a run: it stops) adds ``(stream, key)`` at the next ``seq``. A central (a row in
``network_central``) writes nothing there. What the hub held before this migration goes
into the outbox too, in the order it was written, so a hub that joins later sends it all.

Revision ID: 0018_network
Revises: 0017_scan_receipts
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0018_network"
down_revision = "0017_scan_receipts"
branch_labels = None
depends_on = None

# (trigger, table, stream, key column, event)
_TRIGGERS = (
    ("sync_outbox_events", "events", "events", "uuid", "INSERT"),
    ("sync_outbox_runs", "runs", "runs", "id", "INSERT"),
    ("sync_outbox_runs_update", "runs", "runs", "id", "UPDATE"),
    ("sync_outbox_notes", "run_notes", "notes", "id", "INSERT"),
)
_SQLITE_NOW_US = "CAST((julianday('now') - 2440587.5) * 86400000000 AS INTEGER)"
_POSTGRES_NOW_US = "(extract(epoch from clock_timestamp()) * 1000000)::bigint"


def _tables() -> None:
    op.create_table(
        "network_hubs",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("site", sa.String(64), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("credential_hash", sa.String(64), nullable=False),
        sa.Column("enrolled_at", sa.BigInteger(), nullable=False),
        sa.Column("enrolled_by", sa.String(200), nullable=False),
        sa.Column("revoked_at", sa.BigInteger(), nullable=True),
        sa.Column("replaced_by", sa.String(36), nullable=True),
        sa.Column("last_contact_at", sa.BigInteger(), nullable=True),
        sa.Column("version", sa.String(40), nullable=True),
        sa.Column("uptime_s", sa.BigInteger(), nullable=True),
        sa.Column("free_disk_bytes", sa.BigInteger(), nullable=True),
        sa.Column("backlog", sa.BigInteger(), nullable=True),
        sa.Column("devices_online", sa.Integer(), nullable=True),
        sa.Column("dead_letters", sa.BigInteger(), nullable=True),
        sa.Column("clock_offset_us", sa.BigInteger(), nullable=True),
        sa.Column("health", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_network_hubs"),
        sa.UniqueConstraint("credential_hash", name="uq_network_hubs_credential_hash"),
    )
    op.create_index("ix_network_hubs_site", "network_hubs", ["site"])
    op.create_table(
        "network_enrolments",
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("site", sa.String(64), nullable=False),
        sa.Column("token_hash", sa.String(64), nullable=False),
        sa.Column("created_by", sa.String(200), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("expires_at", sa.BigInteger(), nullable=False),
        sa.Column("used_at", sa.BigInteger(), nullable=True),
        sa.Column("used_by_hub", sa.String(36), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_network_enrolments"),
        sa.UniqueConstraint("token_hash", name="uq_network_enrolments_token_hash"),
    )
    op.create_table(
        "network_positions",
        sa.Column("hub_id", sa.String(36), nullable=False),
        sa.Column("stream", sa.String(40), nullable=False),
        sa.Column("position", sa.Text(), nullable=False),
        sa.Column("updated_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("hub_id", "stream", name="pk_network_positions"),
    )
    op.create_table(
        "network_upload_parts",
        sa.Column("batch_id", sa.String(36), nullable=False),
        sa.Column("offset", sa.BigInteger(), nullable=False),
        sa.Column("hub_id", sa.String(36), nullable=False),
        sa.Column("total", sa.BigInteger(), nullable=False),
        sa.Column("data", sa.LargeBinary(), nullable=False),
        sa.Column("received_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("batch_id", "offset", name="pk_network_upload_parts"),
    )
    op.create_table(
        "network_batches",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("hub_id", sa.String(36), nullable=False),
        sa.Column("applied_at", sa.BigInteger(), nullable=False),
        sa.Column("bytes", sa.BigInteger(), nullable=False),
        sa.Column("items", sa.BigInteger(), nullable=False),
        sa.Column("positions", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_network_batches"),
    )
    op.create_index("ix_network_batches_hub_id_applied_at", "network_batches",
                    ["hub_id", "applied_at"])
    op.create_table(
        "network_daily",
        sa.Column("site", sa.String(64), nullable=False),
        sa.Column("day", sa.Integer(), nullable=False),
        sa.Column("readings", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("batches", sa.Integer(), server_default="0", nullable=False),
        sa.Column("bytes", sa.BigInteger(), server_default="0", nullable=False),
        sa.PrimaryKeyConstraint("site", "day", name="pk_network_daily"),
    )
    op.create_table(
        "network_clock_corrections",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("site", sa.String(64), nullable=False),
        sa.Column("from_us", sa.BigInteger(), nullable=False),
        sa.Column("to_us", sa.BigInteger(), nullable=False),
        sa.Column("shift_us", sa.BigInteger(), nullable=False),
        sa.Column("readings", sa.BigInteger(), nullable=False),
        sa.Column("by", sa.String(200), nullable=False),
        sa.Column("at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_network_clock_corrections"),
    )
    op.create_table(
        "network_conflicts",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("site", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(40), nullable=False),
        sa.Column("key", sa.String(64), nullable=False),
        sa.Column("kept", sa.Text(), nullable=False),
        sa.Column("set_aside", sa.Text(), nullable=False),
        sa.Column("rule", sa.String(200), nullable=False),
        sa.Column("detected_at", sa.BigInteger(), nullable=False),
        sa.Column("seen_by", sa.String(200), nullable=True),
        sa.Column("seen_at", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_network_conflicts"),
    )
    op.create_index("ix_network_conflicts_site_detected_at", "network_conflicts",
                    ["site", "detected_at"])
    op.create_table(
        "network_central",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("since", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_network_central"),
    )
    op.create_table(
        "network_membership",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("central_url", sa.String(500), nullable=False),
        sa.Column("hub_id", sa.String(36), nullable=False),
        sa.Column("credential", sa.String(200), nullable=False),
        sa.Column("site", sa.String(64), nullable=False),
        sa.Column("joined_at", sa.BigInteger(), nullable=False),
        sa.Column("up_positions", sa.Text(), server_default="{}", nullable=False),
        sa.Column("down_positions", sa.Text(), server_default="{}", nullable=False),
        sa.Column("last_contact_at", sa.BigInteger(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("clock_offset_us", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_network_membership"),
    )
    op.create_table(
        "sync_outbox",
        sa.Column("seq", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("stream", sa.String(20), nullable=False),
        sa.Column("key", sa.String(64), nullable=False),
        sa.Column("at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("seq", name="pk_sync_outbox"),
        sqlite_autoincrement=True,
    )


def _triggers(dialect: str) -> None:
    if dialect == "postgresql":
        op.execute(
            "CREATE FUNCTION labhub_sync_outbox() RETURNS trigger LANGUAGE plpgsql AS $$ "
            "BEGIN "
            "IF NOT EXISTS (SELECT 1 FROM network_central) THEN "
            "INSERT INTO sync_outbox (stream, key, at) "
            f"VALUES (TG_ARGV[0], to_jsonb(NEW) ->> TG_ARGV[1], {_POSTGRES_NOW_US}); "
            "END IF; RETURN NULL; END $$"
        )
        for name, table, stream, key, event in _TRIGGERS:
            op.execute(f"CREATE TRIGGER {name} AFTER {event} ON {table} FOR EACH ROW "
                       f"EXECUTE FUNCTION labhub_sync_outbox('{stream}', '{key}')")
    else:
        for name, table, stream, key, event in _TRIGGERS:
            op.execute(
                f"CREATE TRIGGER {name} AFTER {event} ON {table} "
                "WHEN NOT EXISTS (SELECT 1 FROM network_central) BEGIN "
                f"INSERT INTO sync_outbox (stream, key, at) "
                f"VALUES ('{stream}', NEW.{key}, {_SQLITE_NOW_US}); END"
            )


def _backfill() -> None:
    """What the hub held before: runs and their notes, then events, oldest first."""
    op.execute("INSERT INTO sync_outbox (stream, key, at) "
               "SELECT 'runs', id, created_at FROM runs ORDER BY created_at, id")
    op.execute("INSERT INTO sync_outbox (stream, key, at) "
               "SELECT 'notes', id, ts FROM run_notes ORDER BY ts, id")
    op.execute("INSERT INTO sync_outbox (stream, key, at) "
               "SELECT 'events', uuid, at FROM events ORDER BY at, uuid")


def upgrade() -> None:
    _tables()
    _triggers(op.get_bind().dialect.name)
    _backfill()


def downgrade() -> None:
    dialect = op.get_bind().dialect.name
    for name, table, *_ in _TRIGGERS:
        op.execute(f"DROP TRIGGER IF EXISTS {name}"
                   + (f" ON {table}" if dialect == "postgresql" else ""))
    if dialect == "postgresql":
        op.execute("DROP FUNCTION IF EXISTS labhub_sync_outbox()")
    for table in ("sync_outbox", "network_membership", "network_central", "network_conflicts",
                  "network_clock_corrections", "network_daily", "network_batches",
                  "network_upload_parts", "network_positions", "network_enrolments",
                  "network_hubs"):
        op.drop_table(table)
