"""What the central keeps of its hubs beyond migration 0018.

Revision ID: 0021_network_central
Revises: 0020_inventory_sync
Create Date: 2026-12-05
"""

from __future__ import annotations

revision = "0021_network_central"
down_revision = "0020_inventory_sync"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
