"""MQTT deliveries: the arrival time of each stored, not yet acknowledged message, so a
redelivery is stored once.

Revision ID: 0006_mqtt_deliveries
Revises: 0003_inventory
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006_mqtt_deliveries"
down_revision = "0005_inventory_transfers_audits"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "mqtt_deliveries",
        sa.Column("client_id", sa.String(200), nullable=False),
        sa.Column("mid", sa.Integer(), nullable=False),
        sa.Column("digest", sa.String(32), nullable=False),
        sa.Column("received_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("client_id", "mid", name="pk_mqtt_deliveries"),
    )
    op.create_index("ix_mqtt_deliveries_received_at", "mqtt_deliveries", ["received_at"])


def downgrade() -> None:
    op.drop_index("ix_mqtt_deliveries_received_at", table_name="mqtt_deliveries")
    op.drop_table("mqtt_deliveries")
