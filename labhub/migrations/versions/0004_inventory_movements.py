"""Inventory movements: locations, counted stock, kits and their losses, loans, repairs.

Also gives assets an optional location and a version number (optimistic concurrency);
rows already stored start at version 1.

Revision ID: 0004_inventory_movements
Revises: 0003_inventory
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004_inventory_movements"
down_revision = "0003_inventory"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("assets", sa.Column("location_code", sa.String(64), nullable=True))
    op.add_column(
        "assets", sa.Column("version", sa.Integer(), nullable=False, server_default="1")
    )
    op.create_table(
        "locations",
        sa.Column("site_code", sa.String(64), nullable=False),
        sa.Column("code", sa.String(64), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.ForeignKeyConstraint(["site_code"], ["sites.code"], name="fk_locations_site_code_sites"),
        sa.PrimaryKeyConstraint("site_code", "code", name="pk_locations"),
    )
    op.create_table(
        "stock",
        sa.Column("site_code", sa.String(64), nullable=False),
        sa.Column("model_code", sa.String(64), nullable=False),
        sa.Column("quantity", sa.Integer(), nullable=False),
        sa.Column("reorder_threshold", sa.Integer(), nullable=True),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("updated_at", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(["site_code"], ["sites.code"], name="fk_stock_site_code_sites"),
        sa.ForeignKeyConstraint(["model_code"], ["models.code"], name="fk_stock_model_code_models"),
        sa.PrimaryKeyConstraint("site_code", "model_code", name="pk_stock"),
    )
    op.create_table(
        "kit_contents",
        sa.Column("kit_tag", sa.String(64), nullable=False),
        sa.Column("part", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(10), nullable=False),
        sa.Column("quantity", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["kit_tag"], ["assets.tag"], name="fk_kit_contents_kit_tag_assets"),
        sa.PrimaryKeyConstraint("kit_tag", "part", name="pk_kit_contents"),
    )
    op.create_index("ix_kit_contents_part", "kit_contents", ["part"])
    op.create_table(
        "kit_losses",
        sa.Column("uuid", sa.String(36), nullable=False),
        sa.Column("kit_tag", sa.String(64), nullable=False),
        sa.Column("part", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(10), nullable=False),
        sa.Column("damage", sa.String(10), nullable=False),
        sa.Column("quantity", sa.Integer(), nullable=False),
        sa.Column("loan_uuid", sa.String(36), nullable=True),
        sa.Column("site_code", sa.String(64), nullable=False),
        sa.Column("at", sa.BigInteger(), nullable=False),
        sa.Column("by", sa.String(200), nullable=False),
        sa.ForeignKeyConstraint(["kit_tag"], ["assets.tag"], name="fk_kit_losses_kit_tag_assets"),
        sa.PrimaryKeyConstraint("uuid", name="pk_kit_losses"),
    )
    op.create_index("ix_kit_losses_kit_tag", "kit_losses", ["kit_tag"])
    op.create_table(
        "loans",
        sa.Column("uuid", sa.String(36), nullable=False),
        sa.Column("borrower", sa.String(200), nullable=False),
        sa.Column("borrower_kind", sa.String(10), nullable=False),
        sa.Column("purpose", sa.String(200), nullable=True),
        sa.Column("site_code", sa.String(64), nullable=False),
        sa.Column("checked_out_at", sa.BigInteger(), nullable=False),
        sa.Column("due_at", sa.BigInteger(), nullable=False),
        sa.Column("closed_at", sa.BigInteger(), nullable=True),
        sa.Column("by", sa.String(200), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["site_code"], ["sites.code"], name="fk_loans_site_code_sites"),
        sa.PrimaryKeyConstraint("uuid", name="pk_loans"),
    )
    op.create_index("ix_loans_due_at", "loans", ["due_at"])
    op.create_index("ix_loans_borrower", "loans", ["borrower"])
    op.create_table(
        "loan_items",
        sa.Column("loan_uuid", sa.String(36), nullable=False),
        sa.Column("asset_tag", sa.String(64), nullable=False),
        sa.Column("returned_at", sa.BigInteger(), nullable=True),
        sa.Column("condition", sa.String(20), nullable=True),
        sa.ForeignKeyConstraint(["loan_uuid"], ["loans.uuid"], name="fk_loan_items_loan_uuid_loans"),
        sa.ForeignKeyConstraint(["asset_tag"], ["assets.tag"], name="fk_loan_items_asset_tag_assets"),
        sa.PrimaryKeyConstraint("loan_uuid", "asset_tag", name="pk_loan_items"),
    )
    op.create_index("ix_loan_items_asset_tag", "loan_items", ["asset_tag"])
    op.create_table(
        "loan_kit_returns",
        sa.Column("loan_uuid", sa.String(36), nullable=False),
        sa.Column("kit_tag", sa.String(64), nullable=False),
        sa.Column("part", sa.String(64), nullable=False),
        sa.Column("quantity", sa.Integer(), nullable=False),
        sa.Column("damaged", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["loan_uuid"], ["loans.uuid"], name="fk_loan_kit_returns_loan_uuid_loans"),
        sa.ForeignKeyConstraint(["kit_tag"], ["assets.tag"], name="fk_loan_kit_returns_kit_tag_assets"),
        sa.PrimaryKeyConstraint("loan_uuid", "kit_tag", "part", name="pk_loan_kit_returns"),
    )
    op.create_table(
        "repairs",
        sa.Column("uuid", sa.String(36), nullable=False),
        sa.Column("asset_tag", sa.String(64), nullable=False),
        sa.Column("fault", sa.Text(), nullable=False),
        sa.Column("started_at", sa.BigInteger(), nullable=False),
        sa.Column("started_by", sa.String(200), nullable=False),
        sa.Column("finished_at", sa.BigInteger(), nullable=True),
        sa.Column("finished_by", sa.String(200), nullable=True),
        sa.Column("work_done", sa.Text(), nullable=True),
        sa.Column("condition_after", sa.String(20), nullable=True),
        sa.ForeignKeyConstraint(["asset_tag"], ["assets.tag"], name="fk_repairs_asset_tag_assets"),
        sa.PrimaryKeyConstraint("uuid", name="pk_repairs"),
    )
    op.create_index("ix_repairs_asset_tag", "repairs", ["asset_tag"])


def downgrade() -> None:
    op.drop_index("ix_repairs_asset_tag", table_name="repairs")
    op.drop_table("repairs")
    op.drop_table("loan_kit_returns")
    op.drop_index("ix_loan_items_asset_tag", table_name="loan_items")
    op.drop_table("loan_items")
    op.drop_index("ix_loans_borrower", table_name="loans")
    op.drop_index("ix_loans_due_at", table_name="loans")
    op.drop_table("loans")
    op.drop_index("ix_kit_losses_kit_tag", table_name="kit_losses")
    op.drop_table("kit_losses")
    op.drop_index("ix_kit_contents_part", table_name="kit_contents")
    op.drop_table("kit_contents")
    op.drop_table("stock")
    op.drop_table("locations")
    # SQLite 3.35+ drops a column in place (neither column is indexed or constrained).
    op.drop_column("assets", "version")
    op.drop_column("assets", "location_code")
