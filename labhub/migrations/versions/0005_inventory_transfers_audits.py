"""Inventory: transfers between sites, mobile-lab manifests and rotations, audits.

Revision ID: 0005_inventory_transfers_audits
Revises: 0003_inventory (re-pointed to 0004_inventory_movements when both are merged:
nothing here depends on the tables of 0004)
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005_inventory_transfers_audits"
down_revision = "0004_inventory_movements"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "transfers",
        sa.Column("uuid", sa.String(36), nullable=False),
        sa.Column("from_site_code", sa.String(64), nullable=False),
        sa.Column("to_site_code", sa.String(64), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("created_by", sa.String(200), nullable=False),
        sa.Column("shipped_at", sa.BigInteger(), nullable=True),
        sa.Column("carrier", sa.String(200), nullable=True),
        sa.Column("received_at", sa.BigInteger(), nullable=True),
        sa.Column("received_by", sa.String(200), nullable=True),
        sa.Column("missing_as", sa.String(20), nullable=True),
        sa.Column("note", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(["from_site_code"], ["sites.code"],
                                name="fk_transfers_from_site_code_sites"),
        sa.ForeignKeyConstraint(["to_site_code"], ["sites.code"],
                                name="fk_transfers_to_site_code_sites"),
        sa.PrimaryKeyConstraint("uuid", name="pk_transfers"),
    )
    op.create_index("ix_transfers_status", "transfers", ["status"])
    op.create_table(
        "transfer_items",
        sa.Column("transfer_uuid", sa.String(36), nullable=False),
        sa.Column("asset_tag", sa.String(64), nullable=False),
        sa.Column("added_at", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(["transfer_uuid"], ["transfers.uuid"],
                                name="fk_transfer_items_transfer_uuid_transfers"),
        sa.ForeignKeyConstraint(["asset_tag"], ["assets.tag"],
                                name="fk_transfer_items_asset_tag_assets"),
        sa.PrimaryKeyConstraint("transfer_uuid", "asset_tag", name="pk_transfer_items"),
    )
    op.create_index("ix_transfer_items_asset_tag", "transfer_items", ["asset_tag"])
    op.create_table(
        "transfer_scans",
        sa.Column("transfer_uuid", sa.String(36), nullable=False),
        sa.Column("tag", sa.String(64), nullable=False),
        sa.Column("scanned_at", sa.BigInteger(), nullable=False),
        sa.Column("scanned_by", sa.String(200), nullable=False),
        sa.ForeignKeyConstraint(["transfer_uuid"], ["transfers.uuid"],
                                name="fk_transfer_scans_transfer_uuid_transfers"),
        sa.PrimaryKeyConstraint("transfer_uuid", "tag", name="pk_transfer_scans"),
    )
    op.create_table(
        "transfer_discrepancies",
        sa.Column("transfer_uuid", sa.String(36), nullable=False),
        sa.Column("tag", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("resolution", sa.String(20), nullable=False),
        sa.Column("recorded_site_code", sa.String(64), nullable=True),
        sa.Column("recorded_at", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(["transfer_uuid"], ["transfers.uuid"],
                                name="fk_transfer_discrepancies_transfer_uuid_transfers"),
        sa.PrimaryKeyConstraint("transfer_uuid", "tag", name="pk_transfer_discrepancies"),
    )
    op.create_table(
        "manifest_items",
        sa.Column("asset_tag", sa.String(64), nullable=False),
        sa.Column("mobile_lab_code", sa.String(64), nullable=False),
        sa.Column("added_at", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(["asset_tag"], ["assets.tag"],
                                name="fk_manifest_items_asset_tag_assets"),
        sa.ForeignKeyConstraint(["mobile_lab_code"], ["sites.code"],
                                name="fk_manifest_items_mobile_lab_code_sites"),
        sa.PrimaryKeyConstraint("asset_tag", name="pk_manifest_items"),
    )
    op.create_index("ix_manifest_items_mobile_lab_code", "manifest_items", ["mobile_lab_code"])
    op.create_table(
        "rotations",
        sa.Column("uuid", sa.String(36), nullable=False),
        sa.Column("mobile_lab_code", sa.String(64), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("created_by", sa.String(200), nullable=False),
        sa.ForeignKeyConstraint(["mobile_lab_code"], ["sites.code"],
                                name="fk_rotations_mobile_lab_code_sites"),
        sa.PrimaryKeyConstraint("uuid", name="pk_rotations"),
    )
    op.create_index("ix_rotations_mobile_lab_code", "rotations", ["mobile_lab_code"])
    op.create_table(
        "rotation_stops",
        sa.Column("rotation_uuid", sa.String(36), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("site_code", sa.String(64), nullable=False),
        sa.Column("arrive_on", sa.String(10), nullable=False),
        sa.Column("depart_on", sa.String(10), nullable=False),
        sa.Column("arrival_transfer_uuid", sa.String(36), nullable=True),
        sa.Column("departure_transfer_uuid", sa.String(36), nullable=True),
        sa.ForeignKeyConstraint(["rotation_uuid"], ["rotations.uuid"],
                                name="fk_rotation_stops_rotation_uuid_rotations"),
        sa.ForeignKeyConstraint(["site_code"], ["sites.code"],
                                name="fk_rotation_stops_site_code_sites"),
        sa.ForeignKeyConstraint(["arrival_transfer_uuid"], ["transfers.uuid"],
                                name="fk_rotation_stops_arrival_transfer_uuid_transfers"),
        sa.ForeignKeyConstraint(["departure_transfer_uuid"], ["transfers.uuid"],
                                name="fk_rotation_stops_departure_transfer_uuid_transfers"),
        sa.PrimaryKeyConstraint("rotation_uuid", "seq", name="pk_rotation_stops"),
    )
    op.create_table(
        "audits",
        sa.Column("uuid", sa.String(36), nullable=False),
        sa.Column("site_code", sa.String(64), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("started_at", sa.BigInteger(), nullable=False),
        sa.Column("started_by", sa.String(200), nullable=False),
        sa.Column("finished_at", sa.BigInteger(), nullable=True),
        sa.Column("applied_at", sa.BigInteger(), nullable=True),
        sa.ForeignKeyConstraint(["site_code"], ["sites.code"], name="fk_audits_site_code_sites"),
        sa.PrimaryKeyConstraint("uuid", name="pk_audits"),
    )
    op.create_index("ix_audits_site_code", "audits", ["site_code"])
    op.create_table(
        "audit_scans",
        sa.Column("audit_uuid", sa.String(36), nullable=False),
        sa.Column("tag", sa.String(64), nullable=False),
        sa.Column("scanned_at", sa.BigInteger(), nullable=False),
        sa.Column("scanned_by", sa.String(200), nullable=False),
        sa.ForeignKeyConstraint(["audit_uuid"], ["audits.uuid"],
                                name="fk_audit_scans_audit_uuid_audits"),
        sa.PrimaryKeyConstraint("audit_uuid", "tag", name="pk_audit_scans"),
    )
    op.create_table(
        "audit_counts",
        sa.Column("audit_uuid", sa.String(36), nullable=False),
        sa.Column("model_code", sa.String(64), nullable=False),
        sa.Column("quantity", sa.Integer(), nullable=False),
        sa.Column("counted_at", sa.BigInteger(), nullable=False),
        sa.Column("counted_by", sa.String(200), nullable=False),
        sa.ForeignKeyConstraint(["audit_uuid"], ["audits.uuid"],
                                name="fk_audit_counts_audit_uuid_audits"),
        sa.ForeignKeyConstraint(["model_code"], ["models.code"],
                                name="fk_audit_counts_model_code_models"),
        sa.PrimaryKeyConstraint("audit_uuid", "model_code", name="pk_audit_counts"),
    )
    op.create_table(
        "audit_findings",
        sa.Column("audit_uuid", sa.String(36), nullable=False),
        sa.Column("tag", sa.String(64), nullable=False),
        sa.Column("finding", sa.String(20), nullable=False),
        sa.Column("source", sa.String(200), nullable=True),
        sa.Column("model_code", sa.String(64), nullable=True),
        sa.Column("recorded_site_code", sa.String(64), nullable=True),
        sa.Column("recorded_status", sa.String(20), nullable=True),
        sa.Column("corrected_at", sa.BigInteger(), nullable=True),
        sa.ForeignKeyConstraint(["audit_uuid"], ["audits.uuid"],
                                name="fk_audit_findings_audit_uuid_audits"),
        sa.PrimaryKeyConstraint("audit_uuid", "tag", name="pk_audit_findings"),
    )


def downgrade() -> None:
    op.drop_table("audit_findings")
    op.drop_table("audit_counts")
    op.drop_table("audit_scans")
    op.drop_index("ix_audits_site_code", table_name="audits")
    op.drop_table("audits")
    op.drop_table("rotation_stops")
    op.drop_index("ix_rotations_mobile_lab_code", table_name="rotations")
    op.drop_table("rotations")
    op.drop_index("ix_manifest_items_mobile_lab_code", table_name="manifest_items")
    op.drop_table("manifest_items")
    op.drop_table("transfer_discrepancies")
    op.drop_table("transfer_scans")
    op.drop_index("ix_transfer_items_asset_tag", table_name="transfer_items")
    op.drop_table("transfer_items")
    op.drop_index("ix_transfers_status", table_name="transfers")
    op.drop_table("transfers")
