"""What inventory sync between hubs and the central keeps.

Revision ID: 0020_inventory_sync
Revises: 0019_reading_spans
Create Date: 2026-12-05
"""

from __future__ import annotations

revision = "0020_inventory_sync"
down_revision = "0019_reading_spans"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
