"""The network's days read by day: the ministry's trend over months sums every lab's days of
a year, from an index on ``network_daily (day, readings)`` alone.

Revision ID: 0021_network_central
Revises: 0020_inventory_sync
Create Date: 2026-12-05
"""

from __future__ import annotations

from alembic import op

revision = "0021_network_central"
down_revision = "0020_inventory_sync"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_network_daily_day_readings", "network_daily", ["day", "readings"])


def downgrade() -> None:
    op.drop_index("ix_network_daily_day_readings", table_name="network_daily")
