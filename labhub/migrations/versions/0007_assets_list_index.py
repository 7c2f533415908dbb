"""Inventory: an index on assets (site_code, status, tag) for a region's filtered list.

The list of a region's subtree filtered by status, one page ordered by tag plus the total
count, is answered from this index without reading the asset rows.

Revision ID: 0007_assets_list_index
Revises: 0006_mqtt_deliveries
Create Date: 2026-12-01
"""

from __future__ import annotations

from alembic import op

revision = "0007_assets_list_index"
down_revision = "0006_mqtt_deliveries"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_assets_site_code_status_tag", "assets", ["site_code", "status", "tag"])


def downgrade() -> None:
    op.drop_index("ix_assets_site_code_status_tag", table_name="assets")
