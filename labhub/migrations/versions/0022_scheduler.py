"""The scheduler: its job store, the lease that lets one process of an SQLite database run
the jobs, and every job's runs (``labhub.scheduler.tables``).

Revision ID: 0022_scheduler
Revises: 0021_network_central
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0022_scheduler"
down_revision = "0021_network_central"
branch_labels = None
depends_on = None

_UNFINISHED = sa.text("finished_at IS NULL")


def upgrade() -> None:
    op.create_table(
        "scheduler_jobs",
        sa.Column("id", sa.Unicode(191), nullable=False),
        sa.Column("next_run_time", sa.Float(25), nullable=True),
        sa.Column("job_state", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_scheduler_jobs"),
    )
    op.create_index("ix_scheduler_jobs_next_run_time", "scheduler_jobs", ["next_run_time"])
    op.create_table(
        "scheduler_lease",
        sa.Column("name", sa.String(32), nullable=False),
        sa.Column("holder", sa.String(120), nullable=False),
        sa.Column("acquired_at", sa.BigInteger(), nullable=False),
        sa.Column("expires_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("name", name="pk_scheduler_lease"),
    )
    op.create_table(
        "job_runs",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("job_id", sa.String(64), nullable=False),
        sa.Column("scheduled_for", sa.BigInteger(), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("requested_by", sa.String(200), nullable=True),
        sa.Column("holder", sa.String(120), nullable=True),
        sa.Column("started_at", sa.BigInteger(), nullable=True),
        sa.Column("finished_at", sa.BigInteger(), nullable=True),
        sa.Column("outcome", sa.String(16), nullable=True),
        sa.Column("result", sa.Text(), nullable=True),
        sa.Column("retry_at", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_job_runs"),
        sa.UniqueConstraint("job_id", "scheduled_for", "attempt",
                            name="uq_job_runs_job_id_scheduled_for_attempt"),
    )
    op.create_index("ix_job_runs_job_id_id", "job_runs", ["job_id", "id"])
    op.create_index("ux_job_runs_unfinished", "job_runs", ["job_id"], unique=True,
                    sqlite_where=_UNFINISHED, postgresql_where=_UNFINISHED)


def downgrade() -> None:
    op.drop_index("ux_job_runs_unfinished", table_name="job_runs")
    op.drop_index("ix_job_runs_job_id_id", table_name="job_runs")
    op.drop_table("job_runs")
    op.drop_table("scheduler_lease")
    op.drop_index("ix_scheduler_jobs_next_run_time", table_name="scheduler_jobs")
    op.drop_table("scheduler_jobs")
