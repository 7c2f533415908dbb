"""What inventory sync between hubs and the central keeps: on the central, each lab
record's digest as last applied from its owner (to see a change made on the central
meanwhile: a conflict); on a hub, the people the central last sent down, and the events
that came down as copies of other labs' history (not sent back up).

Revision ID: 0020_inventory_sync
Revises: 0019_reading_spans
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0020_inventory_sync"
down_revision = "0019_reading_spans"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "network_inventory_marks",
        sa.Column("site", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(40), nullable=False),
        sa.Column("key", sa.String(200), nullable=False),
        sa.Column("digest", sa.String(32), nullable=False),
        sa.Column("at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("kind", "key", name="pk_network_inventory_marks"),
    )
    op.create_table(
        "network_down_people",
        sa.Column("name_key", sa.String(400), nullable=False),
        sa.Column("at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("name_key", name="pk_network_down_people"),
    )
    op.create_table(
        "network_down_events",
        sa.Column("uuid", sa.String(36), nullable=False),
        sa.Column("at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("uuid", name="pk_network_down_events"),
    )


def downgrade() -> None:
    op.drop_table("network_down_events")
    op.drop_table("network_down_people")
    op.drop_table("network_inventory_marks")
