"""Reminders: what is due, to whom, and what was already sent.

``users.email`` (null: no e-mail) and ``users.reminder_emails`` (the person wants the
daily digest there; on by default) say where a person's reminders go; ``reminders_sent``
holds each reminder key e-mailed to each person, so none goes twice; ``service_plans``
holds an asset's planned maintenance and calibration (every so many days since last done).

Revision ID: 0024_reminders
Revises: 0023_rollups
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0024_reminders"
down_revision = "0023_rollups"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("users", sa.Column("email", sa.String(254), nullable=True))
    op.add_column("users", sa.Column("reminder_emails", sa.Boolean(), nullable=False,
                                     server_default=sa.true()))
    op.create_table(
        "reminders_sent",
        sa.Column("account", sa.Integer(), nullable=False),
        sa.Column("reminder_key", sa.String(400), nullable=False),
        sa.Column("sent_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("account", "reminder_key", name="pk_reminders_sent"),
    )
    op.create_table(
        "service_plans",
        sa.Column("asset_tag", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("every_days", sa.Integer(), nullable=False),
        sa.Column("last_done_at", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(["asset_tag"], ["assets.tag"],
                                name="fk_service_plans_asset_tag_assets"),
        sa.PrimaryKeyConstraint("asset_tag", "kind", name="pk_service_plans"),
    )


def downgrade() -> None:
    op.drop_table("service_plans")
    op.drop_table("reminders_sent")
    op.drop_column("users", "reminder_emails")
    op.drop_column("users", "email")
