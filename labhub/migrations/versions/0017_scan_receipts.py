"""Scans sent from the equipment pages, each once: ``scan_receipts`` keeps the idempotency
key of every scan received (``inventory.receipts``), so a scan a page sends again after a
lost network or a closed tab is not done twice.

Revision ID: 0017_scan_receipts
Revises: 0016_web_app
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0017_scan_receipts"
down_revision = "0016_web_app"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "scan_receipts",
        sa.Column("key", sa.String(36), nullable=False),
        sa.Column("subject", sa.String(104), nullable=False),
        sa.Column("tag", sa.String(64), nullable=False),
        sa.Column("received_at", sa.BigInteger(), nullable=False),
        sa.Column("received_by", sa.String(200), nullable=False),
        sa.PrimaryKeyConstraint("key", name="pk_scan_receipts"),
    )
    op.create_index("ix_scan_receipts_subject", "scan_receipts", ["subject"])


def downgrade() -> None:
    op.drop_index("ix_scan_receipts_subject", table_name="scan_receipts")
    op.drop_table("scan_receipts")
