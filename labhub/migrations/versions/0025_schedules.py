"""Scheduled runs: a class's run that starts and stops by itself (sensors.run_schedules).

``run_schedules`` holds each schedule (wall-clock times in its time zone),
``run_schedule_channels`` what its runs record, and ``run_schedule_windows`` one row per
window a run was started for, keyed by schedule and window start: the key that lets two
processes or a repeated tick start one run per window.

Revision ID: 0025_schedules
Revises: 0024_reminders
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0025_schedules"
down_revision = "0024_reminders"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "run_schedules",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("title", sa.String(200), nullable=False),
        sa.Column("group_name", sa.String(200), nullable=True),
        sa.Column("site", sa.String(100), nullable=True),
        sa.Column("kind", sa.String(10), nullable=False),
        sa.Column("timezone", sa.String(64), nullable=False),
        sa.Column("start_date", sa.String(10), nullable=False),
        sa.Column("end_date", sa.String(10), nullable=False),
        sa.Column("start_time", sa.String(5), nullable=False),
        sa.Column("stop_time", sa.String(5), nullable=False),
        sa.Column("weekdays", sa.String(27), nullable=False),
        sa.Column("created_by", sa.String(200), nullable=True),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_run_schedules"),
    )
    op.create_table(
        "run_schedule_channels",
        sa.Column("schedule_id", sa.String(36), nullable=False),
        sa.Column("device", sa.String(200), nullable=False),
        sa.Column("channel", sa.String(200), nullable=False),
        sa.ForeignKeyConstraint(["schedule_id"], ["run_schedules.id"],
                                name="fk_run_schedule_channels_schedule_id_run_schedules",
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("schedule_id", "device", "channel",
                                name="pk_run_schedule_channels"),
    )
    op.create_table(
        "run_schedule_windows",
        sa.Column("schedule_id", sa.String(36), nullable=False),
        sa.Column("starts_at", sa.BigInteger(), nullable=False),
        sa.Column("ends_at", sa.BigInteger(), nullable=False),
        sa.Column("run_id", sa.String(36), nullable=False),
        sa.Column("closed", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(["schedule_id"], ["run_schedules.id"],
                                name="fk_run_schedule_windows_schedule_id_run_schedules",
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("schedule_id", "starts_at", name="pk_run_schedule_windows"),
        sa.UniqueConstraint("run_id", name="uq_run_schedule_windows_run_id"),
    )
    op.create_index("ix_run_schedule_windows_closed", "run_schedule_windows", ["closed"])


def downgrade() -> None:
    op.drop_index("ix_run_schedule_windows_closed", table_name="run_schedule_windows")
    op.drop_table("run_schedule_windows")
    op.drop_table("run_schedule_channels")
    op.drop_table("run_schedules")
