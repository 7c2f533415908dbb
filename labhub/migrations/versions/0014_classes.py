"""Classes: students who sign in with their class's code, their name and a PIN, or with
a QR card.

``classes`` (a lab site, a name, a teacher, a join code unique among classes, and until
when students may join by themselves) and ``class_members`` (a student's account, the
name as the class knows it and its NFKC + casefold key, unique within the class, the
argon2id hash of the PIN and the SHA-256 hash of the card's secret). See
``labhub/access/tables.py``.

Revision ID: 0014_classes
Revises: 0013_dead_letter_replay
Create Date: 2026-12-08
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0014_classes"
down_revision = "0013_dead_letter_replay"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "classes",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("site", sa.String(64), nullable=False),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("teacher_id", sa.Integer(), nullable=True),
        sa.Column("join_code", sa.String(6), nullable=False),
        sa.Column("joining_until", sa.BigInteger(), nullable=True),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_classes"),
        sa.ForeignKeyConstraint(["teacher_id"], ["users.id"], ondelete="SET NULL",
                                name="fk_classes_teacher_id_users"),
        sa.UniqueConstraint("join_code", name="uq_classes_join_code"),
    )
    op.create_index("ix_classes_site", "classes", ["site"])
    op.create_table(
        "class_members",
        sa.Column("class_id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("name_key", sa.String(400), nullable=False),
        sa.Column("pin_hash", sa.String(255), nullable=False),
        sa.Column("card_hash", sa.String(64), nullable=True),
        sa.Column("card_issued_at", sa.BigInteger(), nullable=True),
        sa.Column("joined_at", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(["class_id"], ["classes.id"], ondelete="CASCADE",
                                name="fk_class_members_class_id_classes"),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], ondelete="CASCADE",
                                name="fk_class_members_user_id_users"),
        sa.UniqueConstraint("user_id", name="uq_class_members_user_id"),
        sa.UniqueConstraint("card_hash", name="uq_class_members_card_hash"),
        sa.UniqueConstraint("class_id", "name_key", name="uq_class_members_class_id_name_key"),
    )


def downgrade() -> None:
    op.drop_table("class_members")
    op.drop_index("ix_classes_site", table_name="classes")
    op.drop_table("classes")
