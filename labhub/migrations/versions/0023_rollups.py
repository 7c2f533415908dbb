"""Hourly and daily rollups of every series (sensors.rollups), with minutes while raw
readings last, the pruned part of each hour, which series are rolled up, and where the
rollups are in the readings' journal. The first rollups run fills them from the journal,
which covers every stored reading, so an existing hub rolls up its whole history.

Revision ID: 0023_rollups
Revises: 0022_scheduler
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0023_rollups"
down_revision = "0022_scheduler"
branch_labels = None
depends_on = None

_AGGREGATES = ("rollup_minutes", "rollup_hours", "rollup_days", "rollup_pruned")


def _aggregate_table(name: str) -> None:
    op.create_table(
        name,
        sa.Column("series_id", sa.Integer(), nullable=False),
        sa.Column("start", sa.BigInteger(), nullable=False),
        sa.Column("n", sa.BigInteger(), nullable=False),
        sa.Column("total", sa.Float(), nullable=False),
        sa.Column("low", sa.Float(), nullable=False),
        sa.Column("high", sa.Float(), nullable=False),
        sa.Column("first_ts", sa.BigInteger(), nullable=False),
        sa.Column("first_value", sa.Float(), nullable=False),
        sa.Column("last_ts", sa.BigInteger(), nullable=False),
        sa.Column("last_value", sa.Float(), nullable=False),
        sa.Column("suspect", sa.BigInteger(), nullable=False),
        sa.Column("clock", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(["series_id"], ["series.id"],
                                name=f"fk_{name}_series_id_series", ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("series_id", "start", name=f"pk_{name}"),
        sqlite_with_rowid=False,
    )


def upgrade() -> None:
    for name in _AGGREGATES:
        _aggregate_table(name)
    op.create_table(
        "rollup_series",
        sa.Column("series_id", sa.Integer(), nullable=False),
        sa.Column("pruned_before", sa.BigInteger(), nullable=True),
        sa.ForeignKeyConstraint(["series_id"], ["series.id"],
                                name="fk_rollup_series_series_id_series", ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("series_id", name="pk_rollup_series"),
    )
    op.create_table(
        "rollup_state",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_rollup_state"),
    )


def downgrade() -> None:
    op.drop_table("rollup_state")
    op.drop_table("rollup_series")
    for name in reversed(_AGGREGATES):
        op.drop_table(name)
