"""Inventory: audits compare counted quantities with the site's stock.

``audit_counts`` gets ``expected`` (the stock of the model at the audited site when the
audit finished; null while it is open) and ``corrected_at`` (when applying the audit set
the stock to the count).

Revision ID: 0008_audit_counts_expected
Revises: 0007_assets_list_index
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008_audit_counts_expected"
down_revision = "0007_assets_list_index"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("audit_counts", sa.Column("expected", sa.Integer(), nullable=True))
    op.add_column("audit_counts", sa.Column("corrected_at", sa.BigInteger(), nullable=True))


def downgrade() -> None:
    op.drop_column("audit_counts", "corrected_at")
    op.drop_column("audit_counts", "expected")
