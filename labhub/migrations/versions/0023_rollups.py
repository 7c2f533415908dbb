"""Hourly and daily rollups of every series.

Revision ID: 0023_rollups
Revises: 0022_scheduler
Create Date: 2026-12-05
"""

from __future__ import annotations

revision = "0023_rollups"
down_revision = "0022_scheduler"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
