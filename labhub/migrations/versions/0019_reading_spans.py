"""The readings' journal of spans (sensors.storage) and, on PostgreSQL, the readings table partitioned by time.

Revision ID: 0019_reading_spans
Revises: 0018_network
Create Date: 2026-12-05
"""

from __future__ import annotations

revision = "0019_reading_spans"
down_revision = "0018_network"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
