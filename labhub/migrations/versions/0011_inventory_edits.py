"""Inventory: sites and catalog models are edited with a version, and can be retired.

``sites`` and ``models`` each get ``version`` (+1 on every change, for optimistic
concurrency as ``assets`` already has; rows written before this revision start at 1) and
``retired_at`` (when the site or model was retired, microseconds since the epoch, UTC; null
while in use). Deleting a record made in error needs no column: the deletion is an event.

Revision ID: 0011_inventory_edits
Revises: 0010_dead_letter_digest
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011_inventory_edits"
down_revision = "0010_dead_letter_digest"
branch_labels = None
depends_on = None


def upgrade() -> None:
    for table in ("sites", "models"):
        op.add_column(table, sa.Column("version", sa.Integer(), nullable=False,
                                       server_default="1"))
        op.add_column(table, sa.Column("retired_at", sa.BigInteger(), nullable=True))


def downgrade() -> None:
    for table in ("models", "sites"):
        op.drop_column(table, "retired_at")
        op.drop_column(table, "version")
