"""Inventory: sites, catalog models, assets and their append-only history of events.

Revision ID: 0003_inventory
Revises: 0002_devices
Create Date: 2026-11-24
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003_inventory"
down_revision = "0002_devices"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "sites",
        sa.Column("code", sa.String(64), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("parent_code", sa.String(64), nullable=True),
        sa.Column("tier", sa.String(20), nullable=True),
        sa.Column("rural", sa.Boolean(), nullable=True),
        sa.Column("latitude", sa.Float(), nullable=True),
        sa.Column("longitude", sa.Float(), nullable=True),
        sa.Column("institution", sa.String(200), nullable=True),
        sa.Column("rollout_status", sa.String(20), nullable=True),
        sa.Column("rollout_changed_at", sa.BigInteger(), nullable=True),
        sa.ForeignKeyConstraint(["parent_code"], ["sites.code"], name="fk_sites_parent_code_sites"),
        sa.PrimaryKeyConstraint("code", name="pk_sites"),
    )
    op.create_index("ix_sites_parent_code", "sites", ["parent_code"])
    op.create_table(
        "models",
        sa.Column("code", sa.String(64), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("category", sa.String(40), nullable=False),
        sa.Column("tracking", sa.String(20), nullable=False),
        sa.Column("unit", sa.String(20), nullable=True),
        sa.PrimaryKeyConstraint("code", name="pk_models"),
    )
    op.create_table(
        "assets",
        sa.Column("tag", sa.String(64), nullable=False),
        sa.Column("model_code", sa.String(64), nullable=False),
        sa.Column("serial_number", sa.String(200), nullable=True),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("condition", sa.String(20), nullable=False),
        sa.Column("site_code", sa.String(64), nullable=False),
        sa.Column("notes", sa.Text(), nullable=True),
        sa.Column("updated_at", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(["model_code"], ["models.code"], name="fk_assets_model_code_models"),
        sa.ForeignKeyConstraint(["site_code"], ["sites.code"], name="fk_assets_site_code_sites"),
        sa.PrimaryKeyConstraint("tag", name="pk_assets"),
        sa.UniqueConstraint("serial_number", name="uq_assets_serial_number"),
    )
    op.create_index("ix_assets_site_code", "assets", ["site_code"])
    op.create_index("ix_assets_status", "assets", ["status"])
    op.create_table(
        "events",
        sa.Column("uuid", sa.String(36), nullable=False),
        sa.Column("at", sa.BigInteger(), nullable=False),
        sa.Column("kind", sa.String(40), nullable=False),
        sa.Column("subject", sa.String(64), nullable=False),
        sa.Column("by", sa.String(200), nullable=False),
        sa.Column("site_code", sa.String(64), nullable=True),
        sa.Column("from_state", sa.Text(), nullable=True),
        sa.Column("to_state", sa.Text(), nullable=True),
        sa.Column("note", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("uuid", name="pk_events"),
    )
    op.create_index("ix_events_subject_at", "events", ["subject", "at"])


def downgrade() -> None:
    op.drop_index("ix_events_subject_at", table_name="events")
    op.drop_table("events")
    op.drop_index("ix_assets_status", table_name="assets")
    op.drop_index("ix_assets_site_code", table_name="assets")
    op.drop_table("assets")
    op.drop_table("models")
    op.drop_index("ix_sites_parent_code", table_name="sites")
    op.drop_table("sites")
